"""The time limit of a whole objection case (办理时限) and its approved extension: pure.

申请人提出异议申请的…30日内办理完毕；情况复杂的，经市信用主管部门批准可适当延长办理期限，延长答复的
期限最长不得超过15个工作日 (seed 001 附件2 三). The step deadlines (platform 2, source 10, result 5
working days) can together run past 30 calendar days around 春节 or 国庆, and a late step pushes
everything after it, so the case carries its own limit as well: ``limit_due``, 30 calendar days
from filing (the filing day not counted, 民法典 第二百零一条), moved to the next working day when it
falls on a rest day (第二百零三条), as an operator counting on a calendar would. An approved
extension adds working days to the current limit, at most 15 in total, each with its approval
reference in the case log and the audit log. Passing the limit changes nothing about the record
(only a late source withdraws it, 篇5 第三十一条): ``tick`` flags it once, ``list --overdue`` shows it.

A platform check (kind ``check``, seed 003 篇2 第三十三条) has limits of its own (the source told
within 5 and answering within 15 working days): the 30-day limit is not applied to it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Final

from node.errors import ConflictError, UsageError
from node.lifecycle.calendar import WorkingCalendar
from node.lifecycle.objections import CASE_DAYS, CHECK, CLOSED, Case, Step, applicant_text

__all__ = ["MAX_EXTENSION_DAYS", "extended", "limit_passed", "past_limit", "with_limit"]

MAX_EXTENSION_DAYS: Final = 15  # working days, in total over every extension of a case (附件2 三)


def past_limit(case: Case, today: dt.date) -> bool:
    """Open after the last day of its limit (whether or not a tick has flagged it)."""
    return case.state != CLOSED and bool(case.limit_due) and today > dt.date.fromisoformat(case.limit_due)


def extended(case: Case, *, days: int, approval: str, today: dt.date, now_ms: int,
             calendar: WorkingCalendar) -> tuple[Case, list[Step]]:
    """The limit moved by ``days`` working days, as the credit authority approved (``approval``)."""
    if case.kind == CHECK:
        raise ConflictError(f"case {case.case_id} is a platform check: its limits are its source's 15 working "
                            "days (seed 003 篇2 第三十三条), not an objection's 30 days", code="E_OBJECTION_STATE")
    if case.state == CLOSED:
        raise ConflictError(f"case {case.case_id} is closed ({case.outcome})", code="E_OBJECTION_STATE")
    left = MAX_EXTENSION_DAYS - case.extended_days
    if not 1 <= days <= left:
        raise UsageError(f"an extension is 1 to {left} working days for case {case.case_id} (at most "
                         f"{MAX_EXTENSION_DAYS} in all, {case.extended_days} given already; seed 001 附件2 三)",
                         field="working_days", code="E_EXTENSION_TOO_LONG")
    approval = applicant_text(approval, "approval", "an extension needs the reference of its approval by the "
                              "credit authority (经市信用主管部门批准)", "E_EXTENSION_APPROVAL")
    if past_limit(case, today):
        # 延长 a limit that has not run out: an approval after it would excuse the delay afterwards.
        raise ConflictError(f"case {case.case_id}: its limit ended on {case.limit_due}; an extension is "
                            "approved before then", code="E_EXTENSION_TOO_LATE")
    start = dt.date.fromisoformat(case.limit_due) if case.limit_due else \
        calendar.add_calendar_days(dt.date.fromisoformat(case.filed_on), CASE_DAYS)
    due = calendar.add_working_days(start, days).isoformat()
    total = case.extended_days + days
    out = replace(case, limit_due=due, extended_days=total, updated_at_ms=now_ms)
    return out, [Step("extended", {"days": days, "approval": approval, "from": start.isoformat(), "to": due,
                                   "total": total})]


def limit_passed(case: Case) -> list[Step]:
    """The step ``tick`` logs when it first finds the case open past its limit."""
    return [Step("limit_passed", {"limit_due": case.limit_due, "extended_days": case.extended_days})]


def with_limit(case: Case, *, calendar: WorkingCalendar, now_ms: int) -> tuple[Case, list[Step]]:
    """An objection filed before cases had a limit gets it from its filing day (no steps: it has one)."""
    if case.limit_due or case.kind == CHECK or not case.filed_on:
        return case, []
    due = calendar.add_calendar_days(dt.date.fromisoformat(case.filed_on), CASE_DAYS).isoformat()
    return replace(case, limit_due=due, updated_at_ms=now_ms), [Step("limit", {"limit_due": due})]
