"""Objections (异议): the state machine of one case, pure (no I/O, no clock of its own).

The procedure, as the seeds write it (DOMAIN §5):

1. **Filing** — the subject objects to a record it can see (seed 003 篇1 第三十二条, 篇2 第三十四条,
   篇5 第三十条; seed 001 附件2 一). The record is marked 异议正在处理 at once (seed 001 附件2
   六(一): 当天; 篇1 第三十三条; 篇5 第三十二条) — suspended from use (Hangzhou, 附件2 六(一)) or
   shown with the mark (Shenzhen, 篇2 第三十六条), per ``access.disputed``.
2. **Platform check** — within 2 working days the platform compares what it discloses with
   what the source unit sent (篇5 第三十一条; 篇2 第三十五条: 5). If the platform erred it corrects
   at once (``platform_corrected``); otherwise the objection goes to the source unit.
3. **Source verification** — the source answers within 10 working days (篇5 第三十一条; 篇1
   第三十三条: 5; 篇2 第三十五条: 15; configurable): ``confirm`` (mark removed), ``correct`` (a new
   revision, 篇1 第三十四条(一)), ``revoke`` (withdrawn by its source), or the platform finds it
   ``unverifiable`` (deleted with the reason recorded, 篇5 第三十二条).
4. **Missed deadline** — a source that does not answer in time: the record is no longer disclosed
   (篇5 第三十一条) and the case is ``overdue`` until an answer arrives.
5. **Result** — the applicant is told within 5 working days of the answer (篇5 第三十一条, 篇1
   第三十四条); here the result is recorded when the answer is, so the case closes with it.
6. **Statement** — an applicant who still disagrees may add a statement (申请人存疑) within 5
   working days of the result, kept 30 days (seed 001 附件2 六(三)(五); 篇1 第三十四条(二)), and
   have it withdrawn (附件2 七: within 5 working days; done here at once).

The whole case is done within 30 days of filing, longer by at most 15 working days when the
city's credit authority approves (seed 001 附件2 三): ``limit_due``, ``node.lifecycle.case_limit``.

A **platform check** (信息自查, seed 003 篇2 第三十三条; 篇1 第十一条) is a case of kind ``check``:
the platform itself found the record untrue or incomplete, so no subject applies (``applicant`` is
the node that opened it). The record is 暂停披露 to everyone meanwhile (status ``checking``), the
source unit is told as for an objection and answers the same way, by ``check_source_days``
(篇2 第三十三条: 15; 篇1 第十一条: 5). A late source makes it ``overdue`` without a withdrawal: the
record is already suspended from everyone, and ``withheld`` would give it back to government.

States: ``awaiting_source`` → ``closed``; ``awaiting_source`` → ``overdue`` → ``closed``; a case
the platform corrects at once is ``closed`` when filed. The case log is kept permanently (附件2
八(一)): every step is an event, nothing is deleted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final

from node.errors import ConflictError, NotAuthorizedError, UsageError
from node.identifiers import normalize_text
from node.lifecycle.calendar import WorkingCalendar
from node.records import MAX_REVISION

__all__ = [
    "ACTIONS",
    "AWAITING_SOURCE",
    "CASE_DAYS",
    "CHECK",
    "CLOSED",
    "MAX_TEXT_CHARS",
    "OBJECTION",
    "OVERDUE",
    "Case",
    "Deadlines",
    "Step",
    "answered",
    "applicant_text",
    "case_id_for",
    "filed",
    "opened",
    "outcome_of",
    "overdue",
    "parse_case_id",
    "platform_erred",
    "with_statement",
    "without_statement",
]

AWAITING_SOURCE: Final = "awaiting_source"
OVERDUE: Final = "overdue"
CLOSED: Final = "closed"
OBJECTION: Final = "objection"  # a case's kind: filed by the subject
CHECK: Final = "check"  # opened by the platform itself (信息自查)
# Calendar days a subject's objection is done in (受理、核查、修改和反馈, seed 001 附件2 三).
CASE_DAYS: Final = 30
MAX_TEXT_CHARS: Final = 2_000  # an objection's reason, a statement: a few paragraphs, not a file

# An answer and the status of the revision it makes.
ACTIONS: Final = {"confirm": "confirmed", "correct": "corrected", "revoke": "revoked", "unverifiable": "deleted"}
# The status of the revision that answered a case → the case's outcome. ``active``: the source
# reported the fact again with other values (an ordinary correction through its own pipeline).
_OUTCOMES: Final = {"confirmed": "confirmed", "corrected": "corrected", "active": "corrected",
                    "revoked": "revoked", "deleted": "unverifiable", "expired": "expired",
                    "repaired": "repaired"}


@dataclass(frozen=True)
class Deadlines:
    """Working days (``statement_days``: calendar days), from ``LifecycleConfig``."""

    check_days: int = 2
    source_days: int = 10
    result_days: int = 5
    statement_days: int = 30
    statement_within_days: int = 5
    check_source_days: int = 15


@dataclass(frozen=True)
class Step:
    """One entry of the case log: what happened, with what detail (JSON-able values)."""

    kind: str
    detail: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    case_id: str
    record_id: str
    revision: int  # the revision the case stored: the 异议 mark, or the correction made at once
    item: str
    subject_code: str
    applicant: str
    reason: str
    state: str
    filed_on: str  # ISO dates from here on; '' when not (yet) set
    filed_at_ms: int
    updated_at_ms: int
    evidence_name: str = ""
    evidence_digest: bytes | None = None
    outcome: str = ""
    source_due: str = ""
    result_due: str = ""
    closed_on: str = ""
    withdrawn_revision: int = 0  # the revision that withdrew the record when the source was late
    answer_revision: int = 0  # the revision that answered the case
    statement: str = ""
    statement_until: str = ""
    kind: str = OBJECTION
    limit_due: str = ""  # the case's own limit (附件2 三); '' for a check, and for cases filed before it
    extended_days: int = 0  # working days the limit was extended by, in total (at most 15)

    def overdue_on(self, today: dt.date) -> bool:
        """Past the source's deadline without an answer (whether or not a tick has noticed)."""
        if self.state == OVERDUE:
            return True
        return self.state == AWAITING_SOURCE and bool(self.source_due) and today > _d(self.source_due)

    def statement_shown_on(self, today: dt.date) -> bool:
        return bool(self.statement) and today <= _d(self.statement_until)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {k: v for k, v in vars(self).items() if k != "evidence_digest"}
        out["evidence_digest"] = self.evidence_digest.hex() if self.evidence_digest else ""
        return out


def case_id_for(record_id: str, revision: int) -> str:
    """A case is named after the revision it stored, so every node holding that revision (the
    source department included) can name the case without asking the platform."""
    return f"{record_id}@{revision}"


def parse_case_id(case_id: str) -> tuple[str, int]:
    record_id, sep, rev = case_id.rpartition("@")
    # What no case can have is refused here, before a query: a NUL fails PostgreSQL as if it were
    # down, and '²' passes isdigit() but not int().
    if (not sep or not record_id or not record_id.isprintable() or not (rev.isascii() and rev.isdigit())
            or len(rev) > len(str(MAX_REVISION)) or not 1 <= int(rev) <= MAX_REVISION):
        raise UsageError(f"{case_id!r} is not a case id (RECORD_ID@REVISION)", field="case_id",
                         code="E_OBJECTION_UNKNOWN")
    return record_id, int(rev)


def platform_erred(disclosed: bytes, signed_body: bytes, chain_valid: bool) -> bool:
    """The platform check: what is disclosed differs from what the source signed (and the
    signature shows what that was). With no valid signature the platform cannot tell: ask the source."""
    return chain_valid and disclosed != signed_body


def applicant_text(text: str, field: str, empty: str, empty_code: str) -> str:
    """An applicant's reason or statement as kept: normalised (a zero-width space is no text) and
    at most :data:`MAX_TEXT_CHARS` (it travels in a signed revision, and every lookup shows it)."""
    kept = normalize_text(text, prose=True)
    if not kept:
        raise UsageError(empty, field=field, code=empty_code)
    if len(kept) > MAX_TEXT_CHARS:
        raise UsageError(f"{field} is {len(kept)} characters; at most {MAX_TEXT_CHARS} (attach the rest as "
                         "evidence)", field=field, code="E_TEXT_TOO_LONG")
    return kept


def filed(*, case_id: str, record_id: str, revision: int, item: str, subject_code: str, applicant: str,
          reason: str, erred: bool, today: dt.date, now_ms: int, calendar: WorkingCalendar, deadlines: Deadlines,
          evidence_name: str = "", evidence_digest: bytes | None = None,
          sent_to: str = "") -> tuple[Case, list[Step]]:
    """A new case, checked at once: corrected by the platform, or sent to the source (``sent_to``)."""
    if applicant != subject_code:
        raise NotAuthorizedError("only the subject of a record may object to it",
                                 code="E_OBJECTION_NOT_SUBJECT", field="by")
    reason = applicant_text(reason, "reason", "an objection needs its reason", "E_OBJECTION_REASON")
    check_due = calendar.add_working_days(today, deadlines.check_days).isoformat()
    case = Case(case_id=case_id, record_id=record_id, revision=revision, item=item, subject_code=subject_code,
                applicant=applicant, reason=reason, state=AWAITING_SOURCE, filed_on=today.isoformat(),
                filed_at_ms=now_ms, updated_at_ms=now_ms, evidence_name=evidence_name,
                evidence_digest=evidence_digest, limit_due=calendar.add_calendar_days(today, CASE_DAYS).isoformat())
    steps = [Step("filed", {"reason": case.reason, "evidence": evidence_name,
                            "evidence_sha256": evidence_digest.hex() if evidence_digest else "",
                            "limit_due": case.limit_due}),
             Step("checked", {"platform_erred": erred, "due": check_due, "on": today.isoformat()})]
    if erred:
        case = replace(case, state=CLOSED, outcome="platform_corrected", answer_revision=revision,
                       closed_on=today.isoformat(),
                       result_due=calendar.add_working_days(today, deadlines.result_days).isoformat())
        return case, [*steps, Step("corrected_at_once", {"revision": revision}),
                      Step("result", {"outcome": case.outcome})]
    case = replace(case, source_due=calendar.add_working_days(today, deadlines.source_days).isoformat())
    return case, [*steps, Step("request_sent", {"to": sent_to or "this node (the source unit's own)",
                                                "due": case.source_due})]


def opened(*, case_id: str, record_id: str, revision: int, item: str, subject_code: str, opener: str,
           reason: str, today: dt.date, now_ms: int, calendar: WorkingCalendar, deadlines: Deadlines,
           sent_to: str = "", detail: Mapping[str, object] | None = None) -> tuple[Case, list[Step]]:
    """A platform check opened by ``opener`` (this node), sent to the source at once: the notice is
    due within 5 working days (篇2 第三十三条), and sending it with the suspension meets that."""
    reason = applicant_text(reason, "reason", "a check needs its reason", "E_CHECK_REASON")
    due = calendar.add_working_days(today, deadlines.check_source_days).isoformat()
    case = Case(case_id=case_id, record_id=record_id, revision=revision, item=item, subject_code=subject_code,
                applicant=opener, reason=reason, state=AWAITING_SOURCE, filed_on=today.isoformat(),
                filed_at_ms=now_ms, updated_at_ms=now_ms, source_due=due, kind=CHECK)
    return case, [Step("opened", {"reason": reason, **(detail or {})}),
                  Step("request_sent", {"to": sent_to or "this node (the source unit's own)", "due": due})]


def outcome_of(status: str) -> str:
    return _OUTCOMES.get(status, status)


def answered(case: Case, *, status: str, revision: int, today: dt.date, now_ms: int, calendar: WorkingCalendar,
             deadlines: Deadlines, by: str, note: str = "", outcome: str = "") -> tuple[Case, list[Step]]:
    """The source answered (``status`` of the revision it made): the result is recorded with it.
    ``outcome`` names what ended the case when its status alone would misname it."""
    if case.state == CLOSED:
        raise ConflictError(f"case {case.case_id} is closed ({case.outcome})", code="E_OBJECTION_STATE")
    late = case.overdue_on(today)
    out = replace(case, state=CLOSED, outcome=outcome or outcome_of(status), answer_revision=revision,
                  closed_on=today.isoformat(), updated_at_ms=now_ms,
                  result_due=calendar.add_working_days(today, deadlines.result_days).isoformat())
    return out, [Step("answered", {"status": status, "revision": revision, "by": by, "note": note, "late": late}),
                 Step("result", {"outcome": out.outcome, "due": out.result_due})]


def overdue(case: Case, *, withdrawn_revision: int, today: dt.date, now_ms: int) -> tuple[Case, list[Step]]:
    """The source missed its deadline: the record was withdrawn by ``withdrawn_revision``."""
    if case.state != AWAITING_SOURCE or not case.overdue_on(today):
        raise ConflictError(f"case {case.case_id} is not overdue", code="E_OBJECTION_STATE")
    if case.kind == CHECK:  # still 暂停披露: nothing to withdraw (withdrawn_revision stays 0)
        withdrawn_revision = 0
    out = replace(case, state=OVERDUE, withdrawn_revision=withdrawn_revision, updated_at_ms=now_ms)
    return out, [Step("overdue", {"due": case.source_due, "withdrawn_revision": withdrawn_revision})]


def with_statement(case: Case, *, by: str, text: str, today: dt.date, now_ms: int, calendar: WorkingCalendar,
                   deadlines: Deadlines) -> tuple[Case, list[Step]]:
    """The applicant's 申请人存疑 statement on a closed case (seed 001 附件2 六(三)(五))."""
    if by != case.applicant:
        raise NotAuthorizedError("only the applicant may add a statement to its case",
                                 code="E_STATEMENT_NOT_APPLICANT", field="by")
    if case.kind == CHECK:
        raise ConflictError(f"case {case.case_id} is the platform's own check: no applicant adds a statement",
                            code="E_OBJECTION_STATE")
    if case.state != CLOSED:
        raise ConflictError(f"case {case.case_id} has no result yet ({case.state})", code="E_OBJECTION_STATE")
    text = applicant_text(text, "text", "the statement is empty", "E_STATEMENT_EMPTY")
    # 在领取报告后5个工作日内: counted from the day the applicant is told at the latest
    # (result_due), so a result given on its last allowed day still leaves the whole period.
    told_by = _d(case.result_due) if case.result_due else _d(case.closed_on)
    last = calendar.add_working_days(max(told_by, _d(case.closed_on)), deadlines.statement_within_days)
    if today > last:
        raise ConflictError(f"a statement can be added until {last.isoformat()} "
                            f"({deadlines.statement_within_days} working days after the result is due to "
                            "reach the applicant)", code="E_STATEMENT_TOO_LATE")
    # 该标注保留30日 (附件2 六(五)) counts from the marking: a statement replaced keeps its days.
    until = case.statement_until if case.statement_shown_on(today) else \
        (today + dt.timedelta(days=deadlines.statement_days)).isoformat()
    out = replace(case, statement=text, statement_until=until, updated_at_ms=now_ms)
    return out, [Step("statement", {"text": out.statement, "until": until})]


def without_statement(case: Case, *, by: str, today: dt.date, now_ms: int) -> tuple[Case, list[Step]]:
    """The applicant's own statement withdrawn (异议标注撤销, seed 001 附件2 七(三): within 5 working
    days; 三: 7). Only one still shown: an expired one is no longer shown, so nothing is withdrawn."""
    if by != case.applicant:
        raise NotAuthorizedError("only the applicant may withdraw its statement",
                                 code="E_STATEMENT_NOT_APPLICANT", field="by")
    if not case.statement_shown_on(today):
        ended = f" (it was shown until {case.statement_until})" if case.statement else ""
        raise ConflictError(f"case {case.case_id} has no statement shown{ended}", code="E_STATEMENT_NONE")
    # The row is what callers see; the text stays in the log, kept permanently (附件2 八(一)).
    out = replace(case, statement="", statement_until="", updated_at_ms=now_ms)
    return out, [Step("statement_withdrawn", {"text": case.statement, "was_until": case.statement_until,
                                              "on": today.isoformat()})]


def _d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)
