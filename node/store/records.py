"""Record revisions and their current view: the store's hot path (DESIGN §2.5, §2.8).

Revisions are append-only. ``append`` writes a batch of revisions, the heads they advance, their
outbox rows, rejections and audit events in ONE transaction, so a record is never stored without
its forwarding obligation nor forwarded without being stored. It is idempotent: an existing
(record_id, revision) is never written twice, whoever else is appending at the same moment,
because who stored what is decided under the database's own locking: on SQLite inside a
transaction that holds the write lock from its start, on PostgreSQL by the insert itself
(``ON CONFLICT DO NOTHING … RETURNING``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    Integer,
    String,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    select,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite

from node.errors import StoreError
from node.store._sql import (
    chunks,
    execute_many,
    insert_for,
    insert_new_returning,
    is_postgres,
    select_in,
    translated,
    write_transaction,
)
from node.store.audit import AuditEvent, AuditLog
from node.store.meta import put_value
from node.store.rejections import RejectionKey, RejectionRow, close_matching, insert_rejections
from node.store.tables import outbox as outbox_table
from node.store.tables import record_heads, record_revisions

__all__ = ["AppendResult", "AuditEvent", "Head", "OutboxEntry", "RecordRow", "RecordStore", "Trail"]

Key = tuple[str, int]
DialectInsert = sqlite.Insert | postgresql.Insert


_BOUNDED: tuple[tuple[str, int], ...] = tuple(
    (c.name, c.type.length) for c in record_revisions.c if isinstance(c.type, String) and c.type.length)


class RecordRow(NamedTuple):
    """One stored revision; field names and order are those of ``record_revisions``.

    A named tuple, not a dataclass: tens of thousands are made per batch on the hot paths, and a
    tuple in column order goes to the database driver as it is.
    """

    record_id: str
    revision: int
    item: str
    subject_code: str
    subject_kind: str
    source_unit: str
    origin_node: str
    status: str
    decision_date: str
    body: bytes  # the exact RecordBody bytes
    body_digest: bytes
    content_digest: bytes
    signed: bytes  # serialised SignedRecord incl. the chain as held here
    received_at_ms: int
    received_from: str  # node id, '' if ingested here
    catalog_version: str

    def unstorable(self) -> tuple[str, str] | None:
        """The first text column PostgreSQL would refuse, and why, or None: a NUL, or a value longer
        than the column; it refuses the whole transaction with it (SQLite would keep the row)."""
        for name, length in _BOUNDED:
            if "\x00" in (value := getattr(self, name)) or len(value) > length:
                return name, "holds a NUL character" if "\x00" in value else "is longer than a node keeps"
        return None

    @property
    def key(self) -> Key:
        return (self.record_id, self.revision)


@dataclass(frozen=True)
class Head:
    record_id: str
    revision: int
    status: str
    content_digest: bytes
    body_digest: bytes
    item: str
    subject_code: str
    source_unit: str


class Trail(NamedTuple):
    """One revision of a record, as its history is read: who sent it ('' if made here), what it said."""

    revision: int
    status: str
    received_from: str
    content_digest: bytes


@dataclass(frozen=True)
class OutboxEntry:
    """Forward revision (record_id, revision) to ``destination`` under routing rule ``rule_id``."""

    record_id: str
    revision: int
    destination: str
    rule_id: str


@dataclass(frozen=True)
class AppendResult:
    stored: list[Key]
    duplicates: list[Key]  # already stored with the same body digest: acknowledge, no effect
    conflicts: list[Key]  # already stored with a DIFFERENT body digest: refuse


_ROW_COLUMNS = tuple(c.name for c in record_revisions.columns)
if RecordRow._fields != _ROW_COLUMNS:  # rows are bound positionally: a drift would shift every value
    raise ImportError(f"RecordRow fields {RecordRow._fields} are not the columns {_ROW_COLUMNS}")
_HEAD_COLUMNS = tuple(c.name for c in record_heads.columns)
_OUTBOX_BOUND = ("record_id", "revision", "destination", "rule_id")
_head_values = attrgetter(*_HEAD_COLUMNS)
_HEAD_SELECT = (record_heads.c.record_id, record_heads.c.revision, record_heads.c.status,
                record_heads.c.content_digest, record_heads.c.body_digest, record_heads.c.item,
                record_heads.c.subject_code, record_heads.c.source_unit)
# Record ids per lookup by id: few statements per batch, since with sqlite3 every statement
# gives up the GIL and may wait to get it back (a pull prepares its next batch on a thread).
_ID_CHUNK = 4096
# Expanding: compiled once, not once per chunk with thousands of named parameters.
_HEADS_BY_ID = select(*_HEAD_SELECT).where(record_heads.c.record_id.in_(bindparam("ids", expanding=True)))


class RecordStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._audit = AuditLog(engine)

    # --- writing ------------------------------------------------------------------------------
    def append(
        self,
        rows: Sequence[RecordRow],
        *,
        outbox: Sequence[OutboxEntry] = (),
        audit: Sequence[AuditEvent] = (),
        rejections: Sequence[RejectionRow] = (),
        close_rejections: Sequence[RejectionKey | tuple[str, str, str, str]] = (),
        meta: Mapping[str, str] | None = None,
        also: Sequence[Callable[[Connection], None]] = (),
        now_ms: int | None = None,
        conflicts_abort: bool = False,
    ) -> AppendResult:
        """Store new revisions with their outbox rows, rejections and audit events, atomically.

        Outbox entries are written only for revisions this call actually stored, so a re-sent
        batch forwards nothing twice. ``close_rejections`` closes the open rejections that the
        accepted records correct. ``meta`` is written in the same transaction (an adapter's pull
        position commits with the records it covers), and each ``also`` callback runs in it (the
        conflicts index), so none of them can disagree with the records after a crash. The audit
        events come last: the chain's lock is held to the commit, and a batch holding it while it
        waits for a row (a conflict being resolved) would deadlock with that row's holder on PostgreSQL.
        """
        now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        unique, repeats, in_batch_conflicts = _dedupe(rows)
        # Sorted so that concurrent PostgreSQL transactions take row locks in the same order
        # (no deadlocks between two batches sharing records).
        keys = sorted(unique)
        with translated("storing records"), write_transaction(self._engine) as conn:
            inserted, existing = self._store_revisions(conn, unique, keys)
            if conflicts_abort and (in_batch_conflicts or any(
                    key not in inserted and existing.get(key) != row.body_digest for key, row in unique.items())):
                # The caller numbered a revision from heads read before this transaction, and
                # another writer stored that number first: nothing of the batch (nor the meta
                # that says it was taken in) may commit; a retry reads the heads again.
                raise StoreError("another writer stored a revision this batch numbered; try again",
                                 code="E_REVISION_RACE")
            _insert_outbox(conn, [e for e in outbox if (e.record_id, e.revision) in inserted], now)
            insert_rejections(conn, rejections, now_ms=now)
            close_matching(conn, close_rejections, now_ms=now)
            for name, value in (meta or {}).items():
                put_value(conn, name, value)
            for callback in also:
                callback(conn)
            self._audit.append(conn, audit, at_ms=now)
        stored: list[Key] = []
        duplicates: list[Key] = []
        conflicts: list[Key] = []
        for key, row in unique.items():
            if key in inserted:
                stored.append(key)
            elif existing.get(key) == row.body_digest:
                duplicates.append(key)
            else:
                conflicts.append(key)
        for key, digest in repeats:
            # A repeat inside the batch compares with the copy that was stored or already there.
            (duplicates if existing.get(key, digest) == digest else conflicts).append(key)
        conflicts.extend(in_batch_conflicts)
        return AppendResult(stored, duplicates, conflicts)

    def _store_revisions(
        self, conn: Connection, rows: dict[Key, RecordRow], keys: Sequence[Key]
    ) -> tuple[set[Key], dict[Key, bytes]]:
        """Insert the revisions not stored yet and advance their heads.

        Returns the keys inserted and the body digests of the others that are stored.
        """
        if not keys:
            return set(), {}
        if not is_postgres(conn):
            # SQLite: this transaction holds the write lock (BEGIN IMMEDIATE), so what is stored
            # now is what will be stored when we insert: read it, then insert the rest in bulk.
            existing = self._existing_digests(conn, keys)
            new = [k for k in keys if k not in existing]
            rowid = literal_column("rowid", Integer)  # SQLite's implicit row number
            last = conn.execute(select(func.coalesce(func.max(rowid), 0)).select_from(record_revisions)).scalar_one()
            execute_many(conn, insert(record_revisions), _ROW_COLUMNS, [rows[k] for k in new])
            # The heads are copied from the rows just written (SQLite gives new rows rowids above
            # the old maximum), which spares binding every value a second time.
            source = select(*(record_revisions.c[c] for c in _HEAD_COLUMNS)).where(rowid > last)
            conn.execute(_heads_upsert(insert_for(conn, record_heads).from_select(_HEAD_COLUMNS, source)))
            return set(new), existing
        # PostgreSQL: concurrent writers; the insert itself decides (a conflicting insert waits
        # for the other transaction and is skipped if that one commits).
        inserted = {(rid, rev) for rid, rev in insert_new_returning(
            conn, record_revisions, _ROW_COLUMNS, [rows[k] for k in keys],
            unique=("record_id", "revision"), returning=("record_id", "revision"))}
        # ``keys`` is sorted, so the last key seen for a record is its highest new revision (one
        # upsert per head: PostgreSQL refuses to touch a row twice in one statement).
        best = {rid: (rid, rev) for rid, rev in keys if (rid, rev) in inserted}
        execute_many(conn, _heads_upsert(insert_for(conn, record_heads)), _HEAD_COLUMNS,
                     [_head_values(rows[k]) for k in best.values()])
        return inserted, self._existing_digests(conn, [k for k in keys if k not in inserted])

    def _existing_digests(self, conn: Connection, keys: Sequence[Key]) -> dict[Key, bytes]:
        """Body digests of those of ``keys`` that are stored."""
        wanted = set(keys)
        found: dict[Key, bytes] = {}
        for rid, rev, digest in select_in(conn, record_revisions, ("record_id", "revision", "body_digest"),
                                          "record_id", sorted({rid for rid, _ in keys}), size=_ID_CHUNK):
            if (rid, rev) in wanted:
                found[(rid, rev)] = bytes(digest)
        return found

    def rebuild_heads(self) -> int:
        """Recompute every head from the revisions (after a restore or a suspected drift)."""
        r = record_revisions.c
        latest = (
            select(r.record_id, func.max(r.revision).label("revision")).group_by(r.record_id).subquery()
        )
        source = select(*(r[c] for c in _HEAD_COLUMNS)).join(
            latest, and_(r.record_id == latest.c.record_id, r.revision == latest.c.revision)
        )
        with translated("rebuilding heads"), write_transaction(self._engine) as conn:
            conn.execute(delete(record_heads))
            conn.execute(insert(record_heads).from_select(list(_HEAD_COLUMNS), source))
            return int(conn.execute(select(func.count()).select_from(record_heads)).scalar_one())

    # --- reading ------------------------------------------------------------------------------
    def heads(self, record_ids: Iterable[str]) -> dict[str, Head]:
        ids = sorted(set(record_ids))
        out: dict[str, Head] = {}
        with translated("reading heads"), self._engine.connect() as conn:
            for chunk in chunks(ids, _ID_CHUNK):
                for row in conn.execute(_HEADS_BY_ID, {"ids": list(chunk)}):
                    out[row.record_id] = Head(*row)
        return out

    def trails(self, record_ids: Iterable[str]) -> dict[str, list[Trail]]:
        """Each record's revisions held here, oldest first: who sent each, its status and content."""
        r = record_revisions.c
        out: dict[str, list[Trail]] = {}
        with translated("reading records' revisions"), self._engine.connect() as conn:
            for chunk in chunks(sorted(set(record_ids)), _ID_CHUNK):
                stmt = select(r.record_id, r.revision, r.status, r.received_from, r.content_digest).where(
                    r.record_id.in_(list(chunk)))
                for rid, revision, status, sender, digest in conn.execute(stmt):
                    out.setdefault(rid, []).append(Trail(revision, status, sender, bytes(digest)))
        for trail in out.values():
            trail.sort()
        return out

    def current_for_subject(self, subject_code: str, items: Sequence[str] = ()) -> list[RecordRow]:
        """The head revision of every record about ``subject_code`` (of ``items``, if given)."""
        h = record_heads.c
        stmt = (
            select(record_revisions)
            .join(record_heads, and_(h.record_id == record_revisions.c.record_id,
                                     h.revision == record_revisions.c.revision))
            .where(h.subject_code == subject_code)
            .order_by(h.item, h.decision_date, h.record_id)
        )
        if items:
            stmt = stmt.where(h.item.in_(list(items)))
        return self._rows(stmt)

    def get(self, record_id: str, revision: int | None = None) -> RecordRow | None:
        """One revision, or the latest one when ``revision`` is None."""
        r = record_revisions.c
        stmt = select(record_revisions).where(r.record_id == record_id)
        if revision is None:
            stmt = stmt.order_by(r.revision.desc()).limit(1)
        else:
            stmt = stmt.where(r.revision == revision)
        found = self._rows(stmt)
        return found[0] if found else None

    def history(self, record_id: str) -> list[RecordRow]:
        r = record_revisions.c
        return self._rows(select(record_revisions).where(r.record_id == record_id).order_by(r.revision))

    def iter_revisions(self, *, batch: int = 2000) -> Iterator[RecordRow]:
        """Every revision in key order, in pages of ``batch`` (keyset pagination on the primary key).

        Each page is its own short read, so a long verify never holds a transaction open against
        writers; revisions appended meanwhile appear if their key sorts after the current page.
        """
        r = record_revisions.c
        after: Key | None = None
        while True:
            stmt = select(record_revisions).order_by(r.record_id, r.revision).limit(batch)
            if after is not None:
                stmt = stmt.where(tuple_(r.record_id, r.revision) > tuple_(*after))
            page = self._rows(stmt)
            yield from page
            if len(page) < batch:
                return
            after = page[-1].key

    def counts(self) -> dict[str, int]:
        """Number of records (heads) per item."""
        h = record_heads.c
        with translated("counting records"), self._engine.connect() as conn:
            return {item: int(n) for item, n in conn.execute(select(h.item, func.count()).group_by(h.item))}

    def _rows(self, stmt: Any) -> list[RecordRow]:
        with translated("reading records"), self._engine.connect() as conn:
            return [RecordRow(*row) for row in conn.execute(stmt)]


def _heads_upsert(stmt: DialectInsert) -> DialectInsert:
    """Make ``stmt`` (an INSERT into record_heads) move a head only forward: revisions may arrive
    out of order, and a lower one must not replace a higher one."""
    return stmt.on_conflict_do_update(
        index_elements=["record_id"],
        set_={c: stmt.excluded[c] for c in _HEAD_COLUMNS if c != "record_id"},
        where=record_heads.c.revision < stmt.excluded.revision,
    )


def _insert_outbox(conn: Connection, entries: Sequence[OutboxEntry], now: int) -> None:
    """New pending deliveries; only the four varying values are bound per row."""
    if not entries:
        return
    at = literal_column(str(int(now)), BigInteger)
    stmt = insert(outbox_table).values(created_at_ms=at, attempts=literal_column("0", Integer), next_attempt_ms=at,
                                       last_error=literal_column("''"), state=literal_column("'pending'"))
    execute_many(conn, stmt, _OUTBOX_BOUND, [(e.record_id, e.revision, e.destination, e.rule_id) for e in entries])


def _dedupe(rows: Sequence[RecordRow]) -> tuple[dict[Key, RecordRow], list[tuple[Key, bytes]], list[Key]]:
    """Split a batch into first occurrences (in order), repeats with the same digest, and repeats that differ."""
    first: dict[Key, RecordRow] = {}
    repeats: list[tuple[Key, bytes]] = []
    conflicts: list[Key] = []
    for row in rows:
        key = (row.record_id, row.revision)
        seen = first.get(key)
        if seen is None:
            first[key] = row
        elif seen.body_digest == row.body_digest:
            repeats.append((key, row.body_digest))
        else:
            conflicts.append(key)
    return first, repeats, conflicts
