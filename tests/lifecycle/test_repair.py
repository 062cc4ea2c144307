"""Credit repair (too early is refused with the date), deletion on request, list measures."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, insert, text

from node import access
from node.catalog import Catalog
from node.errors import ConflictError, NotAuthorizedError, UsageError
from node.identity import LoadedIdentity
from node.integrity import verify_store
from node.lifecycle.deletion import DeletionService
from node.lifecycle.disclosure import Sweep
from node.lifecycle.measures import measures_for
from node.lifecycle.repair import RepairService
from node.sampledata import unit_uscc
from node.store.tables import outbox, repair_requests
from node.tabular import SourceRow
from tests.lifecycle.kit import (
    CITY,
    DEPT,
    DISTRICT,
    UNIT,
    Clock,
    Kit,
    audit_rows,
    carry_down,
    carry_up,
    make_kit,
    visible,
)

ORG = "91350100M000100Y43"


def _repairs(kit: Kit) -> RepairService:
    return RepairService(node_id=kit.node_id, store=kit.store, catalog=kit.catalog, reviser=kit.reviser,
                         clock=kit.clock)


def test_repair_before_the_minimum_period_is_refused_with_the_date(engine: Engine, ids: dict[str, LoadedIdentity],
                                                                  catalog: Catalog, clock: Clock) -> None:
    kit = make_kit(engine, DEPT, parent=DISTRICT, ids=ids, catalog=catalog, clock=clock)
    # Serious: disclosed 1-3 years; repair may be applied for after one year: the year from 2026-02-10
    # includes 2027-02-10 (民法典 第二百零一、二百零二条), so the first day is 2027-02-11.
    rid = kit.import_penalties(1, CF_JDRQ="2026-02-10", CF_YXQ="2027-02-10", CF_SXCD="严重")[0]
    subject = kit.head(rid).subject_code
    repairs = _repairs(kit)
    with pytest.raises(ConflictError) as early:
        repairs.request(rid, by=subject, reason="已履行处罚并完成整改")
    assert early.value.code == "E_REPAIR_TOO_EARLY" and "apply on or after 2027-02-11" in early.value.message
    with pytest.raises(NotAuthorizedError):
        repairs.request(rid, by=ORG, reason="x")
    clock.set_day(dt.date(2027, 2, 10))  # the last day of the minimum period
    with pytest.raises(ConflictError) as still:
        repairs.request(rid, by=subject, reason="已履行处罚并完成整改")
    assert still.value.code == "E_REPAIR_TOO_EARLY"
    clock.set_day(dt.date(2027, 2, 11))
    case = repairs.request(rid, by=subject, reason="已履行处罚并完成整改")
    with pytest.raises(ConflictError) as twice:
        repairs.request(rid, by=subject, reason="again")
    assert twice.value.code == "E_REPAIR_OPEN" and case.case_id in twice.value.message  # found again by its id
    assert [c.case_id for c in repairs.listing("requested")] == [case.case_id]  # `repair list --state requested`
    before = audit_rows(kit.store)
    approved = repairs.approve(case.case_id, by="11330102002482970M", note="同意修复")
    assert (approved.state, approved.repaired_revision) == ("approved", 2)
    head = kit.head(rid)
    assert head.status == "repaired" and len(kit.store.records.history(rid)) == 2
    assert not visible(kit, rid).visible  # not disclosed publicly …
    gov = visible(kit, rid, "gov")
    assert gov.visible and access.MARK_REPAIRED in gov.marks  # … shared with government, marked
    assert audit_rows(kit.store) == before + 1 and verify_store(kit.store, kit.verifier).ok
    # The department re-exports its table with a remark edited: a new revision, still repaired.
    kit.import_penalties(1, CF_JDRQ="2026-02-10", CF_YXQ="2027-02-10", CF_SXCD="严重", BZ="备注已更新")
    head = kit.head(rid)
    assert (head.revision, head.status) == (3, "repaired")
    assert not visible(kit, rid).visible and verify_store(kit.store, kit.verifier).ok
    with pytest.raises(ConflictError) as decided:
        repairs.reject(case.case_id, reason="x")
    assert decided.value.code == "E_REPAIR_STATE"
    with pytest.raises(ConflictError) as repaired:
        repairs.request(rid, by=subject, reason="again")
    assert repaired.value.code == "E_REPAIR_STATUS"


def test_repair_rejected_and_not_applicable(engine: Engine, ids: dict[str, LoadedIdentity], catalog: Catalog,
                                            clock: Clock) -> None:
    kit = make_kit(engine, DEPT, parent=DISTRICT, ids=ids, catalog=catalog, clock=clock)
    rid = kit.import_penalties(1, CF_JDRQ="2025-09-01", CF_YXQ="2026-09-01")[0]  # ordinary: 3 months minimum
    repairs = _repairs(kit)
    case = repairs.request(rid, by=kit.head(rid).subject_code, reason="已整改")
    rejected = repairs.reject(case.case_id, reason="罚款尚未缴纳")
    assert rejected.state == "rejected" and kit.head(rid).status == "active"
    red = _red_list(kit)
    with pytest.raises(UsageError) as na:
        repairs.request(red, by=kit.head(red).subject_code, reason="x")
    assert na.value.code == "E_REPAIR_NOT_APPLICABLE"


def _red_list_row(until: str = "2099-12-31") -> dict[str, str]:
    return {"HM_ZTMC": "杭州示范企业有限公司", "HM_ZTLB": "法人及非法人组织", "HM_SHXYM": ORG,
            "HM_MDMC": "守信激励对象", "HM_LB": "表彰奖励", "HM_RDYJ": "杭州市守信激励办法",
            "HM_RDWH": "杭信〔2025〕1号", "HM_RDJG": "杭州市发展和改革委员会",
            "HM_RDJGDM": unit_uscc("330100", "00000001"), "HM_RDRQ": "2025-06-01", "HM_YXQZ": until,
            "HM_SJLY": "上城区市场监督管理局", "HM_SJLYDM": UNIT}


def _red_list(kit: Kit, *, until: str = "2099-12-31") -> str:
    item = kit.catalog.item("red_list")
    out = kit.ingest.ingest_batch(item, [SourceRow(2, _red_list_row(until))], source="red.csv", batch_id="red")
    assert out[0].outcome == "accepted", out[0].problems
    return out[0].record_id


def test_deletion_on_request_reaches_the_source(engine: Engine, more_engines: Callable[[], Engine],
                                                ids: dict[str, LoadedIdentity], catalog: Catalog,
                                                clock: Clock) -> None:
    dept = make_kit(engine, DEPT, parent=DISTRICT, ids=ids, catalog=catalog, clock=clock)
    district = make_kit(more_engines(), DISTRICT, parent=CITY, children=[DEPT], ids=ids, catalog=catalog,
                        clock=clock)
    rid = _red_list(dept)
    penalty = dept.import_penalties(1, CF_JDRQ="2025-09-01", CF_YXQ="2026-09-01")[0]
    carry_up(dept, district)
    deletions = DeletionService(node_id=DISTRICT, store=district.store, catalog=catalog, reviser=district.reviser,
                                calendar=district.calendar, deadline_days=2, clock=clock)
    with pytest.raises(NotAuthorizedError):
        deletions.request(rid, by="91330100MA27XL0E2K")
    with pytest.raises(UsageError) as adverse:
        deletions.request(penalty, by=district.head(penalty).subject_code)
    assert adverse.value.code == "E_DELETION_NOT_ALLOWED"  # adverse information is never deleted on request
    done = deletions.request(rid, by=ORG, reason="本单位申请删除")
    assert (done.revision, done.due, done.told) == (2, dt.date(2026, 3, 4), DEPT)
    assert district.head(rid).status == "deleted" and not visible(district, rid).visible
    assert carry_down(district, dept) == 1  # the source unit is told
    assert dept.head(rid).status == "deleted"
    # The source re-exports its table with the entry edited: the next revision, still deleted.
    item = catalog.item("red_list")
    again = dept.ingest.ingest_batch(item, [SourceRow(2, {**_red_list_row(), "BZ": "复核后更正备注"})],
                                     source="red.csv", batch_id="red2")
    assert (again[0].outcome, again[0].revision) == ("accepted", 3)
    assert dept.head(rid).status == "deleted" and not visible(dept, rid).visible
    notice = [e for e in district.store.audit.iter() if e.action == "deletion.notice"]
    assert len(notice) == 1 and notice[0].detail["told"] == DEPT and notice[0].detail["due"] == "2026-03-04"
    with pytest.raises(ConflictError):
        deletions.request(rid, by=ORG)


def test_list_measures_follow_the_head(engine: Engine, ids: dict[str, LoadedIdentity], catalog: Catalog,
                                       clock: Clock) -> None:
    kit = make_kit(engine, DEPT, parent=DISTRICT, ids=ids, catalog=catalog, clock=clock)
    item = catalog.item("red_list")
    rid = _red_list(kit, until="2026-02-28")  # listed until the end of February
    assert measures_for(item, "active") == item.measures and "行政审批绿色通道" in item.measures
    assert measures_for(item, "disputed") == () and measures_for(item, "repaired") == ()
    assert measures_for(catalog.item("admin_penalty"), "active") == ()
    assert measures_for(item, "active", "closed") == ()
    # Leaving the list is a revision that travels: the sweep archives the entry after its end date.
    moved = Sweep(store=kit.store, catalog=catalog, reviser=kit.reviser, node_id=DEPT, today=clock.today).run()
    assert [r for r, _v, _i in moved.moved] == [rid]
    assert measures_for(item, kit.head(rid).status) == ()
    with kit.store.engine.connect() as conn:
        rows = conn.execute(outbox.select().where(outbox.c.record_id == rid)).all()
    assert sorted((r.revision, r.destination) for r in rows) == [(1, DISTRICT), (2, DISTRICT)]


def test_a_repair_approved_at_the_district_stops_disclosure_below_and_above(
        engine: Engine, more_engines: Callable[[], Engine], ids: dict[str, LoadedIdentity], catalog: Catalog,
        clock: Clock) -> None:
    dept = make_kit(engine, DEPT, parent=DISTRICT, ids=ids, catalog=catalog, clock=clock)
    district = make_kit(more_engines(), DISTRICT, parent=CITY, children=[DEPT], ids=ids, catalog=catalog,
                        clock=clock)
    city = make_kit(more_engines(), CITY, parent=None, children=[DISTRICT], ids=ids, catalog=catalog, clock=clock)
    rid = dept.import_penalties(1, CF_JDRQ="2026-02-10", CF_YXQ="2027-02-10", CF_SXCD="严重")[0]
    carry_up(dept, district)
    carry_up(district, city)
    clock.set_day(dt.date(2027, 2, 11))
    repairs = _repairs(district)
    case = repairs.request(rid, by=district.head(rid).subject_code, reason="已履行处罚并完成整改")
    assert repairs.approve(case.case_id, note="同意修复").repaired_revision == 2
    assert carry_down(district, dept) == 1  # the source unit's node holds the repaired revision too
    assert carry_up(district, city) == 1
    for kit in (dept, district, city):
        assert kit.head(rid).status == "repaired" and kit.head(rid).revision == 2, kit.node_id
        assert not visible(kit, rid).visible, kit.node_id


def test_a_deletion_on_request_during_an_objection_is_logged_as_such_not_as_unverifiable(
        engine: Engine, ids: dict[str, LoadedIdentity], catalog: Catalog, clock: Clock) -> None:
    """The subject deletes its own commendation while its objection to it runs (seed 003 篇5 第二十九条:
    within 2 working days, whatever else is pending). The case then ends by that deletion, and its
    log, kept permanently and truthfully (seed 001 附件2 八(一)), says so: not 'unverifiable', which
    records that the platform could not verify the information (篇5 第三十二条: 删除并记录删除原因)."""
    from tests.lifecycle.kit import objection_service

    dept = make_kit(engine, DEPT, parent=DISTRICT, ids=ids, catalog=catalog, clock=clock)
    rid = _red_list(dept)
    desk = objection_service(dept)
    case = desk.file(rid, by=ORG, reason="认定日期有误")
    deletions = DeletionService(node_id=DEPT, store=dept.store, catalog=catalog, reviser=dept.reviser,
                                calendar=dept.calendar, deadline_days=2, clock=clock)
    deletions.request(rid, by=ORG, reason="本单位申请删除")
    assert desk.tick().answered == [case.case_id]
    closed = desk.cases.get(case.case_id)
    assert (closed.state, closed.outcome) == ("closed", "deleted_on_request")


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_repair_requests_at_once_leave_one_case_and_name_it_to_the_other(
        engine: Engine, ids: dict[str, LoadedIdentity], catalog: Catalog, clock: Clock) -> None:
    # On PostgreSQL both found no pending case and numbered the same one; the later failed on its
    # key as a store constraint error (exit 1) instead of naming the case, as SQLite's lock does.
    kit = make_kit(engine, DEPT, parent=DISTRICT, ids=ids, catalog=catalog, clock=clock)
    rid = kit.import_penalties(1, CF_JDRQ="2025-09-01", CF_YXQ="2026-09-01")[0]
    subject = kit.head(rid).subject_code
    first = engine.connect()
    first.begin()  # the other request, inserted and not committed yet
    first.execute(insert(repair_requests).values(
        case_id=f"{rid}#r1", record_id=rid, revision=1, item="admin_penalty", subject_code=subject,
        applicant=subject, reason="已整改", state="requested", decision_reason="", decided_by="",
        repaired_revision=0, requested_at_ms=kit.clock(), decided_at_ms=None))
    outcome: list[object] = []

    def second() -> None:
        try:
            outcome.append(_repairs(kit).request(rid, by=subject, reason="已整改"))
        except Exception as exc:  # surfaced in the assertion below
            outcome.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    with engine.connect() as watcher:
        deadline = time.monotonic() + 30
        while not watcher.execute(text("select count(*) from pg_stat_activity where datname = current_database() "
                                       "and wait_event_type = 'Lock'")).scalar():
            watcher.rollback()
            assert time.monotonic() < deadline, "the second request never waited for the first"
    first.commit()
    first.close()
    thread.join()
    [error] = outcome
    assert isinstance(error, ConflictError) and error.code == "E_REPAIR_OPEN", error
    assert f"{rid}#r1" in error.message
    assert [c.case_id for c in _repairs(kit).listing("requested")] == [f"{rid}#r1"]
