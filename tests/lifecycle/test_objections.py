"""Every path of the objection state machine across department → district → city, frozen clock, real stores."""

from __future__ import annotations

import datetime as dt
import itertools
import pathlib
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, func, select, update

from node import access
from node.catalog import Catalog
from node.errors import ConflictError, NotAuthorizedError, RecordRejected, UsageError
from node.identity import LoadedIdentity
from node.integrity import verify_store
from node.lifecycle import objections as sm
from node.records import decode_body
from node.sampledata import penalty_rows
from node.store.tables import objection_events, record_revisions
from tests.lifecycle.kit import (
    DEPT,
    UNIT,
    Clock,
    Federation,
    Kit,
    audit_rows,
    objection_service,
    three_levels,
    visible,
)


@pytest.fixture
def fed(engine: Engine, more_engines: Callable[[], Engine], ids: dict[str, LoadedIdentity], catalog: Catalog,
        clock: Clock) -> Federation:
    return three_levels(engine, more_engines, ids=ids, catalog=catalog, clock=clock)


def _subject(kit: Kit, record_id: str) -> str:
    return kit.head(record_id).subject_code


def _field(kit: Kit, record_id: str, name: str) -> str:
    return {f.name: f.value for f in decode_body(kit.head(record_id).body).fields}.get(name, "")


def test_correction_round_trip_reaches_every_node(fed: Federation) -> None:
    rid = fed.records[0]
    audits = [audit_rows(k.store) for k in fed.kits()]
    case = fed.desk.file(rid, by=_subject(fed.city, rid), reason="处罚内容有误")
    assert case.case_id == f"{rid}@2" and case.state == sm.AWAITING_SOURCE
    assert case.source_due == "2026-03-16"  # 10 working days after Monday 2 March
    assert fed.city.head(rid).status == "disputed"
    assert not visible(fed.city, rid).visible  # suspended (Hangzhou)
    assert visible(fed.city, rid, "self").marks == (access.MARK_DISPUTED,)  # the subject still sees it

    fed.down()  # the mark and verification request reach the source department
    assert fed.district.head(rid).status == fed.dept.head(rid).status == "disputed"
    assert [r.record_id for r in fed.source.requests()] == [rid]
    answer = fed.source.answer(case.case_id, "correct", fields={"CF_NR": "警告，责令改正。"}, note="已核实更正")
    assert answer.revision == 3 and answer.case is None
    fed.up()
    assert fed.desk.tick().answered == [case.case_id]

    closed = fed.desk.cases.get(case.case_id)
    assert (closed.state, closed.outcome, closed.answer_revision) == (sm.CLOSED, "corrected", 3)
    assert closed.result_due == "2026-03-09"
    for kit in fed.kits():
        head = kit.head(rid)
        assert (head.revision, head.status) == (3, "corrected")
        assert _field(kit, rid, "CF_NR") == "警告，责令改正。"
        assert visible(kit, rid).visible and not visible(kit, rid).marks
        assert [r.revision for r in kit.store.records.history(rid)] == [1, 2, 3]  # history kept
        assert verify_store(kit.store, kit.verifier).ok
    # The correction is signed by the source department, and names what it supersedes.
    body = decode_body(fed.city.head(rid).body)
    assert body.origin_node == DEPT and body.supersedes_digest == fed.city.store.records.get(rid, 2).body_digest.hex()
    events = fed.desk.cases.events(case.case_id)
    assert [e["kind"] for e in events] == ["filed", "checked", "request_sent", "answered", "result"]
    assert events[3]["detail"]["note"] == "已核实更正"  # the source's note reached the platform's case
    assert [e["kind"] for e in fed.source.cases.events(case.case_id)] == ["answered"]
    assert [audit_rows(k.store) for k in fed.kits()] > audits
    assert all(a >= b for a, b in zip([audit_rows(k.store) for k in fed.kits()], audits, strict=True))


@pytest.mark.parametrize(("action", "status", "shown"), [("confirm", "confirmed", True), ("revoke", "revoked", False)])
def test_confirm_and_revoke(fed: Federation, action: str, status: str, shown: bool) -> None:
    rid = fed.records[1]
    case = fed.desk.file(rid, by=_subject(fed.city, rid), reason="不是我公司")
    fed.down()
    fed.source.answer(case.case_id, action)
    fed.up()
    fed.desk.tick()
    assert fed.desk.cases.get(case.case_id).outcome == status
    for kit in fed.kits():
        assert kit.head(rid).status == status
        assert visible(kit, rid).visible is shown


def test_a_repeat_objection_to_a_confirmed_unchanged_record_needs_new_evidence(
        fed: Federation, tmp_path: pathlib.Path) -> None:
    rid = fed.records[1]
    subject = _subject(fed.city, rid)
    case = fed.desk.file(rid, by=subject, reason="金额错误")
    fed.down()
    fed.source.answer(case.case_id, "confirm")
    fed.up()
    fed.desk.tick()
    assert fed.desk.cases.get(case.case_id).outcome == "confirmed"
    with pytest.raises(ConflictError) as again:
        fed.desk.file(rid, by=subject, reason="金额错误")
    assert again.value.code == "E_OBJECTION_REPEATED" and fed.city.head(rid).status == "confirmed"
    new = tmp_path / "缴款凭证.pdf"
    new.write_bytes(b"%PDF-1.4 new evidence")
    assert fed.desk.file(rid, by=subject, reason="金额错误, 见缴款凭证", evidence=new).state != ""


def test_platform_answers_unverifiable_when_it_holds_the_case(fed: Federation) -> None:
    rid = fed.records[2]
    case = fed.desk.file(rid, by=_subject(fed.city, rid), reason="无法核实")
    answer = fed.desk.answer(case.case_id, "unverifiable", note="信源单位无法确定其真实性")
    assert answer.case is not None and answer.case.outcome == "unverifiable"
    assert fed.city.head(rid).status == "deleted" and not visible(fed.city, rid).visible
    fed.down()
    assert fed.dept.head(rid).status == "deleted"  # the source unit is told


def test_missed_deadline_withdraws_the_record_until_the_late_answer(fed: Federation, clock: Clock) -> None:
    rid = fed.records[3]
    case = fed.desk.file(rid, by=_subject(fed.city, rid), reason="信息有误")
    desk = objection_service(fed.city, disputed="mark")  # Shenzhen: shown with the mark meanwhile
    assert visible(fed.city, rid, disputed="mark").marks == (access.MARK_DISPUTED,)
    clock.set_day(dt.date(2026, 3, 16))  # the last day the source may answer
    assert desk.tick().overdue == [] and desk.listing(overdue_only=True) == []
    clock.set_day(dt.date(2026, 3, 17))
    assert [c.case_id for c in desk.listing(overdue_only=True)] == [case.case_id]  # before any tick
    assert desk.tick().overdue == [case.case_id]
    assert desk.tick().overdue == []  # idempotent
    late = desk.cases.get(case.case_id)
    assert (late.state, late.withdrawn_revision) == (sm.OVERDUE, 3)
    # 不再向社会披露 (篇5 第三十一条): not to the public; government sharing keeps it, marked.
    assert fed.city.head(rid).status == "withheld"
    assert not visible(fed.city, rid, disputed="mark").visible
    assert visible(fed.city, rid, role="gov", disputed="mark").marks == (access.MARK_WITHHELD, access.MARK_DISPUTED)
    assert not visible(fed.city, rid, role="gov").visible  # suspended while the objection runs (附件2 六(一))
    assert visible(fed.city, rid, role="self").visible  # the subject still sees its own
    assert [c.case_id for c in desk.listing(overdue_only=True)] == [case.case_id]

    fed.down()  # the withdrawal reaches the department, which answers late
    assert fed.dept.head(rid).status == "withheld"
    assert rid in [r.record_id for r in fed.source.requests()]  # still to be answered there
    fed.source.answer(case.case_id, "confirm")
    fed.up()
    assert desk.tick().answered == [case.case_id]
    closed = desk.cases.get(case.case_id)
    assert (closed.state, closed.outcome, closed.answer_revision) == (sm.CLOSED, "confirmed", 4)
    assert desk.cases.events(case.case_id)[-2]["detail"]["late"] is True
    assert visible(fed.city, rid, disputed="mark").visible and desk.listing(overdue_only=True) == []


def _altered_at_the_city(fed: Federation, rid: str) -> None:
    """The city's stored copy no longer what the department signed: a platform error."""
    wrong = decode_body(fed.city.head(rid).body)
    for f in wrong.fields:
        if f.name == "CF_NR":
            f.value = "被平台改错的内容"
    with fed.city.store.engine.begin() as conn:
        conn.execute(update(record_revisions).where(record_revisions.c.record_id == rid)
                     .values(body=wrong.SerializeToString()))


def test_platform_error_is_corrected_at_once(fed: Federation) -> None:
    rid = fed.records[0]
    signed_value = _field(fed.city, rid, "CF_NR")
    _altered_at_the_city(fed, rid)
    case = fed.desk.file(rid, by=_subject(fed.city, rid), reason="公示内容与处罚决定书不一致")
    assert (case.state, case.outcome) == (sm.CLOSED, "platform_corrected")
    head = fed.city.head(rid)
    assert (head.revision, head.status, _field(fed.city, rid, "CF_NR")) == (2, "corrected", signed_value)
    report = verify_store(fed.city.store, fed.city.verifier)
    assert {f.ref for f in report.findings} == {f"{rid}@1"}  # only the altered copy; the correction verifies
    fed.down()
    assert fed.dept.head(rid).status == "corrected"


def test_statement_of_an_applicant_who_still_disagrees(fed: Federation, clock: Clock) -> None:
    rid = fed.records[1]
    subject = _subject(fed.city, rid)
    case = fed.desk.file(rid, by=subject, reason="不服")
    with pytest.raises(ConflictError) as early:
        fed.desk.statement(case.case_id, by=subject, text="仍有异议")
    assert early.value.code == "E_OBJECTION_STATE"
    fed.desk.answer(case.case_id, "confirm")
    with pytest.raises(NotAuthorizedError) as other:
        fed.desk.statement(case.case_id, by="91330100MA27XL0E2K", text="x")
    assert other.value.code == "E_STATEMENT_NOT_APPLICANT"
    clock.set_day(dt.date(2026, 3, 9))  # 5 working days after the result
    for text, code in (("\u200b \u3000", "E_STATEMENT_EMPTY"), ("疑" * 2001, "E_TEXT_TOO_LONG")):
        with pytest.raises(UsageError) as unkept:
            fed.desk.statement(case.case_id, by=subject, text=text)
        assert unkept.value.code == code
    noted = fed.desk.statement(case.case_id, by=subject, text="仍有异议，已申请行政复议")
    assert noted.statement_until == "2026-04-08"
    assert fed.desk.statements_for([rid]) == {rid: "申请人存疑: 仍有异议，已申请行政复议"}
    clock.set_day(dt.date(2026, 4, 9))
    assert fed.desk.statements_for([rid]) == {}  # kept 30 days; the log keeps it for good
    # The 5 working days run from the day the applicant is told at the latest (the result is due
    # 5 working days after the answer, 2026-03-09), not from the answer itself.
    clock.set_day(dt.date(2026, 3, 16))
    replaced = fed.desk.statement(case.case_id, by=subject, text="补充说明")
    assert (replaced.statement, replaced.statement_until) == ("补充说明", "2026-04-08")  # 30 days from the marking
    clock.set_day(dt.date(2026, 3, 17))
    with pytest.raises(ConflictError) as late:
        fed.desk.statement(case.case_id, by=subject, text="again")
    assert late.value.code == "E_STATEMENT_TOO_LATE" and "2026-03-16" in late.value.message


def test_refusals(fed: Federation, tmp_path: pathlib.Path) -> None:
    rid = fed.records[2]
    subject = _subject(fed.city, rid)
    with pytest.raises(NotAuthorizedError) as not_subject:
        fed.desk.file(rid, by="91330100MA27XL0E2K", reason="x")
    assert not_subject.value.code == "E_OBJECTION_NOT_SUBJECT"
    big = tmp_path / "evidence.pdf"
    big.write_bytes(b"x" * 11_000_000)
    with pytest.raises(UsageError) as too_big:
        fed.desk.file(rid, by=subject, reason="x", evidence=big)
    assert too_big.value.code == "E_EVIDENCE_TOO_LARGE"
    small = tmp_path / "决定书.pdf"
    small.write_bytes(b"%PDF-1.4 evidence")
    case = fed.desk.file(rid, by=subject, reason="x", evidence=small)
    assert case.evidence_name == "决定书.pdf" and fed.desk.cases.evidence(case.case_id) == b"%PDF-1.4 evidence"
    with pytest.raises(ConflictError) as twice:
        fed.desk.file(rid, by=subject, reason="again")
    assert twice.value.code == "E_OBJECTION_OPEN" and case.case_id in twice.value.message
    fed.down()
    with pytest.raises(RecordRejected) as bad:
        fed.source.answer(case.case_id, "correct", fields={"CF_JDRQ": "2025-02-30"})
    assert bad.value.code.startswith("E_")
    with pytest.raises(UsageError) as key:
        fed.source.answer(case.case_id, "correct", fields={"CF_WSH": "另一个文号"})
    assert key.value.code == "E_CORRECTION_KEY_CHANGED"
    with pytest.raises(UsageError) as same:
        fed.source.answer(case.case_id, "correct", fields={"CF_NR": _field(fed.dept, rid, "CF_NR")})
    assert same.value.code == "E_CORRECTION_UNCHANGED"
    fed.source.answer(case.case_id, "revoke")
    with pytest.raises(ConflictError) as again:
        fed.source.answer(case.case_id, "confirm")
    assert again.value.code == "E_OBJECTION_STATE"
    fed.up()
    fed.desk.tick()
    with pytest.raises(ConflictError) as withdrawn:
        fed.desk.file(rid, by=subject, reason="revoked record")
    assert withdrawn.value.code == "E_OBJECTION_NOT_DISCLOSED"


def test_the_log_is_append_only_and_nothing_is_deleted(fed: Federation) -> None:
    rid = fed.records[0]
    kit = fed.city

    def counts() -> tuple[int, int, int]:
        with kit.store.engine.connect() as conn:
            revs = conn.execute(select(func.count()).select_from(record_revisions)).scalar_one()
            events = conn.execute(select(func.count()).select_from(objection_events)).scalar_one()
        return int(revs), int(events), audit_rows(kit.store)

    seen = [counts()]
    case = fed.desk.file(rid, by=_subject(kit, rid), reason="x")
    seen.append(counts())
    fed.desk.answer(case.case_id, "confirm")
    seen.append(counts())
    fed.desk.statement(case.case_id, by=_subject(kit, rid), text="仍有异议")
    seen.append(counts())
    for before, after in itertools.pairwise(seen):
        assert all(b <= a for b, a in zip(before, after, strict=True)) and after != before
    assert kit.store.audit.verify() == []


def test_a_change_on_a_stale_head_stores_nothing(fed: Federation) -> None:
    from node.lifecycle.revisions import Change

    rid = fed.records[1]
    stale = fed.city.head(rid)
    fed.desk.file(rid, by=_subject(fed.city, rid), reason="x")  # revision 2 by the platform
    before = audit_rows(fed.city.store)
    called: list[int] = []
    with pytest.raises(ConflictError) as race:
        fed.city.reviser.commit([Change(stale, "confirmed", "decided on an old copy")], action="test", subject=rid,
                                also=[lambda _conn, rows: called.append(rows[0].revision)])
    assert race.value.code == "E_REVISION_RACE"
    assert audit_rows(fed.city.store) == before and fed.city.head(rid).status == "disputed"
    assert len(fed.city.store.records.history(rid)) == 2 and called == []


def test_a_subject_objects_to_a_record_shared_with_government_only(fed: Federation) -> None:
    # 系统记载的自身公共信用信息 (seed 003 篇1 第三十二条): sharing is disclosure too (篇5 第三十条).
    from node.sampledata import unit_uscc
    from node.tabular import SourceRow
    from tests.lifecycle.kit import UNIT

    subject = unit_uscc("330102", "MA2H0K7X")
    row = {"JC_XDR_MC": "杭州某某贸易有限公司", "JC_XDR_LB": "法人及非法人组织", "JC_XDR_SHXYM": subject,
           "JC_JCBH": "SJ-2026-0001", "JC_JCSX": "登记事项检查", "JC_JCRQ": "2026-01-05",
           "JC_JCJG": "通过登记的住所无法联系", "JC_JCBM": "杭州市上城区市场监督管理局", "JC_JCBMDM": UNIT,
           "JC_SJLY": "杭州市上城区市场监督管理局", "JC_SJLYDM": UNIT}
    out = fed.dept.ingest.ingest_batch(fed.dept.catalog.item("admin_inspection"), [SourceRow(2, row)],
                                       source="jc.csv", batch_id="jc")
    assert out[0].outcome == "accepted", out[0].problems
    fed.up()
    case = fed.desk.file(out[0].record_id, by=subject, reason="住所可以联系，检查时无人值守")
    assert case.state == sm.AWAITING_SOURCE and fed.city.head(out[0].record_id).status == "disputed"


@pytest.mark.parametrize(("action", "outcome"), [("confirm", "confirmed"), ("correct", "corrected")])
def test_an_objection_to_a_repaired_record_leaves_it_repaired(fed: Federation, action: str, outcome: str) -> None:
    from node.lifecycle.revisions import Change

    rid = fed.records[2]
    fed.city.reviser.commit([Change(fed.city.head(rid), "repaired", "信用修复: approved")], action="repair.approve",
                            subject=rid)
    fed.down()
    assert fed.dept.head(rid).status == "repaired"
    case = fed.desk.file(rid, by=_subject(fed.city, rid), reason="处罚内容有误")
    fed.down()
    fields = {"CF_NR": "罚款人民币叁仟元（经核实更正）。"} if action == "correct" else None
    assert fed.source.answer(case.case_id, action, fields=fields).status == "repaired"
    fed.up()
    fed.desk.tick()
    assert fed.desk.cases.get(case.case_id).outcome == outcome
    for kit in fed.kits():
        assert kit.head(rid).status == "repaired"
        assert not visible(kit, rid).visible  # still not public …
        assert visible(kit, rid, "gov").visible  # … and still shared


def test_an_objection_to_a_repaired_record_does_not_publish_it_again_while_marked(fed: Federation) -> None:
    """Repair took the record out of public disclosure (DOMAIN §5: 信用修复); the subject's own
    objection must not bring it back. Under ``access.disputed: mark`` (Shenzhen: 注明该信息处于异议状态,
    seed 003 篇2 第三十六条) the mark is added to what each caller could see before: government and
    the subject see it marked 已信用修复 and 异议正在处理; the public still does not."""
    from node.disclosure import Disclosure
    from node.lifecycle.revisions import Change

    rid = fed.records[2]
    fed.city.reviser.commit([Change(fed.city.head(rid), "repaired", "信用修复: approved")], action="repair.approve",
                            subject=rid)
    fed.down()
    subject = _subject(fed.city, rid)
    fed.desk.file(rid, by=subject, reason="处罚内容有误")
    fed.down()
    today = fed.city.clock.today()
    for kit in fed.kits():
        assert kit.head(rid).status == "disputed"
        reader = Disclosure(kit.store.engine, kit.catalog, kit.node_id, access.Policy(disputed="mark"))
        row = next(r for r in reader.current(subject) if r.record_id == rid)
        public = access.Caller("public:x", "public")
        assert reader.view(row, public, today) is None, kit.node_id  # not public again
        gov = reader.view(row, access.Caller("gov:x", "gov", "duty"), today)
        assert gov is not None and {access.MARK_REPAIRED, access.MARK_DISPUTED} <= set(gov.marks)
        own = reader.view(row, access.Caller(f"self:{subject.lower()}", "self"), today)
        assert own is not None and access.MARK_DISPUTED in own.marks
        judicial = reader.view(row, access.Caller("judicial:x", "judicial", "letter"), today)
        assert judicial is not None and access.MARK_REPAIRED in judicial.marks


def test_a_source_re_exporting_what_an_objection_corrected_does_not_undo_the_correction(fed: Federation) -> None:
    from node.tabular import SourceRow

    rid = fed.records[0]
    case = fed.desk.file(rid, by=_subject(fed.city, rid), reason="处罚内容有误")
    fed.down()
    fed.source.answer(case.case_id, "correct", fields={"CF_NR": "警告，责令改正。"})
    # The department's own table was never fixed: its next full export carries the old text.
    rows = [SourceRow(i + 2, {**r, "CF_JDRQ": "2025-09-01", "CF_YXQ": "2026-09-01"})
            for i, r in enumerate(penalty_rows(4, source_unit=UNIT, seed=1))]
    out = fed.dept.ingest.ingest_batch(fed.dept.item, rows, source="test.csv", batch_id="again")
    assert [o.outcome for o in out] == ["duplicate"] * 4
    assert [p.code for p in out[0].problems] == ["W_CORRECTED_VALUE"] and out[0].problems[0].warning
    assert out[1].problems == ()
    head = fed.dept.head(rid)
    assert (head.revision, head.status, _field(fed.dept, rid, "CF_NR")) == (3, "corrected", "警告，责令改正。")
    # A source that changes the record again, to something new, still makes its next revision.
    rows[0] = SourceRow(2, {**rows[0].values, "CF_NR": "警告，责令限期改正。"})
    out = fed.dept.ingest.ingest_batch(fed.dept.item, rows[:1], source="test.csv", batch_id="changed")
    assert (out[0].outcome, out[0].revision, out[0].problems) == ("accepted", 4, ())
    assert _field(fed.dept, rid, "CF_NR") == "警告，责令限期改正。"


def test_a_source_re_exporting_a_value_the_platform_corrected_keeps_the_correction(fed: Federation) -> None:
    from node.tabular import SourceRow

    rid = fed.records[1]
    # The platform corrects at once when its own copy was wrong; the source's export is right,
    # so it repeats the corrected content: a plain duplicate, no warning.
    _altered_at_the_city(fed, rid)
    fed.desk.file(rid, by=_subject(fed.city, rid), reason="公示内容与处罚决定书不一致")
    fed.down()
    rows = [SourceRow(i + 2, {**r, "CF_JDRQ": "2025-09-01", "CF_YXQ": "2026-09-01"})
            for i, r in enumerate(penalty_rows(4, source_unit=UNIT, seed=1))]
    out = fed.dept.ingest.ingest_batch(fed.dept.item, rows, source="test.csv", batch_id="again")
    assert [(o.outcome, o.problems) for o in out] == [("duplicate", ())] * 4
    assert fed.dept.head(rid).status == "corrected"


def test_a_source_changing_a_record_under_objection_keeps_it_marked_until_the_case_ends(fed: Federation) -> None:
    from node.tabular import SourceRow

    rid = fed.records[3]
    case = fed.desk.file(rid, by=_subject(fed.city, rid), reason="处罚内容有误")
    fed.down()
    assert fed.dept.head(rid).status == "disputed"
    # The department's next export changes the record before it answers the verification request.
    rows = [SourceRow(i + 2, {**r, "CF_JDRQ": "2025-09-01", "CF_YXQ": "2026-09-01"})
            for i, r in enumerate(penalty_rows(4, source_unit=UNIT, seed=1))]
    rows[3] = SourceRow(5, {**rows[3].values, "CF_NR": "警告，责令限期改正。"})
    out = fed.dept.ingest.ingest_batch(fed.dept.item, rows[3:], source="test.csv", batch_id="changed")
    assert out[0].outcome == "accepted" and out[0].record_id == rid
    fed.up()
    for kit in (fed.dept, fed.city):
        head = kit.head(rid)
        assert head.status == "disputed" and _field(kit, rid, "CF_NR") == "警告，责令限期改正。"
    assert fed.desk.cases.get(case.case_id).state == sm.AWAITING_SOURCE
