"""Objections at one node: file, answer, tick (deadlines), statements; the I/O around ``objections``.

The node where a subject files an objection acts as the platform for it: it marks the record
(a ``disputed`` revision that travels up to every node above and down towards the source
department: the verification request), checks its copy against what the source signed, and keeps
the case. The source department's node answers under the same case id (``RECORD_ID@REVISION``
names the revision it received): its ``confirmed`` / ``corrected`` / ``revoked`` revision travels
up, and the platform's ``tick`` sees it arrive as the record's new head and closes the case. When
the node holding the case is itself the source unit's node, the operator answers there directly.
``tick`` also withholds records whose source missed its deadline (a ``withheld`` revision naming the
case: no longer disclosed to society, government sharing keeps it marked). Every step is logged (``objection_events`` + audit) in the transaction that makes it.
"""

from __future__ import annotations

import datetime as dt
import pathlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import Connection, select

from node import access
from node.catalog import Catalog
from node.errors import ConflictError, NotAuthorizedError, NotFoundError, RecordRejected, UsageError
from node.identifiers import normalize_text
from node.lifecycle import case_limit
from node.lifecycle import objections as sm
from node.lifecycle.calendar import WorkingCalendar, china_date
from node.lifecycle.deletion import ON_REQUEST
from node.lifecycle.disclosure import in_period
from node.lifecycle.evidence import Evidence, read_evidence
from node.lifecycle.objection_store import ObjectionStore
from node.lifecycle.revisions import Change, Reviser
from node.records import decode_body, decode_signed, fields_dict, make_record_id
from node.signing import Verifier
from node.store import RecordRow, Store
from node.store._sql import translated
from node.store.tables import record_heads
from node.validation import Checked, Validator

__all__ = ["UNDER_CASE", "Answer", "ObjectionService", "TickReport"]

# Statuses of a record whose objection or check awaits its source's answer.
UNDER_CASE = ("disputed", "withheld", "checking")
MARKS = ("disputed", "checking")  # the revision that opens a case: nothing answered yet


@dataclass(frozen=True)
class Answer:
    case_id: str
    record_id: str
    revision: int  # the revision the answer stored
    status: str
    case: sm.Case | None  # the case, when it is kept at this node


@dataclass
class TickReport:
    answered: list[str] = field(default_factory=list)
    overdue: list[str] = field(default_factory=list)
    past_limit: list[str] = field(default_factory=list)  # flagged in this tick (seed 001 附件2 三)

    def as_dict(self) -> dict[str, object]:
        return {"answered": self.answered, "overdue": self.overdue, "past_limit": self.past_limit}


class ObjectionService:
    def __init__(self, *, node_id: str, store: Store, catalog: Catalog, reviser: Reviser, verifier: Verifier,
                 validator: Validator, calendar: WorkingCalendar, deadlines: sm.Deadlines,
                 policy: access.Policy, clock: Callable[[], int], evidence_max_bytes: int = 10_485_760) -> None:
        self._node_id = node_id
        self._store = store
        self._catalog = catalog
        self._reviser = reviser
        self._verifier = verifier
        self._validator = validator
        self._calendar = calendar
        self._deadlines = deadlines
        self._policy = policy
        self._clock = clock
        self._evidence_max = evidence_max_bytes
        self.cases = ObjectionStore(store.engine)

    # --- filing -------------------------------------------------------------------------------
    def file(self, record_id: str, *, by: str, reason: str, evidence: pathlib.Path | Evidence | None = None,
             via: str = "") -> sm.Case:
        """``via``: who filed for the subject (a portal's certificate id), kept in the case log."""
        now = self._clock()
        today = china_date(now)
        head = self._head(record_id)
        applicant = normalize_text(by).upper()
        reason = sm.applicant_text(reason, "reason", "an objection needs its reason", "E_OBJECTION_REASON")
        # The subject first: no one else may learn from the answer that a record is under objection.
        if applicant != head.subject_code:
            raise NotAuthorizedError("only the subject of a record may object to it",
                                     code="E_OBJECTION_NOT_SUBJECT", field="by")
        open_case = self.cases.open_for(record_id)
        if open_case is not None and _same_filing(open_case, applicant, reason,
                                                  read_evidence(evidence, self._evidence_max)[2]):
            return open_case  # the call repeated (its answer lost on the way): the same case, no second effect
        if open_case is not None or head.status in UNDER_CASE:
            # Under the platform's check too: its answer settles the record first; object after it.
            named = f": case {open_case.case_id}" if open_case is not None else ""
            raise ConflictError(f"record {record_id} is already under objection or check{named}",
                                code="E_OBJECTION_OPEN")
        in_period(self._catalog, head, today, "an objection", self._store.engine)
        name, blob, digest = read_evidence(evidence, self._evidence_max)
        self._not_a_repeat(head, digest)
        signed = decode_signed(head.signed)
        erred = sm.platform_erred(head.body, bytes(signed.body), self._verifier.verify([signed])[0] is None)
        revision = head.revision + 1
        case_id = sm.case_id_for(record_id, revision)
        if erred:
            restored = head._replace(body=bytes(signed.body))
            change = Change(restored, "corrected", f"objection {case_id}: the copy disclosed here differed from "
                            "what the source unit signed; corrected at once (seed 003 篇5 第三十一条)",
                            self._checked(restored, {}))
            sent_to = ""
        else:
            change = Change(head, "disputed", f"异议正在处理: objection {case_id}: {reason}")
            sent_to = self._reviser.children_of([record_id]).get(record_id, "")
        case, steps = sm.filed(case_id=case_id, record_id=record_id, revision=revision, item=head.item,
                               subject_code=head.subject_code, applicant=applicant, reason=reason, erred=erred,
                               today=today, now_ms=now, calendar=self._calendar, deadlines=self._deadlines,
                               evidence_name=name, evidence_digest=digest, sent_to=sent_to)
        steps = _via(steps, via)

        def record(conn: Connection, _rows: list[RecordRow]) -> None:
            self.cases.insert(conn, case, blob)
            self.cases.log(conn, case_id, steps, actor=self._node_id, state=case.state, revision=revision,
                           at_ms=now)

        self._reviser.commit([change], action="objection.revision", subject=case_id, also=[record], now_ms=now)
        return case

    def _not_a_repeat(self, head: RecordRow, evidence_digest: bytes | None) -> None:
        """A record confirmed after an objection, unchanged since, is objected to again only with
        new evidence: 重复提出异议申请且无正当理由的…不再受理 (seed 001 附件2 四(二)). Without
        this, each new objection would suspend the record again for another round of deadlines."""
        for case in self.cases.cases_for(head.record_id):
            if case.outcome == "confirmed" and case.answer_revision == head.revision and (
                    evidence_digest is None or evidence_digest == case.evidence_digest):
                raise ConflictError(
                    f"record {head.record_id} was confirmed on {case.closed_on} after objection {case.case_id} "
                    "and has not changed since: a new objection needs new evidence (seed 001 附件2 四(二))",
                    code="E_OBJECTION_REPEATED")

    # --- answering (at the source unit's node, or where the case is kept) ------------------------
    def answer(self, case_id: str, action: str, *, fields: Mapping[str, str] | None = None, note: str = "",
               by: str = "") -> Answer:
        status = sm.ACTIONS.get(action)
        if status is None:
            raise UsageError(f"answer with one of {', '.join(sm.ACTIONS)}", field="action")
        if fields and action != "correct":
            raise UsageError("--field goes with 'correct' only", field="field")
        now = self._clock()
        today = china_date(now)
        record_id, revision = sm.parse_case_id(case_id)
        case = self.cases.find(case_id)
        head = self._head(record_id)
        if not self._awaits_answer(head, case_id, revision, case):
            raise ConflictError(f"case {case_id}: the record is at revision {head.revision} ({head.status}); "
                                "it was answered already or is not under objection here", code="E_OBJECTION_STATE")
        if case is not None and case.state == sm.CLOSED:
            raise ConflictError(f"case {case_id} is closed ({case.outcome})", code="E_OBJECTION_STATE")
        checked = self._checked(head, fields or {}) if action == "correct" else None
        if checked is not None and self._unchanged(head, checked):
            raise UsageError("the correction changes nothing; answer 'confirm' instead", field="field",
                             code="E_CORRECTION_UNCHANGED")
        label = "check" if head.status == "checking" else "objection"
        reason = f"{label} {case_id}: {action}" + (f": {note.strip()}" if note.strip() else "")
        who = by or self._node_id
        # A repaired record stays repaired whatever the objection found (信用修复 decided, seed 000
        # 第十八条(三)): confirmed or corrected, it is still shared with government only.
        stored = "repaired" if status in ("confirmed", "corrected") and self._was_repaired(record_id, revision) \
            else status
        new_case, steps = (sm.answered(case, status=status, revision=head.revision + 1, today=today, now_ms=now,
                                       calendar=self._calendar, deadlines=self._deadlines, by=who, note=note)
                           if case is not None else
                           (None, [sm.Step("answered", {"status": status, "revision": head.revision + 1,
                                                        "by": who, "note": note})]))

        def record(conn: Connection, rows: list[RecordRow]) -> None:
            if new_case is not None:
                self.cases.update(conn, new_case)
            self.cases.log(conn, case_id, steps, actor=self._node_id, state=new_case.state if new_case else "",
                           revision=rows[0].revision, at_ms=now)

        rows, _ = self._reviser.commit([Change(head, stored, reason, checked)], action="objection.revision",
                                       subject=case_id, also=[record], now_ms=now)
        return Answer(case_id, record_id, rows[0].revision, stored, new_case)

    def _was_repaired(self, record_id: str, mark_revision: int) -> bool:
        """Whether the record was repaired when the objection was filed (the revision before its mark)."""
        before = self._store.records.get(record_id, mark_revision - 1)
        return before is not None and before.status == "repaired"

    @staticmethod
    def _answer_status(head: RecordRow, case_id: str) -> str:
        """What the source answered, as a status: a repaired record's answer keeps it ``repaired``,
        and says in its reason whether it was confirmed or corrected."""
        said = _said(head, case_id) if head.status == "repaired" else None
        return head.status if said is None else sm.ACTIONS.get(said.split(":", 1)[0], head.status)

    @staticmethod
    def _answer_note(head: RecordRow, case_id: str) -> str:
        """The source's note on its answer, which reaches the platform only in the answer revision's
        reason (``objection|check CASE_ID: ACTION: NOTE``, as :meth:`answer` writes it)."""
        said = (_said(head, case_id) or "").split(": ", 1)
        return said[1] if len(said) == 2 else ""

    @staticmethod
    def _awaits_answer(head: RecordRow, case_id: str, revision: int, case: sm.Case | None) -> bool:
        """The head is the case's mark, or the withdrawal of a late case (the source may still answer)."""
        if case is not None:
            return head.revision in (revision, case.withdrawn_revision)
        if head.revision == revision:
            return head.status in ("disputed", "checking")
        # ``deleted``: how stores of earlier versions withdrew a late case.
        return head.status in ("withheld", "deleted") and decode_body(head.body).reason.startswith(
            f"objection {case_id}:")

    def _checked(self, head: RecordRow, changes: Mapping[str, str]) -> Checked:
        """The head's fields with ``changes`` (''= remove), validated by the catalogue; same key."""
        item = self._catalog.item(head.item)
        unknown = sorted(c for c in changes if not item.has_field(c))
        if unknown:
            raise UsageError(f"{item.code} has no field {unknown[0]}", field=unknown[0])
        raw: dict[str, object] = {**fields_dict(decode_body(head.body)), **changes}
        checked = self._validator.check(item, {k: v for k, v in raw.items() if v != ""})
        if not checked.ok:
            raise RecordRejected([p for p in checked.problems if not p.warning])
        if make_record_id(item.code, checked.source_unit, checked.key) != head.record_id:
            raise UsageError(f"a correction cannot change the fact's key ({', '.join(item.key_fields)}) or its "
                             "source unit: revoke the record and report the right one", field="field",
                             code="E_CORRECTION_KEY_CHANGED")
        return checked

    @staticmethod
    def _unchanged(head: RecordRow, checked: Checked) -> bool:
        return tuple(fields_dict(decode_body(head.body)).items()) == checked.fields

    # --- deadlines and answers arriving from the source ---------------------------------------
    def tick(self) -> TickReport:
        """Close cases whose answer arrived, withdraw records whose source is late (idempotent)."""
        now = self._clock()
        today = china_date(now)
        report = TickReport()
        for case in self.cases.open_cases():
            case = self._with_limit(case, now)
            head = self._head(case.record_id)
            if head.revision > max(case.revision, case.withdrawn_revision) and head.status not in MARKS:
                # Dated the day it reached here, not the tick's: 自收到回复之日起 (seed 003 篇5 第三十一条).
                arrived = min(today, china_date(head.received_at_ms)) if head.received_at_ms > 0 else today
                closed, steps = sm.answered(case, status=self._answer_status(head, case.case_id),
                                            revision=head.revision, today=arrived,
                                            now_ms=now, calendar=self._calendar, deadlines=self._deadlines,
                                            by=head.origin_node, note=self._answer_note(head, case.case_id),
                                            outcome=_requested_deletion(head))
                self.cases.apply(closed, steps, actor=self._node_id, at_ms=now)
                report.answered.append(case.case_id)
            elif case.state == sm.AWAITING_SOURCE and case.overdue_on(today) and case.kind == sm.CHECK:
                # Already suspended from everyone: the case is late, the record stays as it is.
                late, steps = sm.overdue(case, withdrawn_revision=0, today=today, now_ms=now)
                self.cases.apply(late, steps, actor=self._node_id, at_ms=now)
                report.overdue.append(case.case_id)
            elif case.state == sm.AWAITING_SOURCE and case.overdue_on(today):
                self._withdraw(case, head, today, now)
                report.overdue.append(case.case_id)
            if case.case_id not in report.answered and case_limit.past_limit(case, today):
                self._flag_limit(case.case_id, today, now, report)
        return report

    def _with_limit(self, case: sm.Case, now: int) -> sm.Case:
        """A case filed before cases had a limit gets it (a migration cannot read the calendar)."""
        case, steps = case_limit.with_limit(case, calendar=self._calendar, now_ms=now)
        if steps:
            self.cases.apply(case, steps, actor=self._node_id, at_ms=now)
        return case

    def _flag_limit(self, case_id: str, today: dt.date, now: int, report: TickReport) -> None:
        """Log once that an open case is past its limit (read again: this tick may have withdrawn it)."""
        if any(e["kind"] == "limit_passed" for e in self.cases.events(case_id)):
            return
        case = self.cases.get(case_id)
        self.cases.apply(case, case_limit.limit_passed(case), actor=self._node_id, at_ms=now)
        report.past_limit.append(case_id)

    def extend(self, case_id: str, *, working_days: int, approval: str) -> sm.Case:
        """The case's limit extended as the credit authority approved (seed 001 附件2 三)."""
        now = self._clock()
        case, steps = case_limit.extended(self.cases.get(case_id), days=working_days, approval=approval,
                                          today=china_date(now), now_ms=now, calendar=self._calendar)
        self.cases.apply(case, steps, actor=self._node_id, at_ms=now)
        return case

    def _withdraw(self, case: sm.Case, head: RecordRow, today: dt.date, now: int) -> None:
        reason = (f"objection {case.case_id}: the source unit did not answer by {case.source_due}; "
                  "no longer disclosed to society (不再向社会披露, seed 003 篇5 第三十一条)")
        new_case, steps = sm.overdue(case, withdrawn_revision=head.revision + 1, today=today, now_ms=now)

        def record(conn: Connection, rows: list[RecordRow]) -> None:
            self.cases.update(conn, new_case)
            self.cases.log(conn, case.case_id, steps, actor=self._node_id, state=new_case.state,
                           revision=rows[0].revision, at_ms=now)

        self._reviser.commit([Change(head, "withheld", reason)], action="objection.revision", subject=case.case_id,
                             also=[record], now_ms=now)

    # --- statements and listing --------------------------------------------------------------
    def statement(self, case_id: str, *, by: str, text: str, via: str = "") -> sm.Case:
        now = self._clock()
        case, steps = sm.with_statement(self.cases.get(case_id), by=normalize_text(by).upper(), text=text,
                                        today=china_date(now), now_ms=now, calendar=self._calendar,
                                        deadlines=self._deadlines)
        self.cases.apply(case, _via(steps, via), actor=self._node_id, at_ms=now)
        return case

    def withdraw_statement(self, case_id: str, *, by: str, via: str = "") -> sm.Case:
        """The applicant's statement no longer shown (seed 001 附件2 七). Like the statement itself, it
        lives in the case at this node and travels in no revision, so nothing else is stored."""
        now = self._clock()
        case, steps = sm.without_statement(self.cases.get(case_id), by=normalize_text(by).upper(),
                                           today=china_date(now), now_ms=now)
        self.cases.apply(case, _via(steps, via), actor=self._node_id, at_ms=now)
        return case

    def today(self) -> dt.date:
        return china_date(self._clock())

    def listing(self, *, overdue_only: bool = False) -> list[sm.Case]:
        today = china_date(self._clock())
        cases = self.cases.open_cases() if overdue_only else self.cases.cases()
        if not overdue_only:
            return cases
        return [c for c in cases if c.overdue_on(today) or case_limit.past_limit(c, today)]

    def requests(self) -> list[RecordRow]:
        """Records marked 异议正在处理 by another node and awaiting an answer here (at a department:
        the verification requests its source unit must answer), the overdue ones (``withheld``) too."""
        h = record_heads.c
        with translated("reading records under objection"), self._store.engine.connect() as conn:
            ids = [r for (r,) in conn.execute(select(h.record_id).where(h.status.in_(UNDER_CASE))
                                              .order_by(h.record_id))]
        rows = [self._head(rid) for rid in ids]
        return [r for r in rows if r.origin_node != self._node_id]

    def statements_for(self, record_ids: list[str]) -> dict[str, str]:
        """申请人存疑 statements still shown today, by record id (for the Query service's marks)."""
        today = china_date(self._clock())
        out: dict[str, str] = {}
        for rid in record_ids:
            for case in self.cases.cases_for(rid):
                if case.statement_shown_on(today):
                    out[rid] = f"申请人存疑: {case.statement}"
        return out

    def _head(self, record_id: str) -> RecordRow:
        head = self._store.records.get(record_id) if record_id.isprintable() else None  # PostgreSQL refuses a NUL
        if head is None:
            raise no_record(record_id)
        return head


def no_record(record_id: str) -> NotFoundError:
    """What a caller hears of a record this node does not hold (or that is not the caller's to know of)."""
    shown = record_id if record_id.isprintable() else repr(record_id)
    return NotFoundError(f"no record {shown} at this node", field="record_id")


def _said(head: RecordRow, case_id: str) -> str | None:
    """What an answer revision's reason says after its case label (None: not an answer to ``case_id``)."""
    reason = decode_body(head.body).reason
    for label in ("objection", "check"):
        if reason.startswith(prefix := f"{label} {case_id}: "):
            return reason[len(prefix):]
    return None


def _requested_deletion(head: RecordRow) -> str:
    """``deleted_on_request`` when the subject's own deletion request (seed 003 篇5 第二十九条) ended
    the case, '' otherwise: a ``deleted`` head alone reads as 'unverifiable' (篇5 第三十二条), a
    finding the platform did not make, in a log kept permanently (seed 001 附件2 八(一))."""
    if head.status == "deleted" and decode_body(head.body).reason.startswith(ON_REQUEST):
        return "deleted_on_request"
    return ""


def _via(steps: list[sm.Step], via: str) -> list[sm.Step]:
    """Name, in the first step's detail, who acted for the subject (a portal), if anyone did."""
    if not via or not steps:
        return steps
    return [sm.Step(steps[0].kind, {**steps[0].detail, "via": via}), *steps[1:]]


def _same_filing(case: sm.Case, applicant: str, reason: str, evidence_digest: bytes | None) -> bool:
    return (case.kind == sm.OBJECTION and case.applicant == applicant and case.reason == reason
            and case.evidence_digest == evidence_digest)
