"""Working days: weekends, public holidays, make-up working days, and the civil counting rule."""

from __future__ import annotations

import datetime as dt
import pathlib

import pytest

from node.errors import ConfigError
from node.lifecycle.calendar import WorkingCalendar, bundled_calendar

D = dt.date


@pytest.fixture(scope="module")
def cal() -> WorkingCalendar:
    return WorkingCalendar.load(bundled_calendar())


def test_bundled_calendar_covers_the_years_it_ships(cal: WorkingCalendar) -> None:
    assert {2025, 2026, 2027} <= cal.years


@pytest.mark.parametrize(("day", "working"), [
    (D(2026, 1, 1), False),   # 元旦
    (D(2026, 1, 4), True),    # Sunday, 元旦 make-up working day
    (D(2026, 2, 14), True),   # Saturday, 春节 make-up working day
    (D(2026, 2, 16), False),  # Monday inside 春节
    (D(2026, 2, 24), True),   # first working day after 春节
    (D(2026, 3, 7), False),   # an ordinary Saturday
    (D(2026, 3, 9), True),    # an ordinary Monday
    (D(2026, 10, 8), True),
    (D(2026, 10, 10), True),  # Saturday, 国庆 make-up working day
])
def test_is_working_day(cal: WorkingCalendar, day: dt.date, working: bool) -> None:
    assert cal.is_working_day(day) is working


def test_the_receipt_day_does_not_count(cal: WorkingCalendar) -> None:
    # Friday + 2 working days = Tuesday (民法典 第二百零一条: the period starts the next day).
    assert cal.add_working_days(D(2026, 3, 6), 2) == D(2026, 3, 10)
    # Received on a Saturday: Monday is the first working day.
    assert cal.add_working_days(D(2026, 3, 7), 1) == D(2026, 3, 9)


def test_deadlines_cross_holidays_and_make_up_days(cal: WorkingCalendar) -> None:
    assert cal.add_working_days(D(2026, 2, 13), 1) == D(2026, 2, 14)  # Saturday worked
    assert cal.add_working_days(D(2026, 2, 13), 2) == D(2026, 2, 24)  # then nine days off
    assert cal.add_working_days(D(2026, 9, 30), 1) == D(2026, 10, 8)
    assert cal.add_working_days(D(2026, 9, 30), 10) == D(2026, 10, 20)  # 10 Oct is a working Saturday


def test_backwards_and_zero(cal: WorkingCalendar) -> None:
    assert cal.add_working_days(D(2026, 2, 24), -1) == D(2026, 2, 14)
    assert cal.add_working_days(D(2026, 2, 15), 0) == D(2026, 2, 15)


@pytest.mark.parametrize("n", [0, 1, 2, 5, 10, 30, 250])
def test_between_is_the_inverse_of_add(cal: WorkingCalendar, n: int) -> None:
    for start in (D(2026, 1, 1), D(2026, 2, 13), D(2026, 9, 19), D(2026, 12, 30)):
        due = cal.add_working_days(start, n)
        assert cal.working_days_between(start, due) == n
        assert cal.working_days_between(due, start) == -n


def test_years_without_a_file_count_weekends_only(cal: WorkingCalendar) -> None:
    assert cal.uncovered_years(D(2027, 12, 30), D(2028, 1, 5)) == [2028]
    assert cal.add_working_days(D(2028, 1, 7), 1) == D(2028, 1, 10)  # Friday → Monday


def test_data_errors_name_the_file(tmp_path: pathlib.Path) -> None:
    (tmp_path / "x-2026.yaml").write_text("year: 2026\nholidays: [{from: 2026-01-01, to: 2025-12-31}]\n")
    with pytest.raises(ConfigError, match=r"x-2026\.yaml: holidays\[0\] ends before it starts"):
        WorkingCalendar.load(tmp_path)
    (tmp_path / "x-2026.yaml").write_text("year: 2026\nworkdays: [{date: 2027-01-02}]\n")
    with pytest.raises(ConfigError, match="not in year 2026"):
        WorkingCalendar.load(tmp_path)
    (tmp_path / "x-2026.yaml").write_text("year: 2026\nworkdays: [{date: 2026-02-30}]\n")
    with pytest.raises(ConfigError, match=r"x-2026\.yaml: a value cannot be read"):
        WorkingCalendar.load(tmp_path)
    (tmp_path / "x-2026.yaml").write_text("year: 2026\nholiday: []\n")
    with pytest.raises(ConfigError, match="unknown keys holiday"):
        WorkingCalendar.load(tmp_path)
    (tmp_path / "x-2026.yaml").write_text(
        "year: 2026\nholidays: [{from: 2026-01-03}]\nworkdays: [{date: 2026-01-03}]\n")
    with pytest.raises(ConfigError, match="both a holiday and a make-up working day"):
        WorkingCalendar.load(tmp_path)
    with pytest.raises(ConfigError, match="no working-day calendar"):
        WorkingCalendar.load(tmp_path / "missing")


def test_two_files_for_one_year_are_refused(tmp_path: pathlib.Path) -> None:
    (tmp_path / "a.yaml").write_text("year: 2026\n")
    (tmp_path / "b.yaml").write_text("year: 2026\n")
    with pytest.raises(ConfigError, match=r"year 2026 is defined by a\.yaml as well"):
        WorkingCalendar.load(tmp_path)


def test_from_data() -> None:
    cal = WorkingCalendar.from_data([{"year": 2030, "holidays": [{"from": "2030-01-01"}]}])
    assert not cal.is_working_day(D(2030, 1, 1))
    assert cal.years == frozenset({2030})


def test_provisional_years_are_known_and_the_flag_must_be_a_boolean(tmp_path: pathlib.Path) -> None:
    (tmp_path / "2026.yaml").write_text("year: 2026\nprovisional: false\n")
    (tmp_path / "2027.yaml").write_text("year: 2027\nprovisional: true\n")
    cal = WorkingCalendar.load(tmp_path)
    assert cal.provisional_years(dt.date(2026, 12, 20), dt.date(2027, 1, 10)) == [2027]
    assert cal.provisional_years(dt.date(2026, 1, 1), dt.date(2026, 12, 31)) == []
    (tmp_path / "2027.yaml").write_text("year: 2027\nprovisional: yes please\n")
    with pytest.raises(ConfigError, match="provisional must be true or false"):
        WorkingCalendar.load(tmp_path)


def test_the_bundled_2027_calendar_is_marked_provisional() -> None:
    assert 2027 in WorkingCalendar.load(bundled_calendar()).provisional


def test_a_key_given_twice_in_a_calendar_file_is_refused_naming_it(tmp_path: pathlib.Path) -> None:
    # Two `holidays:` lists: YAML would keep the second and drop the first without a word.
    (tmp_path / "x-2026.yaml").write_text("year: 2026\nholidays: [{date: 2026-10-01}]\nholidays: [{date: 2026-10-02}]\n")
    with pytest.raises(ConfigError, match=r"x-2026\.yaml: holidays: key given twice \(lines 2 and 3\)"):
        WorkingCalendar.load(tmp_path)


@pytest.mark.parametrize(("start", "days", "last"), [
    (dt.date(2026, 3, 2), 30, dt.date(2026, 4, 1)),
    (dt.date(2026, 3, 13), 30, dt.date(2026, 4, 13)),  # a Sunday: the Monday
    (dt.date(2026, 9, 1), 30, dt.date(2026, 10, 8)),  # in 国庆: the day after the holiday
    (dt.date(2026, 1, 15), 30, dt.date(2026, 2, 14)),  # a Saturday worked (调休): stays
    (dt.date(2026, 10, 1), 0, dt.date(2026, 10, 8)),
])
def test_a_period_of_calendar_days_ends_off_rest_days(cal: WorkingCalendar, start: dt.date, days: int,
                                                      last: dt.date) -> None:
    # 民法典 第二百零三条: a last day that is a rest day moves to the day after the rest.
    assert cal.add_calendar_days(start, days) == last
