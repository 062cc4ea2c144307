"""Disclosure periods (公示期限) and the archive sweep (DOMAIN §4).

:func:`window` is pure: a record's disclosure window from its catalogue rule (kinds in
``node.catalog.DisclosureRule``): penalties by severity, minor / ordinary / serious, each with a
minimum and a maximum period from the decision date (the 2026 credit repair rules, [practice]);
basic information while valid plus 3 years (seed 003 篇1 第二十四条, 篇2 第二十四条); adverse
information N years from the decision (篇2 第二十四条, 篇5 第二十条); lists while listed. It
agrees with ``node.access.window_state``, which the Query service applies at read time, so a
record stops being disclosed on its end date at every node even before its ``expired`` revision
arrives; ``tests/lifecycle/test_disclosure.py`` checks the two against each other.

:class:`Sweep` archives what is past its window: a new signed ``expired`` revision per record
(kept and verifiable, disclosed only to judicial callers, seed 003 篇2 第二十四条). It is
idempotent (an expired record is not a candidate again) and reads only candidates: per item, the
latest decision date that can be past its window today is computed from the rule and the
item's cross rules, and the ``record_heads (item, decision_date)`` index gives the heads up to
it; only their bodies are decoded. By default a node archives the records it originated
(``lifecycle.sweep_scope: origin``), so each record is archived once, by one node, and the
revision travels up like any other (docs/decisions/lifecycle-revisions.md).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from sqlalchemy import Engine, and_, select

from node import access
from node.access import add_months, stored_date
from node.catalog import Catalog, Item
from node.errors import ConflictError
from node.lifecycle.revisions import Change, Reviser
from node.lifecycle.validity import ended_reported_on
from node.records import decode_body, fields_dict
from node.store import RecordRow, Store
from node.store._sql import translated
from node.store.tables import record_heads, record_revisions

__all__ = ["ARCHIVED_STATUSES", "Sweep", "SweepReport", "Window", "add_months", "in_period", "period_end", "window"]

_DAY: Final = dt.timedelta(days=1)
# Heads that are not swept: already withdrawn, or under objection or check (the case decides first).
ARCHIVED_STATUSES: Final = ("expired", "revoked", "deleted")
_SKIPPED: Final = (*ARCHIVED_STATUSES, "disputed", "withheld", "checking")
_BATCH: Final = 2000


class Window(NamedTuple):
    """``start`` … ``end`` (the first day NOT disclosed; None = no end yet) and the earliest date a
    credit repair may be applied for (None = the rule sets no minimum: repair does not apply)."""

    start: dt.date | None
    end: dt.date | None
    min_repair: dt.date | None


def period_end(start: dt.date, months: int) -> dt.date:
    """The first day after a period of ``months`` counted from ``start``.

    As the Civil Code counts periods (民法典 第二百零一条: the day it starts from does not count;
    第二百零二条: the corresponding day of the last month, or that month's last day, is the
    period's last day): three years from 2025-03-15 include 2028-03-15 and end the day after.
    The same rule as ``while_valid_plus``, which counts from the day after the end of validity.
    """
    return add_months(start, months) + _DAY


def window(item: Item, fields: Mapping[str, str], decision_date: str, reported_on: dt.date | None = None) -> Window:
    """The disclosure window of a record of ``item`` with these ``fields`` (pure); ``reported_on``
    is the day its source reported this revision (for rules with ``ended_field``)."""
    rule = item.disclosure
    decided = stored_date(decision_date)
    if rule.kind == "from_decision":
        start = stored_date(fields.get(rule.start_field, "")) if rule.start_field else decided
        return Window(start, period_end(start, rule.period_months) if start else None, None)
    if rule.kind == "while_valid_plus":
        valid_to = access.ended_by(rule, fields, reported_on,
                            stored_date(fields.get(rule.end_field, "")) if rule.end_field else None)
        return Window(decided, add_months(valid_to, rule.period_months) + _DAY if valid_to else None, None)
    if rule.kind == "penalty_severity":
        severity = rule.severity(fields.get(rule.severity_field, "") if rule.severity_field else "")
        if severity is None or decided is None:
            end = None
        elif severity.max_months == 0:  # never published (access: not_public); shared until its end
            return Window(decided, period_end(decided, severity.shared_months),
                          period_end(decided, severity.min_months))
        else:
            end = period_end(decided, severity.max_months)
        cut = stored_date(fields.get(rule.end_field, "")) if rule.end_field else None  # 公示截止期, inclusive
        if cut is not None and (end is None or cut + _DAY < end):
            end = cut + _DAY
        min_repair = period_end(decided, severity.min_months) if severity and decided else None
        return Window(decided, end, min_repair)
    if rule.kind == "while_listed":
        end = access.list_end(rule, fields)
        if rule.period_months and decided is not None:  # a cap from listing, whatever the end date says
            cap = period_end(decided, rule.period_months)
            end = cap if end is None or cap < end else end
        if end is None and decided is not None and rule.open_ended_period_months and rule.gives_no_end(fields):
            end = period_end(decided, rule.open_ended_period_months)  # seed 003 篇1 第二十四条(二)
        return Window(decided, end, None)
    return Window(decided, None, None)  # permanent


def latest_closable_decision(item: Item, today: dt.date) -> dt.date | None:
    """The latest decision date a record of ``item`` can have and be past its window on ``today``.

    None when no record of the item can be (``permanent``). Records decided after it need not be
    read. Where the window ends at a date field, the item's ``not_before`` cross rule (end date
    not before the decision date) bounds the decision date by that end; without such a rule
    every decision date qualifies (``date.max``).
    """
    rule = item.disclosure
    # A list ends by time after its cap, or after its open-ended period (no end date given): the
    # shorter one closes the most recent listings.
    list_months = [m for m in (rule.period_months, rule.open_ended_period_months) if m]
    capped_list = rule.kind == "while_listed" and bool(list_months)
    ends = rule.end_field or rule.removal_field or rule.ended_field
    if rule.kind == "permanent" or (rule.kind in ("while_valid_plus", "while_listed") and not ends
                                    and not capped_list):
        return None
    bounds: list[dt.date] = []
    if rule.kind == "from_decision" and not rule.start_field:
        bounds.append(_before_months(today - _DAY, rule.period_months))
    elif capped_list:
        bounds.append(_before_months(today - _DAY, min(list_months)))
    elif rule.kind == "penalty_severity":
        longest = max((max(s.max_months, s.shared_months) for s in rule.severities), default=0)
        if longest:
            bounds.append(_before_months(today - _DAY, longest))
    for end_field in (f for f in (rule.end_field, rule.removal_field) if f):
        if end_field == rule.removal_field:  # the first day off the list (access.list_end): removed today, closed today
            end_bound = today
        elif rule.kind in ("penalty_severity", "while_listed"):
            end_bound = today - _DAY
        else:
            end_bound = _before_months(today - _DAY, rule.period_months)
        bounds.append(end_bound if _ends_after_decision(item, end_field) else dt.date.max)
    if rule.ended_field:  # ended on its report day, which is never before the decision
        bounds.append(_before_months(today - _DAY, rule.period_months))
    if not bounds:
        return dt.date.max
    return max(bounds)


def _ends_after_decision(item: Item, end_field: str) -> bool:
    return any(r.kind == "not_before" and r.fields[:2] == (end_field, item.decision_date_field) and not r.when
               for r in item.cross_rules)


def _before_months(day: dt.date, months: int) -> dt.date:
    """The latest d with add_months(d, months) <= day (add_months is monotonic, clamping month ends)."""
    d = add_months(day, -months)
    while add_months(d + _DAY, months) <= day:
        d += _DAY
    while add_months(d, months) > day:
        d -= _DAY
    return d


@dataclass
class SweepReport:
    today: dt.date
    examined: int = 0
    moved: list[tuple[str, int, str]] = field(default_factory=list)  # (record_id, new revision, item)
    race: int = 0  # changed meanwhile by someone else: left for the next sweep
    by_item: dict[str, int] = field(default_factory=dict)

    def as_dict(self, limit: int = 1000) -> dict[str, object]:
        return {"today": self.today.isoformat(), "examined": self.examined, "moved": len(self.moved),
                "race": self.race, "by_item": dict(sorted(self.by_item.items())),
                "records": [{"record_id": r, "revision": v, "item": i} for r, v, i in self.moved[:limit]]}


class Sweep:
    """Archive records past their disclosure window: ``run(today)``; ``dry_run`` stores nothing."""

    def __init__(self, *, store: Store, catalog: Catalog, reviser: Reviser, node_id: str,
                 scope: str = "origin", today: Callable[[], dt.date]) -> None:
        self._store = store
        self._catalog = catalog
        self._reviser = reviser
        self._node_id = node_id
        self._scope = scope
        self._today = today

    def run(self, today: dt.date | None = None, *, dry_run: bool = False, batch: int = _BATCH) -> SweepReport:
        day = self._today() if today is None else today
        report = SweepReport(day)
        for item in self._catalog.items.values():
            bound = latest_closable_decision(item, day)
            if bound is None:
                continue
            pending: list[Change] = []
            for row in self._candidates(item, bound, batch):
                report.examined += 1
                body = decode_body(row.body)
                w = window(item, fields_dict(body), row.decision_date,
                           ended_reported_on(self._store.engine, item, row.record_id, row.revision, body))
                if w.end is None or day < w.end:
                    continue
                pending.append(Change(row, "expired", f"disclosure period ended {w.end.isoformat()} "
                                      f"({item.disclosure.kind}): archived, kept, not disclosed"))
                if len(pending) >= batch:
                    self._move(pending, report, dry_run)
                    pending = []
            self._move(pending, report, dry_run)
        return report

    def _move(self, changes: list[Change], report: SweepReport, dry_run: bool) -> None:
        if not changes:
            return
        if dry_run:
            moved = [(c.head.record_id, c.head.revision + 1, c.head.item) for c in changes]
        else:
            rows, result = self._reviser.commit(
                changes, action="archive", subject=f"sweep:{report.today.isoformat()}",
                detail={"today": report.today.isoformat()}, down=False, exact=False)
            stored = set(result.stored)
            moved = [(r.record_id, r.revision, r.item) for r in rows if (r.record_id, r.revision) in stored]
            report.race += len(rows) - len(moved)
        report.moved.extend(moved)
        for _rid, _rev, code in moved:
            report.by_item[code] = report.by_item.get(code, 0) + 1

    def _candidates(self, item: Item, bound: dt.date, batch: int) -> Iterator[RecordRow]:
        """Head revisions of ``item`` decided on or before ``bound``, not archived, in pages.

        Pages follow the ``record_heads (item, decision_date)`` index: up to ``batch`` heads after
        the last decision date read, then the rest of that date, so no page sorts more than it
        returns and no date is split. Each page is its own short read: a long sweep never holds
        up writers.
        """
        upper = "9999-12-31" if bound == dt.date.max else bound.isoformat()
        after = ""  # decision dates are ISO strings or '' (no date: never swept)
        while True:
            page = self._page(item, after, upper, batch)
            full = len(page) >= batch
            if full:
                last = page[-1].decision_date
                page = [r for r in page if r.decision_date != last] + self._page(item, last, last, 0)
            yield from page
            if not full:
                return
            after = last

    def _page(self, item: Item, after: str, upper: str, limit: int) -> list[RecordRow]:
        """Candidates with ``after`` < decision_date <= ``upper`` (= ``after`` when limit is 0)."""
        h, r = record_heads.c, record_revisions.c
        stmt = (select(record_revisions)
                .join(record_heads, and_(h.record_id == r.record_id, h.revision == r.revision))
                .where(h.item == item.code, h.status.not_in(_SKIPPED)))
        if limit:
            stmt = stmt.where(h.decision_date > after, h.decision_date <= upper).order_by(h.decision_date).limit(limit)
        else:
            stmt = stmt.where(h.decision_date == after).order_by(h.record_id)
        if self._scope == "origin":
            # Archived once, by the node that introduced the record: never two different
            # "expired" revisions of one record racing up the tree.
            rev1 = record_revisions.alias("rev1")
            stmt = stmt.where(select(rev1.c.record_id).where(
                rev1.c.record_id == h.record_id, rev1.c.revision == 1,
                rev1.c.origin_node == self._node_id).exists())
        with translated("reading sweep candidates"), self._store.engine.connect() as conn:
            return [RecordRow(*row) for row in conn.execute(stmt)]


def in_period(catalog: Catalog, head: RecordRow, today: dt.date, what: str, engine: Engine) -> None:
    """A subject objects to what the system records about it within the record's period,
    whichever callers it is disclosed or shared to: 系统记载的自身公共信用信息 (seed 003 篇1
    第三十二条), sharing counting as disclosure (篇5 第十九条、第三十条), 在公共信用信息有效期内
    (seed 001 附件2 一). A government-only (class C) record is objected to like a public one;
    a record archived, revoked or deleted, or past its period, is not (nor checked: nothing is disclosed)."""
    item = catalog.item(head.item)
    body = decode_body(head.body)
    withdrawn = head.status in access.WITHDRAWN_STATUSES
    state = access.window_state(item, fields_dict(body), head.decision_date, today,
                                ended_reported_on(engine, item, head.record_id, head.revision, body))
    if withdrawn or state == "closed":
        raise ConflictError(f"record {head.record_id} is no longer disclosed or shared ({head.status}"
                            f"{'' if withdrawn else ', past its period'}); {what} concerns information "
                            "in its period", code="E_OBJECTION_NOT_DISCLOSED")
