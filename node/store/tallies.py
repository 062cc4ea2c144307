"""Refusal tallies: distinct refused facts per (origin, source unit, item, day).

A node counts its own from its rejections the way ``report sources`` counts refusals: one per
fact (``record_key``; a file imported twice counts its bad rows once), closed rejections too (a
row corrected later was still refused). Each fact counts once, on the Beijing day of its latest
refusal, so the days from ``since`` to today add up to what the origin itself counts from
``since``. (A period that ends before a fact's latest refusal misses it above, though the origin
counts it if it was also refused inside the period: the days carry counts, not facts.)

The tallies of the nodes below are held as the children last sent them (``node.tallies``): a
child's snapshot replaces what that child sent before for the days it covers, so nothing is
ever counted twice from one snapshot to the next.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, delete, func, select

from node.store._sql import chunks, translated, write_transaction
from node.store.tables import refusal_tallies, rejections
from node.values import CHINA

__all__ = ["Tally", "TallyStore", "beijing_day"]


@dataclass(frozen=True, order=True)
class Tally:
    origin: str
    source_unit: str
    item: str
    day: str  # ISO date
    refused: int


def beijing_day(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, CHINA).date().isoformat()


class TallyStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def own(self, origin: str) -> list[Tally]:
        """This node's refusals, as ``origin`` (its id) sends them up."""
        j = rejections.c
        latest = (select(j.source_unit, j.item, func.max(j.created_at_ms))
                  .group_by(j.source_unit, j.item, j.record_key))
        counts: Counter[tuple[str, str, str]] = Counter()
        with translated("counting refusals"), self._engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=5000).execute(latest)
            for unit, item, at_ms in result:
                counts[unit, item, beijing_day(int(at_ms))] += 1
        return [Tally(origin, u, i, d, n) for (u, i, d), n in sorted(counts.items())]

    def held(self) -> list[Tally]:
        """The tallies of the nodes below, as their children last sent them."""
        t = refusal_tallies.c
        stmt = select(t.origin, t.source_unit, t.item, t.day, t.refused).order_by(
            t.origin, t.source_unit, t.item, t.day)
        with translated("reading refusal tallies"), self._engine.connect() as conn:
            return [Tally(o, u, i, d, int(n)) for o, u, i, d, n in conn.execute(stmt)]

    def replace(self, child: str, tallies: Sequence[Tally], now_ms: int, *, since: str = "") -> dict[str, str]:
        """``child``'s snapshot of the days from ``since`` (every day if ""): what it sent before for
        those days goes, ``tallies`` stay (one per key).

        An origin whose tallies are held from another child is not taken from this one (a node has
        one way up; two children both counting it would count it twice): returned, with that child.
        """
        t = refusal_tallies.c
        taken: dict[str, str] = {}
        with translated("storing refusal tallies"), write_transaction(self._engine) as conn:
            conn.execute(delete(refusal_tallies).where(t.received_from == child, t.day >= since))
            for part in chunks(sorted({x.origin for x in tallies})):
                stmt = select(t.origin, t.received_from).distinct().where(t.origin.in_(part), t.received_from != child)
                taken.update((o, r) for o, r in conn.execute(stmt))
            kept = [x for x in tallies if x.origin not in taken]
            if kept:
                conn.execute(refusal_tallies.insert(), [
                    {"origin": x.origin, "source_unit": x.source_unit, "item": x.item, "day": x.day,
                     "refused": x.refused, "received_from": child, "received_at_ms": now_ms}
                    for x in kept])
        return taken

    def refused(self, since: dt.date, until: dt.date | None = None,
                source_unit: str | None = None) -> list[tuple[str, str, int]]:
        """Refused facts below this node per (source unit, item), on days in [since, until]."""
        t = refusal_tallies.c
        stmt = (select(t.source_unit, t.item, func.sum(t.refused)).where(t.day >= since.isoformat())
                .group_by(t.source_unit, t.item))
        if until is not None:
            stmt = stmt.where(t.day <= until.isoformat())
        if source_unit is not None:
            stmt = stmt.where(t.source_unit == source_unit)
        with translated("reading refusal tallies"), self._engine.connect() as conn:
            return [(u, i, int(n)) for u, i, n in conn.execute(stmt)]
