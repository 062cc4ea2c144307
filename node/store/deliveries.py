"""Outbox rows seen per record, and deliveries added for records already stored.

``RecordStore.append`` writes a record's outbox rows in the transaction that stores it. Two
federation tasks need more: explaining where a stored record went (``credit-node route explain``)
and sending again what a parent turned out not to hold (reconciliation), which adds a delivery
for a revision stored long ago.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, and_, insert, select, text, update

from node.store._sql import chunks, is_postgres, translated, write_transaction
from node.store.records import OutboxEntry
from node.store.tables import outbox, record_revisions

__all__ = ["Deliveries", "DeliveryRow"]

# A stable advisory lock key (PostgreSQL) serialising ``Deliveries.add`` across processes.
_ADD_LOCK_KEY = int.from_bytes(hashlib.sha256(b"node.store deliveries add").digest()[:8], "big", signed=True)


@dataclass(frozen=True)
class DeliveryRow:
    id: int
    record_id: str
    revision: int
    destination: str
    rule_id: str
    state: str  # pending | done | dead
    attempts: int
    created_at_ms: int
    last_error: str


class Deliveries:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def of_record(self, record_id: str) -> list[DeliveryRow]:
        o = outbox.c
        stmt = (select(o.id, o.record_id, o.revision, o.destination, o.rule_id, o.state, o.attempts,
                       o.created_at_ms, o.last_error)
                .where(o.record_id == record_id).order_by(o.id))
        with translated("reading a record's deliveries"), self._engine.connect() as conn:
            return [DeliveryRow(*row) for row in conn.execute(stmt)]

    def undelivered(self, destination: str) -> dict[tuple[str, int], str]:
        """(record_id, revision) → ``pending`` (under way) or ``dead`` (a dead letter waiting for an
        operator) for deliveries to ``destination`` that are not done."""
        o = outbox.c
        stmt = select(o.record_id, o.revision, o.state).where(o.destination == destination,
                                                              o.state.in_(("pending", "dead")))
        out: dict[tuple[str, int], str] = {}
        with translated("reading undelivered deliveries"), self._engine.connect() as conn:
            for rid, rev, state in conn.execute(stmt):
                if out.get((rid, rev)) != "pending":  # a new attempt under way outranks an old dead letter
                    out[(rid, rev)] = state
        return out

    def add(self, entries: Sequence[OutboxEntry], *, now_ms: int | None = None) -> int:
        """New pending deliveries for revisions already stored (unknown revisions are skipped, and so
        are revisions with a delivery to the same destination still pending)."""
        now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        if not entries:
            return 0
        r, o = record_revisions.c, outbox.c
        added = 0
        with translated("adding deliveries"), write_transaction(self._engine) as conn:
            # Two reconciliations at once (the schedule and an operator's run) both find the same
            # revisions missing; checked under a lock, the second adds none of what the first did.
            if is_postgres(conn):
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADD_LOCK_KEY})
            # Read through the (destination, state) index: the outbox has none by record.
            pending = {(rid, rev, dest) for rid, rev, dest in conn.execute(
                select(o.record_id, o.revision, o.destination).where(
                    o.destination.in_(sorted({e.destination for e in entries})), o.state == "pending"))}
            for chunk in chunks(list(entries)):
                keys = {(e.record_id, e.revision) for e in chunk}
                held = {(rid, rev) for rid, rev in conn.execute(
                    select(r.record_id, r.revision).where(r.record_id.in_(sorted({k[0] for k in keys}))))
                    if (rid, rev) in keys}
                rows: list[dict[str, object]] = []
                for e in chunk:
                    if (e.record_id, e.revision) in held and (e.record_id, e.revision, e.destination) not in pending:
                        pending.add((e.record_id, e.revision, e.destination))
                        rows.append({"record_id": e.record_id, "revision": e.revision, "destination": e.destination,
                                     "rule_id": e.rule_id, "created_at_ms": now, "attempts": 0,
                                     "next_attempt_ms": now, "last_error": "", "state": "pending"})
                if rows:
                    conn.execute(insert(outbox), rows)
                    added += len(rows)
        return added

    def revisions(self, record_id: str) -> list[tuple[int, str]]:
        """(revision, received_from) of each stored revision of a record, oldest first."""
        r = record_revisions.c
        stmt = select(r.revision, r.received_from).where(and_(r.record_id == record_id)).order_by(r.revision)
        with translated("reading revisions"), self._engine.connect() as conn:
            return [(int(rev), str(frm)) for rev, frm in conn.execute(stmt)]

    def done_for(self, destination: str, ids: Sequence[int]) -> int:
        """Mark done the pending deliveries ``ids`` — only those addressed to ``destination``."""
        o = outbox.c
        count = 0
        with translated("acknowledging deliveries"), write_transaction(self._engine) as conn:
            for chunk in chunks(list(ids)):
                count += conn.execute(update(outbox).where(o.id.in_(list(chunk)), o.destination == destination,
                                                           o.state == "pending")
                                      .values(state="done", last_error="")).rowcount
        return count

    def release(self, destination: str, now_ms: int) -> int:
        """Make the pending deliveries to ``destination`` due at ``now_ms``: a lease a receiver that
        restarted will never answer need not run out first (a repeat is a duplicate there)."""
        o = outbox.c
        with translated("releasing leased deliveries"), write_transaction(self._engine) as conn:
            return int(conn.execute(update(outbox).where(o.destination == destination, o.state == "pending",
                                                         o.next_attempt_ms > now_ms)
                                    .values(next_attempt_ms=now_ms)).rowcount)
