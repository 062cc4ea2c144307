"""The case limit (seed 001 附件2 三) and the withdrawal of a statement (附件2 七) at a platform node.

A district node with the records of its own source unit: the objection is filed, answered and
ticked there, and what it stores for the city above is counted in its outbox.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, func, select, update

from node.catalog import Catalog
from node.config import LifecycleConfig
from node.errors import ConflictError, NotAuthorizedError, NotFoundError
from node.identity import LoadedIdentity
from node.lifecycle import objections as sm
from node.lifecycle.checks import PlatformChecks
from node.lifecycle.objection_service import ObjectionService
from node.store.tables import audit_log, objections, outbox, record_heads
from tests.lifecycle.kit import (
    CITY,
    DEPT,
    DISTRICT,
    Clock,
    Federation,
    Kit,
    make_kit,
    objection_service,
    three_levels,
)

OTHER = "91330100MA27XL0E2K"


@pytest.fixture
def district(engine: Engine, ids: dict[str, LoadedIdentity], catalog: Catalog, clock: Clock) -> Kit:
    clock.set_day(dt.date(2026, 8, 31))
    kit = make_kit(engine, DISTRICT, parent=CITY, children=[DEPT], ids=ids, catalog=catalog, clock=clock)
    kit.import_penalties(3, CF_JDRQ="2026-06-01", CF_YXQ="2027-06-01")
    return kit


def _records(kit: Kit) -> list[str]:
    with kit.store.engine.connect() as conn:
        return sorted(r for (r,) in conn.execute(select(record_heads.c.record_id)))


def _queued(kit: Kit) -> int:
    with kit.store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(outbox)).scalar_one())


def _audited(kit: Kit, action: str) -> list[dict[str, object]]:
    with kit.store.engine.connect() as conn:
        rows = conn.execute(select(audit_log.c.detail).where(audit_log.c.action == action)).all()
    return [json.loads(d) for (d,) in rows]


def _file(kit: Kit, desk: ObjectionService, n: int = 0) -> sm.Case:
    rid = _records(kit)[n]
    return desk.file(rid, by=kit.head(rid).subject_code, reason="处罚金额有误")


def test_tick_flags_an_open_case_past_its_30_day_limit_once(district: Kit, clock: Clock) -> None:
    desk = objection_service(district)
    clock.set_day(dt.date(2026, 9, 1))
    case = _file(district, desk)
    assert case.limit_due == "2026-10-08"  # day 30 is 国庆 (10-01): the day after the holiday
    clock.set_day(dt.date(2026, 9, 16))
    assert desk.tick().overdue == [case.case_id]  # the source's own deadline came first
    clock.set_day(dt.date(2026, 10, 8))
    assert desk.tick().past_limit == []  # its last day
    clock.set_day(dt.date(2026, 10, 9))
    assert desk.tick().past_limit == [case.case_id]
    assert desk.tick().past_limit == []  # flagged once
    kinds = [e["kind"] for e in desk.cases.events(case.case_id)]
    assert kinds.count("limit_passed") == 1
    assert [d["limit_due"] for d in _audited(district, "objection.limit_passed")] == ["2026-10-08"]
    assert [c.case_id for c in desk.listing(overdue_only=True)] == [case.case_id]


def test_list_overdue_shows_a_case_past_its_limit_whose_source_is_not_late_yet(district: Kit, clock: Clock) -> None:
    # A source given 25 working days (a slow unit, a configured deadline): its due day is after the limit.
    district.settings = LifecycleConfig(source_days=25)
    desk = objection_service(district)
    clock.set_day(dt.date(2026, 9, 1))
    case = _file(district, desk)
    assert (case.source_due, case.limit_due) == ("2026-10-12", "2026-10-08")
    clock.set_day(dt.date(2026, 10, 9))
    assert [c.case_id for c in desk.listing(overdue_only=True)] == [case.case_id]
    report = desk.tick()
    assert (report.overdue, report.past_limit) == ([], [case.case_id])
    # Past the case's limit the record stays as it was: only the source's lateness withdraws it.
    assert district.head(case.record_id).status == "disputed"


def test_an_approved_extension_moves_the_limit_and_is_logged(district: Kit, clock: Clock) -> None:
    desk = objection_service(district)
    clock.set_day(dt.date(2026, 9, 1))
    case = _file(district, desk)
    clock.set_day(dt.date(2026, 10, 8))
    longer = desk.extend(case.case_id, working_days=5, approval="杭信用办〔2026〕12号")
    assert (longer.limit_due, longer.extended_days) == ("2026-10-14", 5)  # 10-10 is a Saturday worked
    assert desk.cases.get(case.case_id).limit_due == "2026-10-14"
    last = desk.cases.events(case.case_id)[-1]
    assert last["kind"] == "extended" and last["detail"]["approval"] == "杭信用办〔2026〕12号"
    assert [d["approval"] for d in _audited(district, "objection.extended")] == ["杭信用办〔2026〕12号"]
    clock.set_day(dt.date(2026, 10, 14))
    assert desk.tick().past_limit == []
    clock.set_day(dt.date(2026, 10, 15))
    assert desk.tick().past_limit == [case.case_id]
    with pytest.raises(NotFoundError) as unknown:
        desk.extend("nope@2", working_days=5, approval="x")
    assert unknown.value.code == "E_OBJECTION_UNKNOWN"


def test_an_open_case_filed_before_the_limit_existed_gets_it_at_the_next_tick(district: Kit, clock: Clock) -> None:
    desk = objection_service(district)
    clock.set_day(dt.date(2026, 9, 1))
    case = _file(district, desk)
    with district.store.engine.begin() as conn:
        conn.execute(update(objections).values(limit_due=""))
    clock.set_day(dt.date(2026, 9, 2))
    desk.tick()
    assert desk.cases.get(case.case_id).limit_due == "2026-10-08"  # from its filing day
    assert desk.cases.events(case.case_id)[-1]["kind"] == "limit"


def test_a_platform_check_is_not_held_to_the_30_day_limit(district: Kit, clock: Clock) -> None:
    # A check has its own limits (篇2 第三十三条: notice 5, source 15 working days), kept as they were.
    desk = objection_service(district)
    checks = PlatformChecks(node_id=district.node_id, store=district.store, catalog=district.catalog,
                            reviser=district.reviser, cases=desk.cases, calendar=district.calendar,
                            deadlines=sm.Deadlines(), clock=clock)
    clock.set_day(dt.date(2026, 9, 1))
    case = checks.open(_records(district)[0], reason="与登记机关信息不一致")
    assert case.limit_due == ""
    clock.set_day(dt.date(2026, 11, 2))
    assert desk.tick().past_limit == []
    assert desk.listing(overdue_only=True)[0].case_id == case.case_id  # its source is late, as before
    with pytest.raises(ConflictError) as refused:
        desk.extend(case.case_id, working_days=5, approval="批复")
    assert refused.value.code == "E_OBJECTION_STATE"


def test_the_applicant_withdraws_its_statement(district: Kit, clock: Clock) -> None:
    desk = objection_service(district)
    clock.set_day(dt.date(2026, 9, 1))
    case = _file(district, desk)
    rid, subject = case.record_id, case.applicant
    desk.answer(case.case_id, "confirm")
    desk.statement(case.case_id, by=subject, text="仍有异议，已申请行政复议")
    assert desk.statements_for([rid]) == {rid: "申请人存疑: 仍有异议，已申请行政复议"}
    queued, revision = _queued(district), district.head(rid).revision
    clock.set_day(dt.date(2026, 9, 3))
    with pytest.raises(NotAuthorizedError) as other:
        desk.withdraw_statement(case.case_id, by=OTHER)
    assert other.value.code == "E_STATEMENT_NOT_APPLICANT"

    withdrawn = desk.withdraw_statement(case.case_id, by=subject.lower())
    assert (withdrawn.statement, withdrawn.statement_until) == ("", "")
    assert desk.statements_for([rid]) == {} and desk.cases.get(case.case_id).statement == ""
    last = desk.cases.events(case.case_id)[-1]
    assert last["kind"] == "statement_withdrawn" and last["detail"]["text"] == "仍有异议，已申请行政复议"
    assert len(_audited(district, "objection.statement_withdrawn")) == 1
    # The statement is kept and shown only where the case is: its withdrawal stores no revision either.
    assert (_queued(district), district.head(rid).revision) == (queued, revision)
    with pytest.raises(ConflictError) as again:
        desk.withdraw_statement(case.case_id, by=subject)
    assert again.value.code == "E_STATEMENT_NONE"


def test_a_statement_no_longer_shown_cannot_be_withdrawn(district: Kit, clock: Clock) -> None:
    desk = objection_service(district)
    clock.set_day(dt.date(2026, 9, 1))
    case = _file(district, desk, 1)
    with pytest.raises(ConflictError) as open_case:
        desk.withdraw_statement(case.case_id, by=case.applicant)
    assert open_case.value.code == "E_STATEMENT_NONE"
    desk.answer(case.case_id, "confirm")
    desk.statement(case.case_id, by=case.applicant, text="仍有异议")
    clock.set_day(dt.date(2026, 10, 2))  # kept 30 days: through 10-01
    with pytest.raises(ConflictError) as expired:
        desk.withdraw_statement(case.case_id, by=case.applicant)
    assert expired.value.code == "E_STATEMENT_NONE"



@pytest.fixture
def fed(engine: Engine, more_engines: Callable[[], Engine], ids: dict[str, LoadedIdentity], catalog: Catalog,
        clock: Clock) -> Federation:
    return three_levels(engine, more_engines, ids=ids, catalog=catalog, clock=clock)


@pytest.mark.parametrize(("answered_on", "ticked_on", "result_due", "late"), [
    # Filed Monday 2026-03-02: the source's 10 working days end on 2026-03-16 (seed 003 篇5 第三十一条).
    # An answer that reached the platform on its last day is on time, however late the tick runs;
    # the applicant is told within 5 working days 自收到回复之日起, the day it arrived.
    (dt.date(2026, 3, 16), dt.date(2026, 3, 17), "2026-03-23", False),
    (dt.date(2026, 3, 13), dt.date(2026, 3, 16), "2026-03-20", False),  # a Friday answer, ticked on Monday
    (dt.date(2026, 3, 17), dt.date(2026, 3, 17), "2026-03-24", True),  # arrived a day late
])
def test_an_answer_from_below_counts_from_the_day_it_arrived_not_the_tick(
        fed: Federation, clock: Clock, answered_on: dt.date, ticked_on: dt.date, result_due: str,
        late: bool) -> None:
    rid = fed.records[0]
    case = fed.desk.file(rid, by=fed.city.head(rid).subject_code, reason="处罚内容有误")
    assert case.source_due == "2026-03-16"
    fed.down()
    clock.set_day(answered_on, hour=16)
    fed.source.answer(case.case_id, "confirm")
    fed.up()
    clock.set_day(ticked_on, hour=0)
    assert fed.desk.tick().answered == [case.case_id]
    closed = fed.desk.cases.get(case.case_id)
    assert (closed.closed_on, closed.result_due) == (answered_on.isoformat(), result_due)
    answered = [e for e in fed.desk.cases.events(case.case_id) if e["kind"] == "answered"]
    assert answered[0]["detail"]["late"] is late
