"""Dead letters: deliveries that exhausted their retries and inbound records that were refused.

Kind 'outbox' letters point back at their outbox row (``outbox_id``) and carry no payload: the
record is in ``record_revisions``; replaying one puts the delivery back to pending (see
``Outbox.replay``). Kind 'inbound' letters keep what the sender sent (``payload``) so an operator
can inspect it and feed it to ingest again once the cause is fixed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Connection, Engine, func, insert, select

from node.store._sql import translated, write_transaction
from node.store.tables import dead_letters

__all__ = ["DeadLetter", "DeadLetterKind", "InboundDeadLetters", "list_dead_letters"]

DeadLetterKind = Literal["outbox", "inbound"]


@dataclass(frozen=True)
class DeadLetter:
    id: int
    kind: str
    record_id: str
    revision: int
    destination_or_sender: str
    reason: str  # stable error code
    message: str
    payload: bytes
    created_at_ms: int
    replayed_at_ms: int | None
    outbox_id: int | None


def list_dead_letters(
    conn: Connection, kind: DeadLetterKind | None = None, *, include_replayed: bool = True, limit: int | None = None
) -> list[DeadLetter]:
    stmt = select(dead_letters).order_by(dead_letters.c.id)
    if kind is not None:
        stmt = stmt.where(dead_letters.c.kind == kind)
    if not include_replayed:
        stmt = stmt.where(dead_letters.c.replayed_at_ms.is_(None))
    if limit is not None:
        stmt = stmt.limit(limit)
    return [DeadLetter(**row._asdict()) for row in conn.execute(stmt)]


class InboundDeadLetters:
    """Records received from a peer that could not be accepted and must not be lost."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(
        self,
        sender: str,
        code: str,
        message: str,
        payload: bytes,
        *,
        record_id: str = "",
        revision: int = 0,
        now_ms: int | None = None,
    ) -> int:
        row = {"kind": "inbound", "record_id": record_id, "revision": revision,
               "destination_or_sender": sender, "reason": code, "message": message, "payload": payload,
               "created_at_ms": time.time_ns() // 1_000_000 if now_ms is None else now_ms,
               "replayed_at_ms": None, "outbox_id": None}
        d = dead_letters.c
        with translated("storing an inbound dead letter"), write_transaction(self._engine) as conn:
            if record_id:
                # The same record refused again for the same reason while its letter waits (a batch
                # processed twice after a crash before its ack): one letter, not two.
                same = conn.execute(select(d.id).where(
                    d.kind == "inbound", d.destination_or_sender == sender, d.record_id == record_id,
                    d.revision == revision, d.reason == code, d.replayed_at_ms.is_(None)).limit(1)).scalar()
                if same is not None:
                    return int(same)
            return int(conn.execute(insert(dead_letters).returning(dead_letters.c.id), row).scalar_one())

    def mark_replayed(self, ids: Sequence[int], *, now_ms: int | None = None) -> int:
        """Record that ingest took these letters again (their outcome is ingest's to report)."""
        if not ids:
            return 0
        now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        stmt = (
            dead_letters.update()
            .where(dead_letters.c.id.in_(list(ids)), dead_letters.c.kind == "inbound",
                   dead_letters.c.replayed_at_ms.is_(None))
            .values(replayed_at_ms=now)
        )
        with translated("marking dead letters replayed"), write_transaction(self._engine) as conn:
            return conn.execute(stmt).rowcount

    def count(self) -> int:
        """Letters not replayed yet: what an operator still has to look at."""
        d = dead_letters.c
        stmt = select(func.count()).where(d.kind == "inbound", d.replayed_at_ms.is_(None))
        with translated("counting dead letters"), self._engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def letters(self, *, include_replayed: bool = False) -> list[DeadLetter]:
        with translated("reading dead letters"), self._engine.connect() as conn:
            return list_dead_letters(conn, "inbound", include_replayed=include_replayed)
