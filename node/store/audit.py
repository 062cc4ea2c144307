"""Append-only, hash-chained logs: the audit log and the query (access) log (DESIGN §2.8, §4).

Each row's ``hash`` is sha256(prev_hash || canonical encoding of (seq, at_ms, <content columns>)),
and the first row's ``prev_hash`` is 32 zero bytes. Editing, deleting or reordering rows therefore
breaks the chain. Cutting rows off the end does not, so the head (seq and hash) is also kept in
``meta`` and updated in the same transaction as the rows; ``verify`` compares the two.

Appenders serialise on the chain: on PostgreSQL with a transaction-level advisory lock per log,
on SQLite with the database write lock, taken by the first statement of the append.
"""

from __future__ import annotations

import hashlib
import json
import struct
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, Table, func, select, text, update

from node.store._sql import is_postgres, positional_sql, translated, write_transaction
from node.store.meta import get_value, put_value
from node.store.tables import audit_log, meta, query_log

__all__ = [
    "GENESIS",
    "AuditEntry",
    "AuditEvent",
    "AuditLog",
    "HashChainLog",
    "IntegrityProblem",
    "LogEntry",
    "QueryLog",
    "QueryLogEntry",
    "canonical_json",
]

GENESIS = bytes(32)

Value = str | int


# Built once: json.dumps with any option builds a new encoder per call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(value: object) -> str:
    """One text for one value: sorted keys, no spaces, no NaN. Raises TypeError if not JSON."""
    return _CANONICAL.encode(value)


def _encode(values: Sequence[Value]) -> bytes:
    """Type-tagged, length-prefixed fields: no two different tuples share an encoding."""
    out = bytearray()
    for value in values:
        kind = type(value)  # exact str and int first: this runs for every value of every entry
        if kind is not str and kind is not int and (isinstance(value, bool) or not isinstance(value, int | str)):
            raise TypeError(f"hash-chained log values are str or int, not {type(value).__name__}")
        if isinstance(value, int):
            out += b"i" + struct.pack(">q", value)
        else:
            data = value.encode("utf-8")
            out += b"s" + struct.pack(">I", len(data)) + data
    return bytes(out)


@dataclass(frozen=True)
class IntegrityProblem:
    seq: int
    reason: str


@dataclass(frozen=True)
class LogEntry:
    seq: int
    at_ms: int
    values: Mapping[str, Value]
    prev_hash: bytes
    hash: bytes


class HashChainLog:
    """A hash chain over ``table``: ``seq``, ``at_ms``, the content ``fields``, ``prev_hash``, ``hash``."""

    def __init__(self, table: Table, fields: Sequence[str]) -> None:
        self.table = table
        self.fields = tuple(fields)
        self._columns = ("seq", "at_ms", *self.fields, "prev_hash", "hash")
        self._sql: dict[str, str] = {}  # the positional INSERT, per dialect
        self._meta_key = f"chain:{table.name}"
        # A stable 64-bit advisory lock key per log, the same in every process.
        digest = hashlib.sha256(f"node.store chain {table.name}".encode()).digest()
        self._lock_key = int.from_bytes(digest[:8], "big", signed=True)

    def digest(self, prev_hash: bytes, seq: int, at_ms: int, values: Sequence[Value]) -> bytes:
        return hashlib.sha256(prev_hash + _encode((seq, at_ms, *values))).digest()

    def append(self, conn: Connection, entries: Sequence[Mapping[str, Value]]) -> list[int]:
        """Append ``entries`` (each with ``at_ms`` and every field) in the caller's transaction.

        Returns the seqs assigned. Nothing is written if any entry cannot be encoded.
        """
        if not entries:
            return []
        self._lock(conn)
        seq, prev = self._head(conn)
        rows: list[tuple[Value | bytes, ...]] = []
        seqs: list[int] = []
        for entry in entries:
            seq += 1
            seqs.append(seq)
            values = [entry[name] for name in self.fields]
            at_ms = entry["at_ms"]
            if not isinstance(at_ms, int):
                raise TypeError("at_ms must be an int (unix ms)")
            digest = self.digest(prev, seq, at_ms, values)
            rows.append((seq, at_ms, *values, prev, digest))
            prev = digest
        # At the driver, the SQL made once: SQLAlchemy's executemany of dicts cost more per entry
        # than hashing it, and compiling the statement more than a small commit.
        conn.exec_driver_sql(self._insert_sql(conn), rows)
        put_value(conn, self._meta_key, f"{seq}:{prev.hex()}")
        return seqs

    def _insert_sql(self, conn: Connection) -> str:
        sql = self._sql.get(conn.dialect.name)
        if sql is None:
            sql = self._sql[conn.dialect.name] = positional_sql(conn, self.table.insert(), self._columns)
        return sql

    def _lock(self, conn: Connection) -> None:
        if is_postgres(conn):
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": self._lock_key})
        else:
            # A write as the first statement makes pysqlite BEGIN and SQLite take the write lock
            # now (waiting with busy_timeout); a no-op when the transaction already holds it.
            conn.execute(update(meta).where(meta.c.key == self._meta_key).values(value=meta.c.value))

    def _head(self, conn: Connection) -> tuple[int, bytes]:
        """The chain's head: the later of the last row and the anchor in meta.

        Continuing from the anchor when rows were cut off keeps the evidence: the missing seqs
        stay missing, instead of the chain silently growing again from the truncated tail.
        """
        last = conn.execute(
            select(self.table.c.seq, self.table.c.hash).order_by(self.table.c.seq.desc()).limit(1)
        ).first()
        seq, head = (int(last.seq), bytes(last.hash)) if last is not None else (0, GENESIS)
        anchor = _parse_anchor(get_value(conn, self._meta_key))
        if anchor is not None and anchor[0] > seq:
            return anchor
        return seq, head

    def head(self, engine: Engine) -> tuple[int, bytes]:
        with translated(f"reading the head of {self.table.name}"), engine.connect() as conn:
            return self._head(conn)

    def count(self, engine: Engine) -> int:
        """Rows held, which is less than the head's seq once rows were deleted."""
        with translated(f"counting {self.table.name}"), engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(self.table)).scalar_one())

    def iter(self, engine: Engine, *, after_seq: int = 0, batch: int = 1000) -> Iterator[LogEntry]:
        """Every entry after ``after_seq`` in seq order, read in pages of ``batch`` rows."""
        t = self.table
        while True:
            with translated(f"reading {t.name}"), engine.connect() as conn:
                page = conn.execute(
                    select(t).where(t.c.seq > after_seq).order_by(t.c.seq).limit(batch)
                ).all()
            for row in page:
                m = row._mapping
                yield LogEntry(int(m["seq"]), int(m["at_ms"]), {f: m[f] for f in self.fields},
                               bytes(m["prev_hash"]), bytes(m["hash"]))
            if len(page) < batch:
                return
            after_seq = int(page[-1].seq)

    def verify(self, engine: Engine) -> list[IntegrityProblem]:
        """Every break in the chain; an empty list means the log is intact."""
        # Read the anchor before the rows: rows appended meanwhile only extend the log.
        raw_anchor = self._raw_anchor(engine)
        anchor = _parse_anchor(raw_anchor)
        problems: list[IntegrityProblem] = []
        if raw_anchor is not None and anchor is None:
            problems.append(IntegrityProblem(0, f"the chain head in meta is unreadable: {raw_anchor!r}"))
        expected, prev, last_seq = 1, GENESIS, 0
        for entry in self.iter(engine, batch=5000):
            if entry.seq != expected:
                problems.append(IntegrityProblem(expected, f"rows {expected}..{entry.seq - 1} are missing"))
            elif entry.prev_hash != prev:
                problems.append(IntegrityProblem(entry.seq, f"prev_hash does not link to seq {entry.seq - 1}"))
            values = [entry.values[f] for f in self.fields]
            if self.digest(entry.prev_hash, entry.seq, entry.at_ms, values) != entry.hash:
                problems.append(IntegrityProblem(entry.seq, "content does not match its hash (row edited)"))
            if anchor is not None and entry.seq == anchor[0] and entry.hash != anchor[1]:
                problems.append(IntegrityProblem(entry.seq, "hash differs from the chain head kept in meta"))
            prev, expected, last_seq = entry.hash, entry.seq + 1, entry.seq
        if anchor is not None and last_seq < anchor[0]:
            problems.append(IntegrityProblem(
                last_seq + 1, f"log truncated: the chain head in meta is seq {anchor[0]}, the log ends at {last_seq}"
            ))
        elif raw_anchor is None and last_seq > 0 and self._raw_anchor(engine) is None:
            # (Re-read: the first append may have committed between the two reads.)
            problems.append(IntegrityProblem(last_seq, "the chain head is missing from meta"))
        return problems

    def _raw_anchor(self, engine: Engine) -> str | None:
        with translated(f"reading the head of {self.table.name}"), engine.connect() as conn:
            return get_value(conn, self._meta_key)


def _parse_anchor(value: str | None) -> tuple[int, bytes] | None:
    if value is None:
        return None
    try:
        seq, digest = value.split(":", 1)
        return int(seq), bytes.fromhex(digest)
    except ValueError:
        return None  # verify reports it; append carries on from the rows themselves


# --- the two logs ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class AuditEvent:
    actor: str
    action: str
    subject: str
    detail: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at_ms: int
    actor: str
    action: str
    subject: str
    detail: Mapping[str, object]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class AuditLog:
    """Who did what to which record or batch: append inside the change's own transaction."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.chain = HashChainLog(audit_log, ("actor", "action", "subject", "detail"))

    def append(self, conn: Connection, events: Sequence[AuditEvent], *, at_ms: int | None = None) -> list[int]:
        at = _now_ms() if at_ms is None else at_ms
        return self.chain.append(conn, [
            {"at_ms": at, "actor": e.actor, "action": e.action, "subject": e.subject,
             "detail": canonical_json(dict(e.detail))}
            for e in events
        ])

    def record(self, *events: AuditEvent, at_ms: int | None = None) -> list[int]:
        """Append ``events`` in a transaction of their own."""
        with translated("appending to the audit log"), write_transaction(self._engine) as conn:
            return self.append(conn, events, at_ms=at_ms)

    def verify(self) -> list[IntegrityProblem]:
        return self.chain.verify(self._engine)

    def actions_on(self, subject: str) -> set[str]:
        """The actions logged on ``subject`` (an indexed read, not a walk of the log)."""
        t = self.chain.table
        with translated(f"reading {t.name}"), self._engine.connect() as conn:
            return {str(a) for a in conn.execute(select(t.c.action).where(t.c.subject == subject).distinct()).scalars()}

    def iter(self, *, after_seq: int = 0) -> Iterator[AuditEntry]:
        for e in self.chain.iter(self._engine, after_seq=after_seq):
            v = e.values
            yield AuditEntry(e.seq, e.at_ms, str(v["actor"]), str(v["action"]), str(v["subject"]),
                             json.loads(str(v["detail"])))


@dataclass(frozen=True)
class QueryLogEntry:
    caller: str
    role: str
    purpose: str
    subject: str
    items: Sequence[str]
    result_count: int
    detail: Mapping[str, object] = field(default_factory=dict)
    at_ms: int | None = None  # None: the time of appending
    seq: int = 0  # set when read back


class QueryLog:
    """Every non-public lookup: who, when, purpose, scope, result count (DESIGN §4)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.chain = HashChainLog(
            query_log, ("caller", "role", "purpose", "subject", "items", "result_count", "detail")
        )

    def append(self, conn: Connection, entries: Sequence[QueryLogEntry]) -> list[int]:
        now = _now_ms()
        return self.chain.append(conn, [
            {"at_ms": now if e.at_ms is None else e.at_ms, "caller": e.caller, "role": e.role,
             "purpose": e.purpose, "subject": e.subject, "items": canonical_json(list(e.items)),
             "result_count": e.result_count, "detail": canonical_json(dict(e.detail))}
            for e in entries
        ])

    def record(self, *entries: QueryLogEntry) -> list[int]:
        with translated("appending to the query log"), write_transaction(self._engine) as conn:
            return self.append(conn, entries)

    def verify(self) -> list[IntegrityProblem]:
        return self.chain.verify(self._engine)

    def iter(self, *, after_seq: int = 0) -> Iterator[QueryLogEntry]:
        for e in self.chain.iter(self._engine, after_seq=after_seq):
            v = e.values
            yield QueryLogEntry(str(v["caller"]), str(v["role"]), str(v["purpose"]), str(v["subject"]),
                                tuple(json.loads(str(v["items"]))), int(v["result_count"]),
                                json.loads(str(v["detail"])), at_ms=e.at_ms, seq=e.seq)
