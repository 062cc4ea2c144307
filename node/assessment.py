"""Reporting assessment (归集考核 / 绩效考核): how well each source unit reports each item.

Sources are assessed on timeliness, completeness and error rate (DOMAIN §6; seed 003 篇2 第十五条:
reported within 7 working days of the decision). For a period starting at ``since``, per source
unit and item:

- ``reported``: record revisions the source reported (first reports and its own changes),
  ``new_records`` of them first reports;
- ``refused`` and ``refused_rate``: distinct refused rows (one per fact, or per row of a source
  when the fact could not be read; a file imported twice counts its bad rows once) over refused
  plus reported;
- ``timely`` / ``late``: first reports made within ``within_days`` working days after the
  decision date (the working-day calendar when there is one, weekdays otherwise), ``undated`` when
  the item has no decision date; ``mean_delay_days`` in working days;
- ``completeness``: the share of the item's optional fields that the reports filled in.

Reads the node's own store: at a department its own reports, at a district or city the records of
every unit below it (timeliness uses the origin's ``reported_at``, not when the record arrived
here). Refused rows stay at the node that refused them; their counts come up with reconciliation
(``node.tallies``), so ``refused`` is this node's own refusals plus the tallies its children last
sent for the nodes below (each refused row is counted at one node only: no row is counted twice).
Below, a fact counts on the day of its latest refusal: for a period that ends before that day it is
left out, though its origin counts it if it was refused inside the period too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Engine, distinct, func, select

from node.catalog import Catalog, Item
from node.records import SOURCE_CHANGE_REASON, decode_body
from node.store._sql import translated
from node.store.tables import record_revisions, rejections
from node.store.tallies import TallyStore
from node.values import CHINA

__all__ = ["AskedCalendar", "SourceReport", "Weekdays", "WorkingDays", "assess", "working_days_for"]

# Decision dates are Chinese civil dates: a report made at 01:00 Beijing time is made that day.
DEFAULT_WITHIN_DAYS = 7


class WorkingDays(Protocol):
    """The calendar deadlines are counted in (``node.lifecycle.calendar.WorkingCalendar`` is one)."""

    def working_days_between(self, a: dt.date, b: dt.date) -> int:
        """Working days after ``a`` up to and including ``b``."""
        ...


class Weekdays:
    """Monday to Friday: the fallback when no holiday calendar is configured."""

    def working_days_between(self, a: dt.date, b: dt.date) -> int:
        if b < a:
            return -self.working_days_between(b, a)
        full_weeks, rest = divmod((b - a).days, 7)
        count = full_weeks * 5
        day = a
        for _ in range(rest):
            day += dt.timedelta(days=1)
            count += day.weekday() < 5
        return count


class AskedCalendar:
    """A calendar that remembers the days it was asked about, so a report can say which of their
    years it counted on weekdays alone (no calendar file: 春节 and 国庆 count as working days)."""

    def __init__(self, days: WorkingDays) -> None:
        self.days = days
        self._first: dt.date | None = None
        self._last: dt.date | None = None

    def working_days_between(self, a: dt.date, b: dt.date) -> int:
        lo, hi = sorted((a, b))
        self._first = min(self._first or lo, lo)
        self._last = max(self._last or hi, hi)
        return self.days.working_days_between(a, b)

    def missing_years(self) -> list[int]:
        """Years of the days asked about that were counted on weekdays only."""
        if self._first is None or self._last is None:
            return []
        if isinstance(self.days, Weekdays):
            return list(range(self._first.year, self._last.year + 1))
        uncovered = getattr(self.days, "uncovered_years", None)  # WorkingCalendar's
        return list(uncovered(self._first, self._last)) if uncovered is not None else []


def working_days_for(calendar_dir: str = "") -> WorkingDays:
    """The working-day calendar: ``calendar_dir`` (the node's ``lifecycle.calendar``), which must
    exist, or ``exchange_config/calendar`` when none is configured, else weekdays."""
    try:
        from node.lifecycle.calendar import WorkingCalendar, bundled_calendar
    except ImportError:  # a node built without the lifecycle package
        return Weekdays()
    if calendar_dir:
        # A configured calendar that is not there is an error, as for the objection deadlines:
        # weekdays alone would call every report made across 春节 or 国庆 late.
        return WorkingCalendar.load(calendar_dir)
    directory = bundled_calendar()
    if not directory.is_dir() or not any(directory.glob("*.yaml")):
        return Weekdays()
    return WorkingCalendar.load(directory)


@dataclass
class SourceReport:
    source_unit: str
    item: str
    reported: int = 0
    new_records: int = 0
    refused: int = 0
    timely: int = 0
    late: int = 0
    undated: int = 0
    delay_days_total: int = 0
    optional_filled: int = 0
    optional_possible: int = 0
    first_reported: str = ""  # ISO date of the earliest report in the period
    last_reported: str = ""

    @property
    def refused_rate(self) -> float:
        total = self.refused + self.reported
        return round(self.refused / total, 4) if total else 0.0

    @property
    def timeliness(self) -> float | None:
        dated = self.timely + self.late
        return round(self.timely / dated, 4) if dated else None

    @property
    def mean_delay_days(self) -> float | None:
        dated = self.timely + self.late
        return round(self.delay_days_total / dated, 2) if dated else None

    @property
    def completeness(self) -> float | None:
        return round(self.optional_filled / self.optional_possible, 4) if self.optional_possible else None

    def as_dict(self) -> dict[str, object]:
        return {"source_unit": self.source_unit, "item": self.item, "reported": self.reported,
                "new_records": self.new_records, "refused": self.refused, "refused_rate": self.refused_rate,
                "timely": self.timely, "late": self.late, "undated": self.undated,
                "timeliness": self.timeliness, "mean_delay_days": self.mean_delay_days,
                "completeness": self.completeness, "first_reported": self.first_reported,
                "last_reported": self.last_reported}


COLUMNS = ("source_unit", "item", "reported", "new_records", "refused", "refused_rate", "timely", "late",
           "undated", "timeliness", "mean_delay_days", "completeness", "first_reported", "last_reported")


def optional_fields(item: Item) -> frozenset[str]:
    """Fields a report may leave empty whatever the subject: what completeness is measured on."""
    return frozenset(f.code for f in item.fields
                     if not f.required and not f.required_when and not f.forbidden_when)


def assess(engine: Engine, catalog: Catalog, *, since: dt.date, until: dt.date | None = None,
           within_days: int = DEFAULT_WITHIN_DAYS, calendar: WorkingDays | None = None,
           source_unit: str | None = None) -> list[SourceReport]:
    """The assessment of every (source unit, item) with reports or refusals in [since, until]."""
    days = calendar or Weekdays()
    since_ms = _start_ms(since)
    until_ms = _start_ms(until + dt.timedelta(days=1)) if until else None
    reports: dict[tuple[str, str], SourceReport] = {}
    optional = {code: optional_fields(item) for code, item in catalog.items.items()}

    def entry(unit: str, item: str) -> SourceReport:
        return reports.setdefault((unit, item), SourceReport(unit, item))

    for unit, item, revision, body in _revisions(engine, since_ms, source_unit):
        b = decode_body(body)
        if revision != 1 and not b.reason.startswith(SOURCE_CHANGE_REASON):
            # A lifecycle change (objection, repair, an operator's revise, even back to active) is
            # not a report of the source; the source's change is, whatever status its record keeps.
            continue
        if b.reported_at_ms < since_ms or (until_ms and b.reported_at_ms >= until_ms):
            continue
        r = entry(unit, item)
        r.reported += 1
        reported_on = dt.datetime.fromtimestamp(b.reported_at_ms / 1000, CHINA).date()
        iso = reported_on.isoformat()
        r.first_reported = min(r.first_reported or iso, iso)
        r.last_reported = max(r.last_reported, iso)
        wanted = optional.get(item, frozenset())
        if wanted:
            r.optional_possible += len(wanted)
            r.optional_filled += sum(1 for f in b.fields if f.name in wanted and f.value)
        if revision != 1:
            continue
        r.new_records += 1
        if not b.decision_date:
            r.undated += 1
            continue
        delay = max(days.working_days_between(dt.date.fromisoformat(b.decision_date), reported_on), 0)
        r.delay_days_total += delay
        if delay <= within_days:
            r.timely += 1
        else:
            r.late += 1
    for unit, item, refused in _refusals(engine, since_ms, until_ms, source_unit):
        entry(unit, item).refused += refused
    for unit, item, refused in TallyStore(engine).refused(since, until, source_unit):
        entry(unit, item).refused += refused
    return [reports[k] for k in sorted(reports)]


def _start_ms(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(), CHINA).timestamp() * 1000)


def _revisions(engine: Engine, since_ms: int, source_unit: str | None) -> Iterator[tuple[str, str, int, bytes]]:
    """Revisions received since ``since_ms`` (a superset of those reported since), streamed."""
    r = record_revisions.c
    stmt = select(r.source_unit, r.item, r.revision, r.body).where(r.received_at_ms >= since_ms)
    if source_unit is not None:
        stmt = stmt.where(r.source_unit == source_unit)
    with translated("reading records for the assessment"), engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=2000).execute(stmt)
        for unit, item, revision, body in result:
            yield unit, item, revision, bytes(body)


def _refusals(engine: Engine, since_ms: int, until_ms: int | None,
              source_unit: str | None) -> list[tuple[str, str, int]]:
    j = rejections.c
    # One per fact (record_key is the natural key, or row@source when it could not be read).
    stmt = (select(j.source_unit, j.item, func.count(distinct(j.record_key)))
            .where(j.created_at_ms >= since_ms).group_by(j.source_unit, j.item))
    if until_ms is not None:
        stmt = stmt.where(j.created_at_ms < until_ms)
    if source_unit is not None:
        stmt = stmt.where(j.source_unit == source_unit)
    with translated("reading rejections for the assessment"), engine.connect() as conn:
        return [(u, i, int(n)) for u, i, n in conn.execute(stmt)]
