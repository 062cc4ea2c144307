"""Platform checks (信息自查, seed 003 篇2 第三十三条) across department → district → city, real stores."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from sqlalchemy import Engine

from node import access
from node.catalog import Catalog
from node.conflicts import Conflicts, Fact, observe
from node.errors import ConflictError, NotAuthorizedError
from node.identity import LoadedIdentity
from node.integrity import verify_store
from node.lifecycle import objections as sm
from node.records import decode_body
from node.store._sql import write_transaction
from tests.lifecycle.kit import (
    CITY,
    DISTRICT,
    Clock,
    Federation,
    Kit,
    platform_checks,
    three_levels,
    visible,
)

ROLES = ("public", "self", "agency", "gov")


@pytest.fixture
def fed(engine: Engine, more_engines: Callable[[], Engine], ids: dict[str, LoadedIdentity], catalog: Catalog,
        clock: Clock) -> Federation:
    return three_levels(engine, more_engines, ids=ids, catalog=catalog, clock=clock)


def _suspended_everywhere_but_for_judicial(kit: Kit, rid: str) -> None:
    for policy in ("suspend", "mark"):
        for role in ROLES:
            assert not visible(kit, rid, role, disputed=policy).visible, (kit.node_id, role, policy)
    assert visible(kit, rid, "judicial").marks == (access.MARK_CHECKING,)


def test_opening_a_check_suspends_the_record_for_every_role_and_tells_the_source(fed: Federation) -> None:
    rid = fed.records[0]
    case = fed.checks.open(rid, reason="与市场监管局登记信息不一致", by="operator-01")
    assert (case.case_id, case.kind, case.state, case.applicant) == (f"{rid}@2", sm.CHECK, sm.AWAITING_SOURCE, CITY)
    assert case.source_due == "2026-03-23"  # 15 working days after Monday 2 March (篇2 第三十三条)
    assert fed.city.head(rid).status == "checking"
    _suspended_everywhere_but_for_judicial(fed.city, rid)
    events = fed.desk.cases.events(case.case_id)
    assert [e["kind"] for e in events] == ["opened", "request_sent"]
    assert events[0]["detail"]["by"] == "operator-01" and events[1]["detail"]["to"] == DISTRICT

    fed.down()  # the suspension reaches the source department as its verification request
    for kit in (fed.district, fed.dept):
        assert kit.head(rid).status == "checking"
        _suspended_everywhere_but_for_judicial(kit, rid)
    assert [r.record_id for r in fed.source.requests()] == [rid]


@pytest.mark.parametrize(("action", "status", "shown"), [("confirm", "confirmed", True),
                                                         ("correct", "corrected", True),
                                                         ("revoke", "revoked", False)])
def test_the_source_answer_ends_the_suspension_as_for_objections(fed: Federation, action: str, status: str,
                                                                 shown: bool) -> None:
    rid = fed.records[1]
    case = fed.checks.open(rid, reason="处罚金额不完整")
    fed.down()
    fields = {"CF_NR": "警告，责令改正。"} if action == "correct" else None
    fed.source.answer(case.case_id, action, fields=fields, note="已核查")
    fed.up()
    assert fed.desk.tick().answered == [case.case_id]
    closed = fed.desk.cases.get(case.case_id)
    assert (closed.state, closed.outcome, closed.answer_revision) == (sm.CLOSED, status, 3)
    assert fed.desk.cases.events(case.case_id)[-2]["detail"]["note"] == "已核查"
    assert decode_body(fed.city.head(rid).body).reason.startswith(f"check {case.case_id}: {action}")
    for kit in fed.kits():
        assert kit.head(rid).status == status
        assert all(visible(kit, rid, role).visible is shown for role in ROLES)
        assert verify_store(kit.store, kit.verifier).ok


def test_a_late_source_makes_the_check_overdue_and_the_record_stays_suspended(fed: Federation,
                                                                              clock: Clock) -> None:
    rid = fed.records[2]
    case = fed.checks.open(rid, reason="信息不完整")
    fed.down()
    clock.set_day(dt.date(2026, 3, 23))  # the last day the source may answer
    assert fed.desk.tick().overdue == []
    clock.set_day(dt.date(2026, 3, 24))
    assert fed.desk.tick().overdue == [case.case_id]
    assert fed.desk.tick().overdue == []  # idempotent
    late = fed.desk.cases.get(case.case_id)
    assert (late.state, late.withdrawn_revision) == (sm.OVERDUE, 0)
    assert [c.case_id for c in fed.desk.listing(overdue_only=True)] == [case.case_id]
    # No 'withheld' revision: that would hand the record back to government sharing.
    assert (fed.city.head(rid).revision, fed.city.head(rid).status) == (2, "checking")
    _suspended_everywhere_but_for_judicial(fed.city, rid)

    fed.source.answer(case.case_id, "confirm")  # late, still accepted
    fed.up()
    assert fed.desk.tick().answered == [case.case_id]
    closed = fed.desk.cases.get(case.case_id)
    assert (closed.state, closed.outcome) == (sm.CLOSED, "confirmed")
    assert fed.desk.cases.events(case.case_id)[-2]["detail"]["late"] is True
    assert visible(fed.city, rid).visible


def test_one_case_at_a_time_on_a_record(fed: Federation) -> None:
    checked, objected = fed.records[0], fed.records[1]
    case = fed.checks.open(checked, reason="不真实")
    with pytest.raises(ConflictError) as twice:
        fed.checks.open(checked, reason="不真实")
    assert twice.value.code == "E_OBJECTION_OPEN" and case.case_id in str(twice.value)
    subject = fed.city.head(checked).subject_code
    with pytest.raises(ConflictError) as objection:  # the subject objects after the check's answer
        fed.desk.file(checked, by=subject, reason="有误")
    assert objection.value.code == "E_OBJECTION_OPEN"
    fed.desk.file(objected, by=fed.city.head(objected).subject_code, reason="有误")
    with pytest.raises(ConflictError) as under_objection:
        fed.checks.open(objected, reason="不完整")
    assert under_objection.value.code == "E_OBJECTION_OPEN"
    assert fed.city.head(objected).status == "disputed"


def test_a_check_is_the_platforms_not_the_source_units(fed: Federation) -> None:
    with pytest.raises(NotAuthorizedError) as refused:
        platform_checks(fed.dept, fed.source).open(fed.records[0], reason="自查")
    assert refused.value.code == "E_CHECK_NOT_PLATFORM"
    case = fed.checks.open(fed.records[3], reason="不真实")
    answered = fed.desk.answer(case.case_id, "confirm")  # the platform holding the case answers for the source
    assert answered.case is not None and answered.case.outcome == "confirmed"
    with pytest.raises(NotAuthorizedError):  # no subject applied: no subject adds a statement
        fed.desk.statement(case.case_id, by=fed.city.head(case.record_id).subject_code, text="存疑")
    with pytest.raises(ConflictError) as statement:  # nor the node that opened it
        sm.with_statement(answered.case, by=CITY, text="存疑", today=fed.city.clock.today(), now_ms=fed.city.clock(),
                          calendar=fed.city.calendar, deadlines=sm.Deadlines())
    assert statement.value.code == "E_OBJECTION_STATE"


def test_a_conflict_opens_a_check_of_each_side(fed: Federation) -> None:
    a, b = fed.records[0], fed.records[1]
    # Two units reporting one fact differently (the kit's records all come from one unit).
    facts = [Fact("admin_penalty", "K1", "UNIT-A", a, 1, {"CF_FKJE": "100"}),
             Fact("admin_penalty", "K1", "UNIT-B", b, 1, {"CF_FKJE": "200"})]
    with write_transaction(fed.city.store.engine) as conn:
        assert observe(conn, facts) == 1
    conflict = Conflicts(fed.city.store.engine, actor=CITY).list_conflicts()[0]
    cases = fed.checks.from_conflict(conflict.id, reason="两个来源的罚款金额不一致")
    assert [c.record_id for c in cases] == [a, b]
    assert all(fed.desk.cases.events(c.case_id)[0]["detail"]["conflict"] == conflict.id for c in cases)
    assert fed.city.head(a).status == fed.city.head(b).status == "checking"
    with pytest.raises(ConflictError):  # both sides are under check now
        fed.checks.from_conflict(conflict.id, reason="again")
