"""Disclosure: what a caller is shown of the stored records, the read path of ``Query``.

:mod:`node.access` decides; this module reads and shapes. It is the hot path of ``Lookup``, so:

- one indexed read per lookup (``record_heads.subject_code`` joined to the head revision), its SQL
  compiled once and run on the driver's cursor: building and compiling a SQLAlchemy statement
  per call cost more than SQLite spent answering it;
- no signature verification (records were verified on the way in; ``credit-node verify``
  re-checks the store), only the signer names are read from the stored chain;
- the catalogue's per-item facts (class, ID-number fields, the fields a disclosure rule reads)
  computed once; a record the caller's classes exclude is dropped before its body is decoded.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Engine, and_, bindparam, select

from node import access
from node.catalog import Catalog, Item
from node.errors import StoreError
from node.lifecycle.measures import measures_for
from node.lifecycle.validity import ended_reported_on
from node.records import decode_body, decode_signed, pb
from node.store._sql import chunks, translated
from node.store.engine import BUSY_TIMEOUT_MS, READER_MMAP_BYTES
from node.store.tables import record_heads, record_revisions

__all__ = ["Disclosure", "StoredRecord"]


class StoredRecord(NamedTuple):
    """The columns of a head revision that disclosure reads (not the digests and provenance)."""

    record_id: str
    revision: int
    item: str
    subject_code: str
    subject_kind: str
    status: str
    decision_date: str
    body: bytes
    signed: bytes


_r = record_revisions.c
_COLUMNS = (_r.record_id, _r.revision, _r.item, _r.subject_code, _r.subject_kind, _r.status, _r.decision_date,
            _r.body, _r.signed)


class Disclosure:
    def __init__(self, engine: Engine, catalog: Catalog, region: str, policy: access.Policy) -> None:
        self._engine = engine
        self._region = region
        self._policy = policy
        self._items: dict[str, Item] = dict(catalog.items)
        self._id_fields = {code: access.id_fields(item) for code, item in catalog.items.items()}
        self._own_id = {(code, kind): access.own_id_field(item, kind)
                        for code, item in catalog.items.items() for kind in item.subject_kinds}
        self._rule_fields = {code: _rule_fields(item) for code, item in catalog.items.items()}
        h, r = record_heads.c, record_revisions.c
        heads = (select(*_COLUMNS)
                 .join(record_heads, and_(h.record_id == r.record_id, h.revision == r.revision))
                 .order_by(h.item, h.decision_date, h.record_id))
        self._by_subject = heads.where(h.subject_code == bindparam("subject"))
        self._heads = heads
        compiled = self._by_subject.compile(dialect=engine.dialect)
        self._sql = str(compiled)
        self._positional = bool(compiled.positional)
        database = engine.url.database or ""
        on_disk = engine.dialect.name == "sqlite" and database not in ("", ":memory:") and "memory" not in database
        self._readers = _SqliteReaders(database) if on_disk else None

    # --- reading -------------------------------------------------------------------------------------
    def current(self, subject: str, items: Sequence[str] = ()) -> list[StoredRecord]:
        """The head revision of every record about ``subject`` (of ``items``, if given)."""
        if items:
            stmt = self._heads.where(record_heads.c.subject_code == subject,
                                     record_heads.c.item.in_(list(items)))
            with translated("reading records"), self._engine.connect() as conn:
                return [StoredRecord._make(row) for row in conn.execute(stmt)]
        params: Any = (subject,) if self._positional else {"subject": subject}
        rows: Sequence[Any]
        with translated("reading records"):
            if self._readers is not None:
                try:
                    rows = self._readers.get().execute(self._sql, params).fetchall()
                except sqlite3.Error as exc:
                    raise StoreError(f"reading records: {exc}") from None
            else:
                raw = self._engine.raw_connection()
                try:
                    cursor = raw.cursor()
                    try:
                        cursor.execute(self._sql, params)
                        rows = cursor.fetchall()
                    finally:
                        cursor.close()
                finally:
                    raw.close()  # back to the pool
        return [StoredRecord._make(row) for row in rows]

    def close(self) -> None:
        if self._readers is not None:
            self._readers.close()

    def current_lists(self, codes: Sequence[str], items: Sequence[str]) -> list[StoredRecord]:
        """Current revisions of ``items`` for many subjects: one indexed read per 500 codes."""
        h = record_heads.c
        out: list[StoredRecord] = []
        with translated("reading list entries"), self._engine.connect() as conn:
            for chunk in chunks(codes):
                stmt = self._heads.where(h.subject_code.in_(list(chunk)), h.item.in_(list(items)))
                out.extend(StoredRecord._make(row) for row in conn.execute(stmt))
        return out

    # --- shaping -------------------------------------------------------------------------------------
    def add_views(self, out: Any, rows: Iterable[StoredRecord], caller: access.Caller, today: dt.date) -> int:
        """Append to ``out`` (a repeated RecordView field) what ``caller`` may see of ``rows``.

        Built in place in the response: copying finished views into it cost as much as making them.
        """
        n = 0
        for row in rows:
            seen = self._decide(row, caller, today)
            if seen is not None:
                self._fill(out.add(), row, *seen)
                n += 1
        return n

    def view(self, row: StoredRecord, caller: access.Caller, today: dt.date) -> pb.RecordView | None:
        """``row`` as ``caller`` may see it, or None when it may not."""
        seen = self._decide(row, caller, today)
        if seen is None:
            return None
        view = pb.RecordView()
        self._fill(view, row, *seen)
        return view

    def _decide(self, row: StoredRecord, caller: access.Caller,
                today: dt.date) -> tuple[Item, pb.RecordBody, access.Decision, str] | None:
        item = self._items.get(row.item)
        if item is None:  # an item this catalogue release does not know: cannot be classified, not shown
            return None
        if item.disclosure_class not in access.classes_for(caller, row.subject_code, row.item):
            return None  # the common refusal, decided before decoding anything
        body = decode_body(row.body)
        wanted = self._rule_fields[row.item]
        rule_values = {f.name: f.value for f in body.fields if f.name in wanted} if wanted else {}
        reported = ended_reported_on(self._engine, item, row.record_id, row.revision, body) \
            if item.disclosure.ended_field else None
        window = access.window_state(item, rule_values, row.decision_date, today, reported)
        facts = access.RecordFacts(row.item, item.disclosure_class, row.subject_code, row.subject_kind,
                                   row.status, window, row.status == "disputed" and self._repaired_before(row))
        decision = access.decide(caller, facts, self._policy)
        return (item, body, decision, window) if decision.visible else None

    def _repaired_before(self, row: StoredRecord) -> bool:
        """Whether a record under objection (``disputed``, rare) was repaired when it was marked:
        its latest revision before the mark (and before any source report kept disputed meanwhile)
        is ``repaired``. The objection's answer keeps it repaired (ObjectionService.answer); until
        then the mark must not publish it again."""
        r = record_revisions.c
        stmt = (select(r.status).where(r.record_id == row.record_id, r.revision < row.revision,
                                       r.status != "disputed").order_by(r.revision.desc()).limit(1))
        with translated("reading a record's history"), self._engine.connect() as conn:
            return conn.execute(stmt).scalar() == "repaired"

    def _fill(self, view: pb.RecordView, row: StoredRecord, item: Item, body: pb.RecordBody,
              decision: access.Decision, window: str) -> None:
        view.record_id, view.revision, view.item, view.status = row.record_id, row.revision, row.item, row.status
        view.disclosure_class, view.region = item.disclosure_class, self._region
        view.subject_code, view.subject_name, view.decision_date = (row.subject_code, body.subject_name,
                                                                    row.decision_date)
        view.signers.extend([s.signer for s in decode_signed(row.signed).chain])
        if decision.marks:
            view.marks.extend(decision.marks)
        if item.measures:  # only while the list entry is in force (not disputed, repaired, expired …)
            view.measures.extend(measures_for(item, row.status, window))
        view.fields.extend(body.fields)  # copied in C; masked below only when the decision says so
        ids = self._id_fields[row.item]
        if ids and (decision.mask_ids or decision.mask_others):
            access.mask_in_place(decision, ids, view.fields, self._own_id.get((row.item, row.subject_kind), ""))
        if decision.mask_ids:
            view.subject_code = access.shown_subject(decision, row.subject_code, row.subject_kind)


def _rule_fields(item: Item) -> frozenset[str]:
    """The fields an item's disclosure rule reads (dates, severity)."""
    rule = item.disclosure
    return frozenset(n for n in (rule.start_field, rule.end_field, rule.severity_field, rule.ended_field,
                                 rule.removal_field) if n)


class _SqliteReaders:
    """One read-only SQLite connection per server thread, kept for the thread's life.

    The engine's pool keeps five connections; sixteen server threads reading at once made it
    open and close a connection (with its pragmas) for one lookup in ten. SQLite in WAL mode lets
    each connection read the last committed state without blocking the writer; autocommit mode
    means no read transaction outlives its statement.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[sqlite3.Connection] = []

    def get(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True, isolation_level=None,
                                       check_same_thread=False)
                conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                # Memory-mapped reads: a lookup touches a few pages all over a large file, and
                # copying each 16 KB page out with read() was most of a lookup's time.
                conn.execute(f"PRAGMA mmap_size={READER_MMAP_BYTES}")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open {self._path} for reading: {exc}") from None
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
