"""The time limit of a whole objection case (seed 001 附件2 三) with the shipped calendar: pure."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from node.errors import ConflictError, UsageError
from node.lifecycle import case_limit
from node.lifecycle import objections as sm
from node.lifecycle.calendar import WorkingCalendar, bundled_calendar

CAL = WorkingCalendar.load(bundled_calendar())
D = dt.date


def _filed(day: dt.date) -> sm.Case:
    case, _steps = sm.filed(case_id="R@2", record_id="R", revision=2, item="admin_penalty", subject_code="S",
                            applicant="S", reason="不服", erred=False, today=day, now_ms=0, calendar=CAL,
                            deadlines=sm.Deadlines())
    return case


def _check(day: dt.date) -> sm.Case:
    case, _steps = sm.opened(case_id="R@2", record_id="R", revision=2, item="admin_penalty", subject_code="S",
                             opener="city:330100", reason="不一致", today=day, now_ms=0, calendar=CAL,
                             deadlines=sm.Deadlines())
    return case


@pytest.mark.parametrize(("filed_on", "limit"), [
    (D(2026, 3, 2), D(2026, 4, 1)),  # 30 calendar days, the filing day not counted
    (D(2026, 3, 13), D(2026, 4, 13)),  # day 30 a Sunday: the Monday
    (D(2026, 3, 5), D(2026, 4, 7)),  # day 30 in 清明 (04-04..06): the day after it
    (D(2026, 1, 16), D(2026, 2, 24)),  # day 30 in 春节 (02-15..23)
    (D(2026, 9, 1), D(2026, 10, 8)),  # day 30 on 国庆 (10-01..07)
    (D(2026, 1, 15), D(2026, 2, 14)),  # day 30 a Saturday worked (春节调休): a working day, it stays
])
def test_the_case_limit_is_30_days_moved_off_rest_days(filed_on: dt.date, limit: dt.date) -> None:
    case = _filed(filed_on)
    assert case.limit_due == limit.isoformat() and case.extended_days == 0


def test_a_case_corrected_at_once_has_its_limit_too() -> None:
    case, steps = sm.filed(case_id="R@2", record_id="R", revision=2, item="admin_penalty", subject_code="S",
                           applicant="S", reason="不服", erred=True, today=D(2026, 3, 2), now_ms=0, calendar=CAL,
                           deadlines=sm.Deadlines())
    assert (case.state, case.limit_due) == (sm.CLOSED, "2026-04-01")
    assert steps[0].detail["limit_due"] == "2026-04-01"


def test_a_platform_check_has_no_30_day_limit() -> None:
    # 篇2 第三十三条 sets a check's own limits (notice 5, source 15 working days); 附件2 三 is for objections.
    check = _check(D(2026, 3, 2))
    assert check.limit_due == "" and not case_limit.past_limit(check, D(2027, 1, 1))
    with pytest.raises(ConflictError) as refused:
        case_limit.extended(check, days=5, approval="批复", today=D(2026, 3, 3), now_ms=0, calendar=CAL)
    assert refused.value.code == "E_OBJECTION_STATE"


def test_past_the_limit_only_after_its_last_day_while_open() -> None:
    case = _filed(D(2026, 9, 1))
    assert not case_limit.past_limit(case, D(2026, 10, 8))
    assert case_limit.past_limit(case, D(2026, 10, 9))
    assert case_limit.past_limit(replace(case, state=sm.OVERDUE), D(2026, 10, 9))
    assert not case_limit.past_limit(replace(case, state=sm.CLOSED, closed_on="2026-10-09"), D(2026, 10, 9))


def test_an_extension_adds_working_days_to_the_current_limit() -> None:
    case = _filed(D(2026, 9, 1))  # limit 2026-10-08 (after 国庆)
    once, steps = case_limit.extended(case, days=5, approval="市信用办 批复〔2026〕12号", today=D(2026, 10, 8),
                                      now_ms=1, calendar=CAL)
    # 10-09 Fri, 10-10 Sat worked (国庆调休), 10-12, 10-13, 10-14.
    assert (once.limit_due, once.extended_days) == ("2026-10-14", 5)
    assert steps[0].kind == "extended" and steps[0].detail == {
        "days": 5, "approval": "市信用办 批复〔2026〕12号", "from": "2026-10-08", "to": "2026-10-14", "total": 5}
    twice, _ = case_limit.extended(once, days=10, approval="批复〔2026〕13号", today=D(2026, 10, 9), now_ms=2,
                                   calendar=CAL)
    assert (twice.limit_due, twice.extended_days) == ("2026-10-28", 15)
    with pytest.raises(UsageError) as beyond:
        case_limit.extended(twice, days=1, approval="再延", today=D(2026, 10, 9), now_ms=3, calendar=CAL)
    assert beyond.value.code == "E_EXTENSION_TOO_LONG" and "15" in beyond.value.message


@pytest.mark.parametrize("days", [0, -1, 16])
def test_an_extension_is_1_to_15_working_days(days: int) -> None:
    with pytest.raises(UsageError) as refused:
        case_limit.extended(_filed(D(2026, 3, 2)), days=days, approval="批复", today=D(2026, 3, 3), now_ms=0,
                            calendar=CAL)
    assert refused.value.code == "E_EXTENSION_TOO_LONG"


def test_an_extension_needs_its_approval_and_an_open_case_within_its_limit() -> None:
    case = _filed(D(2026, 3, 2))
    with pytest.raises(UsageError) as blank:
        case_limit.extended(case, days=5, approval="\u200b ", today=D(2026, 3, 3), now_ms=0, calendar=CAL)
    assert blank.value.code == "E_EXTENSION_APPROVAL"
    closed = replace(case, state=sm.CLOSED, closed_on="2026-03-10")
    with pytest.raises(ConflictError) as done:
        case_limit.extended(closed, days=5, approval="批复", today=D(2026, 3, 11), now_ms=0, calendar=CAL)
    assert done.value.code == "E_OBJECTION_STATE"
    with pytest.raises(ConflictError) as late:
        case_limit.extended(case, days=5, approval="批复", today=D(2026, 4, 2), now_ms=0, calendar=CAL)
    assert late.value.code == "E_EXTENSION_TOO_LATE" and "2026-04-01" in late.value.message


def test_a_case_from_before_the_limit_gets_it_from_its_filing_day() -> None:
    legacy = replace(_filed(D(2026, 9, 1)), limit_due="")
    with_limit, steps = case_limit.with_limit(legacy, calendar=CAL, now_ms=5)
    assert with_limit.limit_due == "2026-10-08" and [s.kind for s in steps] == ["limit"]
    assert case_limit.with_limit(with_limit, calendar=CAL, now_ms=6)[1] == []
    assert case_limit.with_limit(replace(_check(D(2026, 9, 1))), calendar=CAL, now_ms=6)[1] == []

