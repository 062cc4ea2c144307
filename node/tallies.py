"""Refusal tallies travel up with reconciliation, so the nodes above can assess the units below.

Refused rows stay at the node that refused them: they are feedback for their source unit, which
fixes them there. A district or city assessing its sources (``report sources``) needs only their
counts. So a child's first reconciliation request carries a snapshot of refusal tallies per
(origin, source unit, item, day) (``node.store.tallies``): its own, and those it holds from its
children. The parent keeps the entries the child may speak for — source units and items the
child may report records for (``children[].units`` / ``items``, as the inbox authorises records),
from an origin that is neither the parent itself nor another of its children — in place of what
that child sent before, and ignores the rest with a logged reason.
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
from node.store.tallies import Tally, TallyStore
from node.transport.wire import fpb

if TYPE_CHECKING:
    from node.app import Node

__all__ = ["accept", "snapshot"]

log = logging.getLogger(__name__)


def snapshot(node: Node) -> fpb.RefusalSnapshot:
    """What this node sends its parent: its own refusal tallies and those of the nodes below it."""
    store = TallyStore(node.store.engine)
    days: dict[tuple[str, str, str], list[fpb.RefusalCount]] = {}
    for t in store.own(node.config.id) + store.held():
        days.setdefault((t.origin, t.source_unit, t.item), []).append(fpb.RefusalCount(day=t.day, refused=t.refused))
    return fpb.RefusalSnapshot(tallies=[fpb.RefusalTally(origin=o, source_unit=u, item=i, days=d)
                                        for (o, u, i), d in sorted(days.items())])


def accept(node: Node, child: str, sent: fpb.RefusalSnapshot, now_ms: int | None = None) -> tuple[int, int]:
    """Keep ``child``'s snapshot (in place of its previous one): (entries kept, entries ignored)."""
    config = next((c for c in node.config.children if c.id == child), None)
    if config is None:
        raise NotAuthorizedError(f"{child} is not a child of {node.config.id}", code="E_SENDER_NOT_CHILD")
    not_below = {c.id for c in node.config.children if c.id != child} | {node.config.id}
    ignored: Counter[str] = Counter()
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
            elif count.refused:
                kept[key] = Tally(*key, refused=count.refused)
    taken = TallyStore(node.store.engine).replace(child, sorted(kept.values()),
                                                  time.time_ns() // 1_000_000 if now_ms is None else now_ms)
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
