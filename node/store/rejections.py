"""Rejected source rows kept as feedback for their source unit, open until corrected.

A rejection is closed when a corrected version of the same fact is accepted: same item, same
source unit, same natural key (``record_key``), and superseded (closed, ``closed_by_record_id``
'') when the fact is reported again and refused again: the newest report's problems are the ones
to fix. Rows whose key could not be read carry a key naming their place instead (``row:N@SOURCE``,
set by ingest), so the same row of the same file or table supersedes and closes them. Rows
without any key ('') are never closed automatically; an operator closes them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import Connection, Engine, bindparam, func, select, update

from node.rejection import RejectionRow, row_key
from node.store._sql import translated, write_transaction
from node.store.audit import AuditEvent, AuditLog
from node.store.tables import rejections

__all__ = ["Rejection", "RejectionKey", "RejectionRow", "RejectionStore", "close_matching", "insert_rejections",
           "row_key"]


@dataclass(frozen=True)
class Rejection:
    id: int
    batch_id: str
    source: str
    source_unit: str
    item: str
    row: int
    record_key: str
    field: str
    code: str
    message: str
    created_at_ms: int
    closed_at_ms: int | None
    closed_by_record_id: str | None


class RejectionKey(NamedTuple):
    """The fact a newly accepted record corrects, and that record's id (a plain 4-tuple will do)."""

    item: str
    source_unit: str
    record_key: str
    record_id: str


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def insert_rejections(conn: Connection, rows: Sequence[RejectionRow], *, now_ms: int | None = None) -> None:
    """Store ``rows``; each supersedes the open rejections of its fact from earlier batches.

    The newest report of a fact is what its source must fix, so its problems replace those of the
    previous report (closed with ``closed_by_record_id`` ''), and re-importing the same bad file
    leaves one open copy of each rejection, not two.
    """
    if not rows:
        return
    now = _now_ms() if now_ms is None else now_ms
    facts = sorted({(r.item, r.source_unit, key, r.batch_id) for r in rows
                    for key in (r.record_key, row_key(r.source, r.row) if r.row else "") if key})
    if facts:
        conn.execute(
            update(rejections)
            .where(rejections.c.item == bindparam("s_item"), rejections.c.source_unit == bindparam("s_unit"),
                   rejections.c.record_key == bindparam("s_key"), rejections.c.closed_at_ms.is_(None),
                   rejections.c.batch_id != bindparam("s_batch"))
            .values(closed_at_ms=now, closed_by_record_id=""),
            [{"s_item": i, "s_unit": u, "s_key": k, "s_batch": b} for i, u, k, b in facts],
        )
    conn.execute(rejections.insert(), [
        {"batch_id": r.batch_id, "source": r.source, "source_unit": r.source_unit, "item": r.item,
         "row": r.row, "record_key": r.record_key, "field": r.field, "code": r.code,
         "message": r.message, "created_at_ms": r.created_at_ms or now}
        for r in rows
    ])


def close_matching(
    conn: Connection, keys: Iterable[tuple[str, str, str, str]], *, now_ms: int | None = None
) -> int:
    """Close the open rejections of each (item, source_unit, record_key, record_id) fact.

    Returns how many were closed. Keys with an empty ``record_key`` are skipped.
    """
    params = [
        {"k_item": item, "k_unit": unit, "k_key": key, "k_id": record_id}
        for item, unit, key, record_id in keys
        if key
    ]
    if not params:
        return 0
    # Most batches correct nothing: one indexed look per (item, unit) spares an UPDATE per key.
    pairs = {(p["k_item"], p["k_unit"]) for p in params}
    with_open = {pair for pair in pairs if conn.execute(
        select(rejections.c.id).where(rejections.c.source_unit == pair[1], rejections.c.closed_at_ms.is_(None),
                                      rejections.c.item == pair[0]).limit(1)).first() is not None}
    params = [p for p in params if (p["k_item"], p["k_unit"]) in with_open]
    if not params:
        return 0
    now = _now_ms() if now_ms is None else now_ms
    stmt = (
        update(rejections)
        .where(
            rejections.c.item == bindparam("k_item"),
            rejections.c.source_unit == bindparam("k_unit"),
            rejections.c.record_key == bindparam("k_key"),
            rejections.c.closed_at_ms.is_(None),
        )
        .values(closed_at_ms=now, closed_by_record_id=bindparam("k_id"))
    )
    return conn.execute(stmt, params).rowcount


# closed_by_record_id of a rejection an operator closed (its reason is in the audit log)
CLOSED_BY_HAND = "operator"


class RejectionStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(self, rows: Sequence[RejectionRow], *, now_ms: int | None = None) -> None:
        with translated("storing rejections"), write_transaction(self._engine) as conn:
            insert_rejections(conn, rows, now_ms=now_ms)

    def close_by_hand(self, ids: Sequence[int], *, actor: str, reason: str,
                      now_ms: int | None = None) -> tuple[list[int], list[int]]:
        """Close open rejections an operator knows will never be corrected (the row was deleted, or
        moved and reported again): returns (closed, not open: unknown or closed already). The audit
        event, which says who and why, is written in the same transaction."""
        now = _now_ms() if now_ms is None else now_ms
        wanted = sorted(set(ids))
        with translated("closing rejections"), write_transaction(self._engine) as conn:
            open_ids = set(conn.execute(select(rejections.c.id).where(
                rejections.c.id.in_(wanted), rejections.c.closed_at_ms.is_(None))).scalars())
            closed = [i for i in wanted if i in open_ids]
            if closed:
                conn.execute(update(rejections).where(rejections.c.id.in_(closed))
                             .values(closed_at_ms=now, closed_by_record_id=CLOSED_BY_HAND))
                event = AuditEvent(actor=actor, action="rejections.close", subject=",".join(map(str, closed))[:255],
                                   detail={"ids": closed, "reason": reason})
                AuditLog(self._engine).append(conn, [event], at_ms=now)
        return closed, [i for i in wanted if i not in open_ids]

    def open_count(self) -> int:
        """Refused rows not corrected yet, of every source unit."""
        stmt = select(func.count()).select_from(rejections).where(rejections.c.closed_at_ms.is_(None))
        with translated("counting rejections"), self._engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def list_rejections(
        self, source_unit: str | None = None, open_only: bool = True, *, batch_id: str | None = None
    ) -> list[Rejection]:
        """Rejections (of one source unit, one batch, open ones only) in the order they were stored."""
        stmt = select(rejections).order_by(rejections.c.id)
        if source_unit is not None:
            stmt = stmt.where(rejections.c.source_unit == source_unit)
        if batch_id is not None:
            stmt = stmt.where(rejections.c.batch_id == batch_id)
        if open_only:
            stmt = stmt.where(rejections.c.closed_at_ms.is_(None))
        with translated("reading rejections"), self._engine.connect() as conn:
            return [Rejection(**row._asdict()) for row in conn.execute(stmt)]

    def for_batch(self, batch_id: str) -> list[Rejection]:
        """Every rejection of one import or submission, open or closed."""
        return self.list_rejections(open_only=False, batch_id=batch_id)

    def close_for(self, keys: Iterable[tuple[str, str, str, str]], *, now_ms: int | None = None) -> int:
        """Close open rejections whose fact a newly accepted record corrected.

        ``keys`` are ``RejectionKey(item, source_unit, record_key, record_id)`` or plain 4-tuples.
        """
        with translated("closing rejections"), write_transaction(self._engine) as conn:
            return close_matching(conn, keys, now_ms=now_ms)
