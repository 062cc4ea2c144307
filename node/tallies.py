"""Refusal tallies travel up with reconciliation, so the nodes above can assess the units below.

Refused rows stay at the node that refused them: they are feedback for their source unit, which
fixes them there. A district or city assessing its sources (``report sources``) needs only their
counts. So a child's first reconciliation request carries a snapshot of refusal tallies per
(origin, source unit, item, day) (``node.store.tallies``): its own, and those it holds from its
children. The parent keeps the entries the child may speak for — source units and items the
child may report records for (``children[].units`` / ``items``, as the inbox authorises records),
from an origin that is neither the parent itself nor another of its children — in place of what
that child sent before, and ignores the rest with a logged reason.

A snapshot covers the last ``TALLY_DAYS`` days only, fewer if they would not fit ``TALLY_BYTES``:
tallies grow with every unit, item and day below a node, and a request over the transport's
message limit would stop reconciliation itself. The parent replaces the days the snapshot covers
and keeps earlier ones as last sent. So a fact refused before the window and again inside it
counts on both days above for a period spanning both: an assessment looks at a year, and the
window is longer than that.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING

from node.config import ChildConfig
from node.errors import NotAuthorizedError
from node.store.tables import CODE_LEN, NODE_ID_LEN
from node.store.tallies import Tally, TallyStore, beijing_day
from node.transport.wire import fpb

if TYPE_CHECKING:
    from node.app import Node

__all__ = ["TALLY_BYTES", "TALLY_DAYS", "accept", "snapshot"]

log = logging.getLogger(__name__)

TALLY_DAYS = 400  # a year's assessment (绩效考核) with room to spare
# Of a reconcile request, whose round 1 also lists the child's day buckets; an amqp message holds 16 MB.
TALLY_BYTES = 4 << 20
# Upper bounds of the encoding: a tally's framing, origin, unit and item at their longest; a day's
# framing, date and count.
_TALLY_HEAD_BYTES = 4 * 3 + NODE_ID_LEN + 2 * CODE_LEN
_DAY_BYTES = 2 + 2 + 10 + 6


def snapshot(node: Node, now_ms: int | None = None) -> fpb.RefusalSnapshot:
    """What this node sends its parent: its own refusal tallies and those of the nodes below it."""
    store = TallyStore(node.store.engine)
    today = dt.date.fromisoformat(beijing_day(time.time_ns() // 1_000_000 if now_ms is None else now_ms))
    since = (today - dt.timedelta(days=TALLY_DAYS)).isoformat()
    tallies = [t for t in store.own(node.config.id) + store.held() if t.day >= since]
    fits = _fitting(tallies, since)
    if fits != since:
        log.warning("reconcile: refusal tallies from %s on only (not from %s): the days before would not fit "
                    "one request; the parent keeps what it holds for them", fits, since)
        tallies = [t for t in tallies if t.day >= fits]
    days: dict[tuple[str, str, str], list[fpb.RefusalCount]] = {}
    for t in tallies:
        days.setdefault((t.origin, t.source_unit, t.item), []).append(fpb.RefusalCount(day=t.day, refused=t.refused))
    return fpb.RefusalSnapshot(tallies=[fpb.RefusalTally(origin=o, source_unit=u, item=i, days=d)
                                        for (o, u, i), d in sorted(days.items())], since=fits)


def _fitting(tallies: list[Tally], since: str) -> str:
    """The first day from which ``tallies`` fit ``TALLY_BYTES`` (counted at their longest), newest first."""
    per_day = Counter(t.day for t in tallies)
    size = _TALLY_HEAD_BYTES * len({(t.origin, t.source_unit, t.item) for t in tallies})
    for day in sorted(per_day, reverse=True):
        size += per_day[day] * _DAY_BYTES
        if size > TALLY_BYTES:
            return (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()
    return since


def accept(node: Node, child: str, sent: fpb.RefusalSnapshot, now_ms: int | None = None) -> tuple[int, int]:
    """Keep ``child``'s snapshot (in place of its previous one): (entries kept, entries ignored)."""
    config = next((c for c in node.config.children if c.id == child), None)
    if config is None:
        raise NotAuthorizedError(f"{child} is not a child of {node.config.id}", code="E_SENDER_NOT_CHILD")
    not_below = {c.id for c in node.config.children if c.id != child} | {node.config.id}
    ignored: Counter[str] = Counter()
    since = sent.since
    if since and not _is_day(since):
        ignored[f"a snapshot whose first day {since[:16]!r} is not an ISO date"] = len(sent.tallies)
        log.warning("reconcile: ignored the refusal tallies of %s: its first day %r is not an ISO date",
                    child, since[:16])
        return 0, len(sent.tallies)
    kept: dict[tuple[str, str, str, str], Tally] = {}
    for tally in sent.tallies:
        why = _not_its_to_send(config, not_below, tally)
        if why is not None:
            ignored[why] += len(tally.days)
            continue
        for count in tally.days:
            key = (tally.origin, tally.source_unit, tally.item, count.day)
            if not _is_day(count.day) or key in kept:
                ignored["a day that is not an ISO date, or given twice"] += 1
            elif count.day < since:
                ignored["a day before the snapshot's first day"] += 1
            elif count.refused:
                kept[key] = Tally(*key, refused=count.refused)
    taken = TallyStore(node.store.engine).replace(child, sorted(kept.values()),
                                                  time.time_ns() // 1_000_000 if now_ms is None else now_ms,
                                                  since=since)
    for origin, via in taken.items():
        ignored[f"the tallies of {origin} come through {via}"] += sum(1 for t in kept.values() if t.origin == origin)
    stored = sum(1 for t in kept.values() if t.origin not in taken)
    if ignored:
        log.warning("reconcile: ignored %d refusal tallies from %s: %s", sum(ignored.values()), child,
                    "; ".join(f"{why} ({n})" for why, n in sorted(ignored.items())))
    return stored, sum(ignored.values())


def _not_its_to_send(config: ChildConfig, not_below: set[str], tally: fpb.RefusalTally) -> str | None:
    if not (0 < len(tally.origin) <= NODE_ID_LEN and len(tally.source_unit) <= CODE_LEN
            and 0 < len(tally.item) <= CODE_LEN):
        return "an entry without an origin or an item, or with a name too long"
    if not (tally.origin + tally.source_unit + tally.item).isprintable():  # a NUL: PostgreSQL refuses the row
        return "an entry with a control character in a name"
    if tally.origin in not_below:
        return f"origin {tally.origin} is not below {config.id}"
    if config.units and tally.source_unit not in config.units:
        return f"{config.id} may not report for source unit {tally.source_unit}"
    if config.items and tally.item not in config.items:
        return f"{config.id} may not report {tally.item}"
    return None


def _is_day(text: str) -> bool:
    try:
        return len(text) == 10 and dt.date.fromisoformat(text).isoformat() == text
    except ValueError:
        return False
