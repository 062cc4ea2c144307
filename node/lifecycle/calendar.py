"""Working days (工作日): the unit every lifecycle deadline is counted in (DOMAIN §5).

A day is a working day when it is Monday to Friday and not a public holiday, or when it is a
make-up working day (调休上班, usually a Saturday or Sunday next to a long holiday). The holidays
and make-up days of each year are data, published by the State Council every November, and live in
``exchange_config/calendar/<name>-<year>.yaml`` (see the files there for the format)::

    year: 2026
    holidays:
      - {from: 2026-02-15, to: 2026-02-23, name: 春节}
    workdays:
      - {date: 2026-02-14, name: 春节调休}

Counting follows the civil rule for periods in days (民法典 第二百零一条): the day something is
received does not count; the period starts the next day. So a request received on a Friday with a
2-working-day deadline is due on the following Tuesday, and :meth:`WorkingCalendar.add_working_days`
gives exactly that due date (the deadline is met until the end of it).

A year without a file falls back to "weekends off" and :meth:`WorkingCalendar.uncovered_years`
says so, so callers can warn instead of silently miscounting a holiday.
"""

from __future__ import annotations

import datetime as dt
import os
import pathlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from node.errors import ConfigError
from node.values import CHINA
from node.yamlfile import DuplicateKeyError, load_strict

__all__ = ["WorkingCalendar", "bundled_calendar", "china_date"]

_DAY = dt.timedelta(days=1)
# Far more than any deadline in the regulations (the longest is 30 days): a bound that turns a
# runaway loop (a calendar file marking a whole year as holiday) into an error.
_MAX_STEPS = 3660


@dataclass(frozen=True)
class WorkingCalendar:
    """Holidays and make-up working days of the years it covers; pure and immutable."""

    holidays: frozenset[dt.date] = field(default=frozenset(), repr=False)
    workdays: frozenset[dt.date] = field(default=frozenset(), repr=False)  # make-up working days (调休上班)
    years: frozenset[int] = frozenset()  # years whose arrangements are loaded
    # Years whose file says ``provisional: true``: statutory holidays only, the State Council's
    # arrangement (调休, make-up working days) not yet entered, so deadlines may be off by days.
    provisional: frozenset[int] = frozenset()

    # --- loading -----------------------------------------------------------------------------
    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> WorkingCalendar:
        """Every ``*.yaml`` of ``directory`` (one year each); a missing directory is an error."""
        path = pathlib.Path(directory)
        if not path.is_dir():
            raise ConfigError(f"no working-day calendar directory at {path}", field="lifecycle.calendar")
        return cls._build((_read_year(file), str(file)) for file in sorted(path.glob("*.yaml")))

    @classmethod
    def from_data(cls, documents: Iterable[Mapping[str, Any]]) -> WorkingCalendar:
        """The same as :meth:`load` from already parsed documents (tests, embedded data)."""
        return cls._build((doc, f"document {n}") for n, doc in enumerate(documents))

    @classmethod
    def _build(cls, documents: Iterable[tuple[Mapping[str, Any], str]]) -> WorkingCalendar:
        holidays: set[dt.date] = set()
        workdays: set[dt.date] = set()
        years: set[int] = set()
        provisional: set[int] = set()
        defined: dict[int, str] = {}
        for doc, where in documents:
            year, hol, work = _parse_doc(doc, where)
            if year in defined:
                raise ConfigError(f"{where}: year {year} is defined by {pathlib.Path(defined[year]).name} as well")
            defined[year] = where
            years.add(year)
            holidays |= hol
            workdays |= work
            flag = doc.get("provisional", False)
            if not isinstance(flag, bool):
                raise ConfigError(f"{where}: provisional must be true or false")
            if flag:
                provisional.add(year)
        return cls(frozenset(holidays), frozenset(workdays), frozenset(years), frozenset(provisional))

    # --- questions ---------------------------------------------------------------------------
    def is_working_day(self, day: dt.date) -> bool:
        if day in self.workdays:
            return True
        return day.weekday() < 5 and day not in self.holidays

    def add_working_days(self, start: dt.date, n: int) -> dt.date:
        """The ``n``-th working day after ``start`` (before it when ``n`` < 0); ``start`` for 0.

        ``start`` itself never counts (民法典 第二百零一条), whether or not it is a working day.
        """
        step = _DAY if n >= 0 else -_DAY
        day, left, steps = start, abs(n), 0
        while left:
            day += step
            steps += 1
            if steps > _MAX_STEPS:
                raise ConfigError(f"no {abs(n)} working days within {_MAX_STEPS} days of {start}: "
                                  "check the calendar files")
            if self.is_working_day(day):
                left -= 1
        return day

    def add_calendar_days(self, start: dt.date, n: int) -> dt.date:
        """The last day of a period of ``n`` calendar days from ``start`` (``n`` >= 0).

        ``start`` does not count (民法典 第二百零一条); a last day that is a rest day moves to the
        first working day after it (第二百零三条: 法定休假日 ends the period the day after the rest),
        and a make-up working day (调休上班) is a working day like any other.
        """
        day = start + dt.timedelta(days=n)
        for _ in range(_MAX_STEPS):
            if self.is_working_day(day):
                return day
            day += _DAY
        raise ConfigError(f"no working day within {_MAX_STEPS} days after {start + dt.timedelta(days=n)}: "
                          "check the calendar files")

    def working_days_between(self, a: dt.date, b: dt.date) -> int:
        """Working days in (a, b]: after ``a`` up to and including ``b``; negative when b < a.

        The inverse of :meth:`add_working_days`: ``working_days_between(d, add_working_days(d, n))
        == n`` for every n.
        """
        if b < a:
            return -self.working_days_between(b, a)
        count, day = 0, a
        while day < b:
            day += _DAY
            if self.is_working_day(day):
                count += 1
        return count

    def uncovered_years(self, a: dt.date, b: dt.date) -> list[int]:
        """Years between ``a`` and ``b`` (inclusive, either order) that no calendar file covers."""
        lo, hi = sorted((a.year, b.year))
        return [y for y in range(lo, hi + 1) if y not in self.years]

    def provisional_years(self, a: dt.date, b: dt.date) -> list[int]:
        """Years between ``a`` and ``b`` (inclusive, either order) whose calendar is provisional."""
        lo, hi = sorted((a.year, b.year))
        return [y for y in range(lo, hi + 1) if y in self.provisional]


def _read_year(file: pathlib.Path) -> Mapping[str, Any]:
    try:
        data = load_strict(file.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise ConfigError(f"cannot read {file}: {exc.strerror}") from None
    except DuplicateKeyError as exc:  # two `holidays:` lists: the first would be dropped unseen
        raise ConfigError(f"{file}: {exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from None
    except ValueError as exc:  # PyYAML building a date it recognised: 2026-02-30
        raise ConfigError(f"{file}: a value cannot be read ({exc})") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{file}: the top level must be a mapping")
    return data


_KEYS = frozenset({"year", "source", "provisional", "note", "holidays", "workdays"})


def _parse_doc(doc: Mapping[str, Any], where: str) -> tuple[int, set[dt.date], set[dt.date]]:
    unknown = sorted(str(k) for k in doc if k not in _KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})")
    year = doc.get("year")
    if not isinstance(year, int) or isinstance(year, bool):
        raise ConfigError(f"{where}: year must be a number, e.g. 2026")
    holidays: set[dt.date] = set()
    for i, entry in enumerate(_entries(doc, "holidays", where)):
        first = _date(entry.get("from"), f"{where}: holidays[{i}].from")
        last = _date(entry.get("to", entry.get("from")), f"{where}: holidays[{i}].to")
        if last < first:
            raise ConfigError(f"{where}: holidays[{i}] ends before it starts")
        day = first
        while day <= last:
            holidays.add(day)
            day += _DAY
    workdays = {_date(e.get("date"), f"{where}: workdays[{i}].date")
                for i, e in enumerate(_entries(doc, "workdays", where))}
    for day in sorted(holidays | workdays):
        if day.year != year:
            raise ConfigError(f"{where}: {day} is not in year {year}")
    both = sorted(holidays & workdays)
    if both:
        raise ConfigError(f"{where}: {both[0]} is both a holiday and a make-up working day")
    return year, holidays, workdays


def _entries(doc: Mapping[str, Any], key: str, where: str) -> list[Mapping[str, Any]]:
    value = doc.get(key) or []
    if not isinstance(value, list) or not all(isinstance(e, Mapping) for e in value):
        raise ConfigError(f"{where}: {key} must be a list of mappings")
    return value


def _date(value: object, where: str) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise ConfigError(f"{where}: expected a date YYYY-MM-DD, got {value!r}")


def bundled_calendar() -> pathlib.Path:
    """The calendars shipped in the source tree (exchange_config/calendar)."""
    return pathlib.Path(__file__).resolve().parents[2] / "exchange_config" / "calendar"




def china_date(unix_ms: int) -> dt.date:
    """The date in China at ``unix_ms``: the day a deadline counts from."""
    return dt.datetime.fromtimestamp(unix_ms / 1000, CHINA).date()
