"""Draining the transactional outbox (DESIGN §2.5): claim, then done, retry or dead.

``claim`` leases rows rather than holding locks across the network call: it moves the rows'
``next_attempt_ms`` past the lease and counts the attempt, in one short transaction. Another
forwarder (thread or process) does not see leased rows; if the claimer dies, they come back when
the lease runs out. A delivery can therefore happen twice, never zero times; receivers recognise
duplicates (same record id and revision), so the effect is exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

from sqlalchemy import Connection, Engine, and_, func, insert, select, update

from node.store._sql import chunks, is_postgres, translated, write_transaction
from node.store.deadletters import DeadLetter, DeadLetterKind, list_dead_letters
from node.store.tables import dead_letters as dead_table
from node.store.tables import outbox, record_revisions

__all__ = ["DestinationStatus", "Outbox", "OutboxItem"]

DEFAULT_LEASE_MS = 60_000


@dataclass(frozen=True)
class OutboxItem:
    id: int
    record_id: str
    revision: int
    destination: str
    rule_id: str
    attempts: int  # including this one: 1 on the first claim
    signed: bytes  # the stored SignedRecord, chain as held here


class DestinationStatus(TypedDict):
    pending: int
    dead: int
    oldest_ms: int | None  # created_at_ms of the oldest pending row


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Outbox:
    def __init__(self, engine: Engine, *, lease_ms: int = DEFAULT_LEASE_MS) -> None:
        self._engine = engine
        self._lease_ms = lease_ms

    def claim(self, destination: str, limit: int, now_ms: int, *, lease_ms: int | None = None) -> list[OutboxItem]:
        """Lease up to ``limit`` due pending rows for ``destination``, oldest first."""
        if limit <= 0:
            return []
        lease = self._lease_ms if lease_ms is None else lease_ms
        o = outbox.c
        due = (
            select(o.id)
            .where(o.destination == destination, o.state == "pending", o.next_attempt_ms <= now_ms)
            .order_by(o.id)
            .limit(limit)
        )
        with translated(f"claiming outbox rows for {destination}"), write_transaction(self._engine) as conn:
            if is_postgres(conn):
                # Concurrent claimers skip each other's rows instead of queueing behind them.
                due = due.with_for_update(skip_locked=True)
            # One UPDATE with the selection as a subquery: atomic on both dialects, and on SQLite
            # it is the transaction's first statement, so it takes the write lock up front.
            leased = conn.execute(
                update(outbox)
                .where(o.id.in_(due.scalar_subquery()))
                .values(attempts=o.attempts + 1, next_attempt_ms=now_ms + lease)
                .returning(o.id)
            ).scalars().all()
            return self._items(conn, sorted(leased))

    def _items(self, conn: Connection, ids: Sequence[int]) -> list[OutboxItem]:
        o, r = outbox.c, record_revisions.c
        items: list[OutboxItem] = []
        for chunk in chunks(ids):
            stmt = (
                select(o.id, o.record_id, o.revision, o.destination, o.rule_id, o.attempts, r.signed)
                .join(record_revisions, and_(r.record_id == o.record_id, r.revision == o.revision))
                .where(o.id.in_(list(chunk)))
                .order_by(o.id)
            )
            items.extend(OutboxItem(*row) for row in conn.execute(stmt))
        return items

    def done(self, ids: Sequence[int]) -> int:
        """Delivered: the receiver acknowledged (accepted or duplicate)."""
        return self._set(ids, "marking outbox rows done", state="done", last_error="")

    def retry(self, ids: Sequence[int], error: str, next_attempt_ms: int) -> int:
        """Not delivered this time; try again at ``next_attempt_ms``."""
        return self._set(ids, "scheduling outbox retries", last_error=error, next_attempt_ms=next_attempt_ms)

    def release(self, ids: Sequence[int], error: str, next_attempt_ms: int) -> int:
        """Not delivered, through no fault of these deliveries: due at ``next_attempt_ms``, the claim's attempt given back."""
        return self._set(ids, "releasing outbox rows", last_error=error, next_attempt_ms=next_attempt_ms,
                         attempts=outbox.c.attempts - 1)

    def resume(self, now_ms: int | None = None) -> int:
        """Make every pending row due now; the number made due.

        For a node starting alone (``node/instance.py``): the rows its previous run had leased when
        it was killed would otherwise wait out their lease (a minute) and rows backing off a wait
        chosen before the restart, which is often the cure. At worst a delivery happens twice,
        which receivers recognise.
        """
        now = _now_ms() if now_ms is None else now_ms
        o = outbox.c
        with translated("resuming outbox rows"), write_transaction(self._engine) as conn:
            return int(conn.execute(update(outbox).where(o.state == "pending", o.next_attempt_ms > now)
                                    .values(next_attempt_ms=now)).rowcount)

    def _set(self, ids: Sequence[int], what: str, **values: object) -> int:
        count = 0
        with translated(what), write_transaction(self._engine) as conn:
            for chunk in chunks(ids):
                count += conn.execute(
                    update(outbox).where(outbox.c.id.in_(list(chunk)), outbox.c.state == "pending").values(**values)
                ).rowcount
        return count

    def dead(self, ids: Sequence[int], code: str, message: str, *, now_ms: int | None = None) -> int:
        """Give up on these deliveries: state 'dead' plus a dead letter an operator can replay."""
        now = _now_ms() if now_ms is None else now_ms
        o = outbox.c
        letters: list[dict[str, object]] = []
        with translated("moving outbox rows to dead letters"), write_transaction(self._engine) as conn:
            for chunk in chunks(ids):
                moved = conn.execute(
                    update(outbox)
                    .where(o.id.in_(list(chunk)), o.state == "pending")
                    .values(state="dead", last_error=f"{code}: {message}")
                    .returning(o.id, o.record_id, o.revision, o.destination)
                ).all()
                letters.extend(
                    {"kind": "outbox", "record_id": row.record_id, "revision": row.revision,
                     "destination_or_sender": row.destination, "reason": code, "message": message,
                     "payload": b"", "created_at_ms": now, "replayed_at_ms": None, "outbox_id": row.id}
                    for row in sorted(moved)
                )
            if letters:
                conn.execute(insert(dead_table), letters)
        return len(letters)

    def replay(self, ids: Sequence[int], *, now_ms: int | None = None) -> int:
        """Put these (not yet replayed) outbox dead letters back to pending, due now."""
        now = _now_ms() if now_ms is None else now_ms
        d = dead_table.c
        count = 0
        with translated("replaying dead letters"), write_transaction(self._engine) as conn:
            for chunk in chunks(ids):
                outbox_ids = conn.execute(
                    update(dead_table)
                    .where(d.id.in_(list(chunk)), d.kind == "outbox", d.replayed_at_ms.is_(None))
                    .values(replayed_at_ms=now)
                    .returning(d.outbox_id)
                ).scalars().all()
                ids_back = [i for i in outbox_ids if i is not None]
                if ids_back:
                    conn.execute(
                        update(outbox)
                        .where(outbox.c.id.in_(ids_back), outbox.c.state == "dead")
                        .values(state="pending", attempts=0, next_attempt_ms=now, last_error="")
                    )
                count += len(outbox_ids)
        return count

    # --- inspection -----------------------------------------------------------------------------
    def depth(self, destination: str | None = None) -> int:
        """Pending deliveries (to ``destination``, or to all)."""
        stmt = select(func.count()).select_from(outbox).where(outbox.c.state == "pending")
        if destination is not None:
            stmt = stmt.where(outbox.c.destination == destination)
        with translated("reading the outbox depth"), self._engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def status(self) -> dict[str, DestinationStatus]:
        o = outbox.c
        stmt = (
            select(o.destination, o.state, func.count(), func.min(o.created_at_ms))
            .where(o.state.in_(["pending", "dead"]))
            .group_by(o.destination, o.state)
        )
        out: dict[str, DestinationStatus] = {}
        with translated("reading the outbox status"), self._engine.connect() as conn:
            for destination, state, count, oldest in conn.execute(stmt):
                entry = out.setdefault(destination, {"pending": 0, "dead": 0, "oldest_ms": None})
                if state == "pending":
                    entry["pending"] = int(count)
                    entry["oldest_ms"] = None if oldest is None else int(oldest)
                else:
                    entry["dead"] = int(count)
        return out

    def dead_letters(
        self, kind: DeadLetterKind | None = None, *, include_replayed: bool = True, limit: int | None = None
    ) -> list[DeadLetter]:
        with translated("reading dead letters"), self._engine.connect() as conn:
            return list_dead_letters(conn, kind, include_replayed=include_replayed, limit=limit)

    def purge_done(self, before_ms: int) -> int:
        """Delete delivered rows created before ``before_ms`` (the records themselves stay)."""
        stmt = outbox.delete().where(outbox.c.state == "done", outbox.c.created_at_ms < before_ms)
        with translated("purging delivered outbox rows"), write_transaction(self._engine) as conn:
            return conn.execute(stmt).rowcount
