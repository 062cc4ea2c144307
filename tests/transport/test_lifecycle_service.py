"""The Lifecycle service on a real node (build_runtime) over mTLS: a subject's objections from a portal.

Each test starts a fresh node on 127.0.0.1:0 with the Lifecycle service wired by
``node.app.build_runtime``, stores real signed 行政处罚 records in it (the node is their origin),
and calls it with real certificates: the subject's own (``self:<code>``), the credit portal's
(``gov``), and roles that may not file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import pathlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from node.access import MARK_DISPUTED
from node.identity import issue, load_identity
from node.lifecycle.calendar import WorkingCalendar, bundled_calendar
from node.lifecycle.desk import build_desk
from node.lifecycle.schedule import LifecycleSchedule
from node.records import decode_body, pb, rpc
from node.tabular import SourceRow
from node.transport.grpc_client import health, open_channel
from node.transport.lifecycle_service import SERVICE_NAME

from .conftest import DEADLINE_S, Running
from .nodes import IDENTITIES, Pki, penalty_values

CHINA = dt.timezone(dt.timedelta(hours=8))
GOV = IDENTITIES["gov"][0]


@dataclass
class Portal:
    """A running node holding one penalty per subject, and stubs per certificate."""

    running: Running
    pki: Pki
    certs: pathlib.Path
    records: dict[str, str]  # subject code -> record id
    channels: list[grpc.Channel] = field(default_factory=list)

    @property
    def subjects(self) -> list[str]:
        return sorted(self.records)

    def stub(self, name: str, service: str = "lifecycle") -> Any:
        """A stub for ``name``: a transport test identity (``gov``, ``agency``, …) or ``self:<code>``."""
        if name.startswith("self:"):
            out = self.certs / name.replace(":", "_")
            if not out.exists():
                issue(self.pki.ca, name, "self", out)
            identity = load_identity(out)
        else:
            identity = self.pki.identity(name)
        channel = open_channel(self.running.address, identity)
        self.channels.append(channel)
        make = rpc.LifecycleStub if service == "lifecycle" else rpc.QueryStub
        return make(channel)  # type: ignore[no-untyped-call]

    def own(self, subject: str) -> Any:
        return self.stub(f"self:{subject.lower()}")

    def status(self, record_id: str) -> str:
        head = self.running.node.store.records.get(record_id)
        assert head is not None
        return head.status


def _today() -> dt.date:
    return dt.datetime.now(CHINA).date()


def _store_penalties(running: Running) -> dict[str, str]:
    """Four legal persons' penalties decided a month ago (an ordinary one: disclosed for a year)."""
    decided = _today() - dt.timedelta(days=30)
    rows = [r for r in penalty_values(20) if r["CF_XDR_LB"] == "法人及非法人组织"][:4]
    assert len(rows) == 4
    item = running.node.catalog.item("admin_penalty")
    source = [SourceRow(i + 1, {**r, "CF_JDRQ": decided.isoformat(),
                                "CF_YXQ": (decided + dt.timedelta(days=365)).isoformat()})
              for i, r in enumerate(rows)]
    outcomes = running.node.ingest.ingest_batch(item, source, source="test", batch_id="portal")
    assert all(o.outcome == "accepted" for o in outcomes), [o.problems for o in outcomes]
    by_subject = {}
    for o in outcomes:
        head = running.node.store.records.get(o.record_id)
        assert head is not None
        by_subject[head.subject_code] = o.record_id
    return by_subject


@contextmanager
def _portal(running: Running, pki: Pki, certs: pathlib.Path) -> Iterator[Portal]:
    portal = Portal(running, pki, certs, _store_penalties(running))
    try:
        yield portal
    finally:
        for channel in portal.channels:
            channel.close()


@pytest.fixture
def portal(serve: Callable[..., Running], pki: Pki, tmp_path: pathlib.Path) -> Iterator[Portal]:
    with _portal(serve(lifecycle={"portals": [GOV]}), pki, tmp_path / "certs") as made:
        yield made


def refusal(exc: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    trailing = dict(exc.trailing_metadata() or ())  # type: ignore[attr-defined]
    return exc.code(), str(trailing.get("credit-error-code", ""))  # type: ignore[attr-defined]


def refused(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return refusal(info.value)


# --- filing ----------------------------------------------------------------------------------------
def test_a_subject_filing_over_grpc_marks_its_record_under_objection(portal: Portal) -> None:
    subject = portal.subjects[0]
    record_id = portal.records[subject]
    case = portal.own(subject).FileObjection(pb.FileObjectionRequest(record_id=record_id, reason="罚款金额有误"),
                                             timeout=DEADLINE_S)
    assert (case.case_id, case.record_id, case.revision) == (f"{record_id}@2", record_id, 2)
    assert (case.state, case.outcome, case.subject_code, case.reason) == ("awaiting_source", "", subject,
                                                                         "罚款金额有误")
    assert case.filed_on == _today().isoformat() and case.source_due > case.filed_on and not case.overdue
    # the store: a signed 'disputed' revision is the head
    head = portal.running.node.store.records.get(record_id)
    assert head is not None and (head.revision, head.status) == (2, "disputed")
    assert decode_body(head.body).reason.startswith(f"异议正在处理: objection {case.case_id}")
    # a Lookup: the subject sees its record marked; others no longer see it (access.disputed: suspend)
    query = portal.stub(f"self:{subject.lower()}", "query")
    own = query.Lookup(pb.LookupRequest(subject_code=subject), timeout=DEADLINE_S)
    assert [(v.record_id, v.status, list(v.marks)) for v in own.records] == [(record_id, "disputed", [MARK_DISPUTED])]
    gov = portal.stub("gov", "query").Lookup(pb.LookupRequest(subject_code=subject,
                                                              context=pb.CallerContext(purpose="行政许可审查")),
                                             timeout=DEADLINE_S)
    assert [v.record_id for v in gov.records] == []


def test_the_credit_portal_files_for_the_subject_it_names_and_is_named_in_the_case_log(portal: Portal) -> None:
    subject = portal.subjects[1]
    record_id = portal.records[subject]
    case = portal.stub("gov").FileObjection(pb.FileObjectionRequest(record_id=record_id, subject_code=subject.lower(),
                                                                    reason="已整改完毕"), timeout=DEADLINE_S)
    assert case.state == "awaiting_source" and portal.status(record_id) == "disputed"
    events = build_desk(portal.running.node).objections.cases.events(case.case_id)
    assert events[0]["kind"] == "filed" and events[0]["detail"]["via"] == GOV
    assert build_desk(portal.running.node).objections.cases.get(case.case_id).applicant == subject


def test_a_second_objection_to_a_record_under_objection_is_refused(portal: Portal) -> None:
    subject = portal.subjects[0]
    request = pb.FileObjectionRequest(record_id=portal.records[subject], reason="有误")
    portal.own(subject).FileObjection(request, timeout=DEADLINE_S)
    other = pb.FileObjectionRequest(record_id=portal.records[subject], reason="金额有误")
    assert refused(lambda: portal.own(subject).FileObjection(other, timeout=DEADLINE_S)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "E_OBJECTION_OPEN")


def test_a_filing_sent_again_after_its_answer_was_lost_gets_the_same_case_and_no_second_mark(
        portal: Portal) -> None:
    subject = portal.subjects[0]
    request = pb.FileObjectionRequest(record_id=portal.records[subject], reason="有误", evidence_name="决定书.pdf",
                                      evidence=b"%PDF-1.4 evidence")
    first = portal.own(subject).FileObjection(request, timeout=DEADLINE_S)
    head = portal.running.node.store.records.get(portal.records[subject])
    again = portal.own(subject).FileObjection(request, timeout=DEADLINE_S)  # a retry after a cut connection
    assert again.case_id == first.case_id and again.state == first.state
    assert portal.running.node.store.records.get(portal.records[subject]) == head  # no second 异议 mark
    assert [c.case_id for c in build_desk(portal.running.node).objections.cases.cases_for(
        portal.records[subject])] == [first.case_id]
    other_evidence = pb.FileObjectionRequest(record_id=portal.records[subject], reason="有误",
                                             evidence_name="决定书.pdf", evidence=b"%PDF-1.4 other")
    assert refused(lambda: portal.own(subject).FileObjection(other_evidence, timeout=DEADLINE_S)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "E_OBJECTION_OPEN")


# --- who may file for whom -------------------------------------------------------------------------
def test_filing_against_another_subjects_record_answers_as_no_such_record(portal: Portal) -> None:
    # A record id is derived from public facts (item, unit, decision number, subject): were the
    # refusal to differ from an unknown id's, anyone could test whether another subject holds a
    # record it may not see (repaired, class C, suspended).
    a, b = portal.subjects[:2]
    record_id = portal.records[a]
    absent = record_id[:-6] + ("000000" if not record_id.endswith("000000") else "111111")
    for name, subject_code in (("gov", b), (f"self:{b.lower()}", "")):
        answers = []
        for rid in (record_id, absent):
            request = pb.FileObjectionRequest(record_id=rid, subject_code=subject_code, reason="x")
            with pytest.raises(grpc.RpcError) as info:
                portal.stub(name).FileObjection(request, timeout=DEADLINE_S)
            answers.append((*refusal(info.value), info.value.details().replace(rid, "RID")))  # type: ignore[attr-defined]
        assert answers[0] == answers[1]
        assert answers[0][:2] == (grpc.StatusCode.NOT_FOUND, "E_NOT_FOUND")
    # a subject's certificate claiming to act for another subject is refused for what it is
    claim = pb.FileObjectionRequest(record_id=record_id, subject_code=a, reason="x")
    assert refused(lambda: portal.own(b).FileObjection(claim, timeout=DEADLINE_S)) == (
        grpc.StatusCode.PERMISSION_DENIED, "E_OBJECTION_NOT_SUBJECT")
    assert portal.status(record_id) == "active"
    assert build_desk(portal.running.node).objections.listing() == []


@pytest.mark.parametrize("name", ["agency", "source", "child", "parent"])
def test_roles_other_than_self_and_gov_may_not_file(portal: Portal, name: str) -> None:
    subject = portal.subjects[0]
    request = pb.FileObjectionRequest(record_id=portal.records[subject], subject_code=subject, reason="x")
    assert refused(lambda: portal.stub(name).FileObjection(request, timeout=DEADLINE_S)) == (
        grpc.StatusCode.PERMISSION_DENIED, "E_NOT_AUTHORIZED")
    assert refused(lambda: portal.stub(name).GetObjection(
        pb.GetObjectionRequest(case_id=f"{portal.records[subject]}@2", subject_code=subject),
        timeout=DEADLINE_S)) == (grpc.StatusCode.PERMISSION_DENIED, "E_NOT_AUTHORIZED")
    assert portal.status(portal.records[subject]) == "active"


def test_a_gov_certificate_that_is_no_configured_portal_acts_for_no_subject(serve: Callable[..., Running],
                                                                            pki: Pki, tmp_path: pathlib.Path) -> None:
    # Filing suspends the record: any government user filing in any subject's name could take a
    # blacklisting out of use.
    with _portal(serve(lifecycle={"portals": ["gov:330100:portal"]}), pki, tmp_path / "certs") as portal:
        subject = portal.subjects[0]
        request = pb.FileObjectionRequest(record_id=portal.records[subject], subject_code=subject, reason="x")
        assert refused(lambda: portal.stub("gov").FileObjection(request, timeout=DEADLINE_S)) == (
            grpc.StatusCode.PERMISSION_DENIED, "E_NOT_AUTHORIZED")
        assert refused(lambda: portal.stub("gov").GetObjection(
            pb.GetObjectionRequest(case_id=f"{portal.records[subject]}@2", subject_code=subject),
            timeout=DEADLINE_S)) == (grpc.StatusCode.PERMISSION_DENIED, "E_NOT_AUTHORIZED")
        assert portal.status(portal.records[subject]) == "active"
        # the subject itself still may
        assert portal.own(subject).FileObjection(pb.FileObjectionRequest(
            record_id=portal.records[subject], reason="金额有误"), timeout=DEADLINE_S).state == "awaiting_source"


@pytest.mark.parametrize(("reason", "code"), [(" \u3000\u200b", "E_OBJECTION_REASON"), ("理" * 2001, "E_TEXT_TOO_LONG")])
def test_a_reason_that_is_invisible_or_a_book_is_refused(portal: Portal, reason: str, code: str) -> None:
    subject = portal.subjects[0]
    assert refused(lambda: portal.own(subject).FileObjection(pb.FileObjectionRequest(
        record_id=portal.records[subject], reason=reason), timeout=DEADLINE_S)) == (
        grpc.StatusCode.INVALID_ARGUMENT, code)
    assert portal.status(portal.records[subject]) == "active"


def test_another_subjects_filing_does_not_learn_that_a_record_is_under_objection(portal: Portal) -> None:
    owner, other = portal.subjects[:2]
    record_id = portal.records[owner]
    portal.own(owner).FileObjection(pb.FileObjectionRequest(record_id=record_id, reason="有误"), timeout=DEADLINE_S)
    assert refused(lambda: portal.own(other).FileObjection(pb.FileObjectionRequest(
        record_id=record_id, reason="x"), timeout=DEADLINE_S)) == (grpc.StatusCode.NOT_FOUND, "E_NOT_FOUND")


def test_the_portal_must_name_the_subject_and_the_record(portal: Portal) -> None:
    subject = portal.subjects[0]
    assert refused(lambda: portal.stub("gov").FileObjection(
        pb.FileObjectionRequest(record_id=portal.records[subject], reason="x"), timeout=DEADLINE_S)) == (
        grpc.StatusCode.INVALID_ARGUMENT, "E_USAGE")
    assert refused(lambda: portal.own(subject).FileObjection(
        pb.FileObjectionRequest(reason="x"), timeout=DEADLINE_S)) == (grpc.StatusCode.INVALID_ARGUMENT, "E_USAGE")
    assert refused(lambda: portal.own(subject).FileObjection(
        pb.FileObjectionRequest(record_id="admin_penalty-000000000000000000000000", reason="x"),
        timeout=DEADLINE_S)) == (grpc.StatusCode.NOT_FOUND, "E_NOT_FOUND")
    assert refused(lambda: portal.own(subject).FileObjection(
        pb.FileObjectionRequest(record_id=portal.records[subject], reason="  "), timeout=DEADLINE_S)) == (
        grpc.StatusCode.INVALID_ARGUMENT, "E_OBJECTION_REASON")


# --- reading the case back, the statement ----------------------------------------------------------
def test_the_case_is_read_back_with_its_log_and_takes_the_applicants_statement(portal: Portal) -> None:
    subject, other = portal.subjects[:2]
    record_id = portal.records[subject]
    me = portal.own(subject)
    filed = me.FileObjection(pb.FileObjectionRequest(record_id=record_id, reason="处罚决定已撤销"), timeout=DEADLINE_S)
    read = me.GetObjection(pb.GetObjectionRequest(case_id=filed.case_id), timeout=DEADLINE_S)
    assert (read.state, read.source_due, read.filed_on) == ("awaiting_source", filed.source_due, filed.filed_on)
    assert [s.kind for s in read.steps] == ["filed", "checked", "request_sent"]
    assert all(s.state == "awaiting_source" and s.at_ms > 0 for s in read.steps)
    # no statement before the result
    statement = pb.AttachStatementRequest(case_id=filed.case_id, text="对核查结果仍有异议")
    assert refused(lambda: me.AttachStatement(statement, timeout=DEADLINE_S)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "E_OBJECTION_STATE")

    # the node is the record's origin: its operator answers for the source unit
    build_desk(portal.running.node).objections.answer(filed.case_id, "confirm", note="核实无误")
    closed = portal.stub("gov").GetObjection(pb.GetObjectionRequest(case_id=filed.case_id, subject_code=subject),
                                             timeout=DEADLINE_S)
    assert (closed.state, closed.outcome, closed.closed_on) == ("closed", "confirmed", _today().isoformat())
    assert closed.result_due >= closed.closed_on
    assert [s.kind for s in closed.steps][-2:] == ["answered", "result"]

    with_statement = me.AttachStatement(statement, timeout=DEADLINE_S)
    assert with_statement.statement == "对核查结果仍有异议"
    assert with_statement.statement_until == (_today() + dt.timedelta(days=30)).isoformat()
    again = me.GetObjection(pb.GetObjectionRequest(case_id=filed.case_id), timeout=DEADLINE_S)
    assert again.statement == "对核查结果仍有异议" and again.steps[-1].kind == "statement"

    # only its applicant reads a case or adds to it: to anyone else it is a case that does not
    # exist, with the same answer (nobody learns that another subject's record is disputed)
    unknown = f"{portal.records[other]}@7"
    for case_id in (filed.case_id, unknown):
        with pytest.raises(grpc.RpcError) as info:
            portal.own(other).GetObjection(pb.GetObjectionRequest(case_id=case_id), timeout=DEADLINE_S)
        assert (info.value.code(), dict(info.value.trailing_metadata() or ())["credit-error-code"]) == (
            grpc.StatusCode.NOT_FOUND, "E_OBJECTION_UNKNOWN")
        assert info.value.details() == (f"E_OBJECTION_UNKNOWN [case_id]: no objection case {case_id} "
                                        f"of subject {other}")
    assert refused(lambda: portal.stub("gov").AttachStatement(pb.AttachStatementRequest(
        case_id=filed.case_id, subject_code=other, text="x"), timeout=DEADLINE_S)) == (
        grpc.StatusCode.NOT_FOUND, "E_OBJECTION_UNKNOWN")
    for case_id, status in ((f"{portal.records[other]}@2", grpc.StatusCode.NOT_FOUND),
                            ("not-a-case", grpc.StatusCode.INVALID_ARGUMENT)):
        assert refused(lambda case_id=case_id: me.GetObjection(pb.GetObjectionRequest(case_id=case_id),
                                                               timeout=DEADLINE_S)) == (status, "E_OBJECTION_UNKNOWN")


def test_the_applicant_withdraws_its_statement_and_reads_the_case_limit(portal: Portal) -> None:
    subject, other = portal.subjects[:2]
    me = portal.own(subject)
    filed = me.FileObjection(pb.FileObjectionRequest(record_id=portal.records[subject], reason="处罚对象有误"),
                             timeout=DEADLINE_S)
    limit = WorkingCalendar.load(bundled_calendar()).add_calendar_days(_today(), 30)  # seed 001 附件2 三
    assert (filed.limit_due, filed.extended_days, filed.past_limit) == (limit.isoformat(), 0, False)
    build_desk(portal.running.node).objections.answer(filed.case_id, "confirm")
    me.AttachStatement(pb.AttachStatementRequest(case_id=filed.case_id, text="仍有异议"), timeout=DEADLINE_S)
    withdraw = pb.WithdrawStatementRequest(case_id=filed.case_id)
    # another subject, or a portal naming one, learns nothing: a case that does not exist
    assert refused(lambda: portal.own(other).WithdrawStatement(withdraw, timeout=DEADLINE_S)) == (
        grpc.StatusCode.NOT_FOUND, "E_OBJECTION_UNKNOWN")
    assert refused(lambda: portal.stub("gov").WithdrawStatement(pb.WithdrawStatementRequest(
        case_id=filed.case_id, subject_code=other), timeout=DEADLINE_S)) == (
        grpc.StatusCode.NOT_FOUND, "E_OBJECTION_UNKNOWN")
    withdrawn = portal.stub("gov").WithdrawStatement(pb.WithdrawStatementRequest(
        case_id=filed.case_id, subject_code=subject), timeout=DEADLINE_S)
    assert (withdrawn.statement, withdrawn.statement_until) == ("", "")
    read = me.GetObjection(pb.GetObjectionRequest(case_id=filed.case_id), timeout=DEADLINE_S)
    assert read.statement == "" and read.steps[-1].kind == "statement_withdrawn"
    assert refused(lambda: me.WithdrawStatement(withdraw, timeout=DEADLINE_S)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "E_STATEMENT_NONE")


# --- evidence --------------------------------------------------------------------------------------
def test_evidence_is_kept_by_digest_and_evidence_over_the_limit_is_refused(serve: Callable[..., Running],
                                                                            pki: Pki, tmp_path: pathlib.Path) -> None:
    running = serve(lifecycle={"evidence_max_bytes": 1024})
    with _portal(running, pki, tmp_path / "certs") as portal:
        big, small = portal.subjects[:2]
        too_large = pb.FileObjectionRequest(record_id=portal.records[big], reason="见附件",
                                            evidence_name="扫描件.pdf", evidence=b"x" * 1025)
        assert refused(lambda: portal.own(big).FileObjection(too_large, timeout=DEADLINE_S)) == (
            grpc.StatusCode.INVALID_ARGUMENT, "E_EVIDENCE_TOO_LARGE")
        assert portal.status(portal.records[big]) == "active"

        data = b"%PDF-1.7 " + b"y" * 1015  # exactly the limit
        case = portal.own(small).FileObjection(pb.FileObjectionRequest(
            record_id=portal.records[small], reason="见附件", evidence_name="../../etc/缴款凭证.pdf", evidence=data),
            timeout=DEADLINE_S)
        assert (case.evidence_name, case.evidence_digest) == ("缴款凭证.pdf", hashlib.sha256(data).digest())
        assert build_desk(running.node).objections.cases.evidence(case.case_id) == data


def test_the_node_reports_the_lifecycle_service_healthy(running: Running) -> None:
    assert health(running.channel("gov"), SERVICE_NAME, timeout=DEADLINE_S) == "SERVING"


def test_the_node_runs_the_lifecycle_schedule_as_configured(serve: Callable[..., Running]) -> None:
    every_two_minutes = serve(lifecycle={"schedule_every_s": 120})
    assert every_two_minutes.runtime.extension(LifecycleSchedule).every_s == 120
    never = serve(lifecycle={"schedule_every_s": 0})
    with pytest.raises(LookupError):
        never.runtime.extension(LifecycleSchedule)
