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
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Engine, and_, bindparam, select

from node import access
from node.catalog import Catalog, Item
from node.records import decode_body, decode_signed, pb
from node.store._sql import chunks, translated
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
        self._rule_fields = {code: _rule_fields(item) for code, item in catalog.items.items()}
        self._measures = {code: list(item.measures) for code, item in catalog.items.items()}
        h, r = record_heads.c, record_revisions.c
        heads = (select(*_COLUMNS)
                 .join(record_heads, and_(h.record_id == r.record_id, h.revision == r.revision))
                 .order_by(h.item, h.decision_date, h.record_id))
        self._by_subject = heads.where(h.subject_code == bindparam("subject"))
        self._heads = heads
        compiled = self._by_subject.compile(dialect=engine.dialect)
        self._sql = str(compiled)
        self._positional = bool(compiled.positional)

    # --- reading -------------------------------------------------------------------------------------
    def current(self, subject: str, items: Sequence[str] = ()) -> list[StoredRecord]:
        """The head revision of every record about ``subject`` (of ``items``, if given)."""
        if items:
            stmt = self._heads.where(record_heads.c.subject_code == subject,
                                     record_heads.c.item.in_(list(items)))
            with translated("reading records"), self._engine.connect() as conn:
                return [StoredRecord._make(row) for row in conn.execute(stmt)]
        params: Any = (subject,) if self._positional else {"subject": subject}
        with translated("reading records"):
            raw = self._engine.raw_connection()
            try:
                cursor = raw.cursor()
                try:
                    cursor.execute(self._sql, params)
                    rows = cursor.fetchall()
                finally:
                    cursor.close()
            finally:
                raw.close()  # back to the pool (pysqlite: rolls back the implicit read transaction)
        return [StoredRecord._make(row) for row in rows]

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
    def views(self, rows: Iterable[StoredRecord], caller: access.Caller, today: dt.date) -> list[pb.RecordView]:
        out = []
        for row in rows:
            view = self.view(row, caller, today)
            if view is not None:
                out.append(view)
        return out

    def view(self, row: StoredRecord, caller: access.Caller, today: dt.date) -> pb.RecordView | None:
        """``row`` as ``caller`` may see it, or None when it may not."""
        item = self._items.get(row.item)
        if item is None:  # an item this catalogue release does not know: cannot be classified, not shown
            return None
        if item.disclosure_class not in access.classes_for(caller, row.subject_code, row.item):
            return None  # the common refusal, decided before decoding anything
        body = decode_body(row.body)
        wanted = self._rule_fields[row.item]
        rule_values = {f.name: f.value for f in body.fields if f.name in wanted} if wanted else {}
        window = access.window_state(item, rule_values, row.decision_date, today)
        facts = access.RecordFacts(row.item, item.disclosure_class, row.subject_code, row.subject_kind,
                                   row.status, window)
        decision = access.decide(caller, facts, self._policy)
        if not decision.visible:
            return None
        view = pb.RecordView(record_id=row.record_id, revision=row.revision, item=row.item, status=row.status,
                             disclosure_class=item.disclosure_class, region=self._region,
                             marks=decision.marks, measures=self._measures[row.item],
                             subject_code=row.subject_code, subject_name=body.subject_name,
                             decision_date=row.decision_date,
                             signers=[s.signer for s in decode_signed(row.signed).chain])
        view.fields.extend(body.fields)  # copied in C; masked below only when the decision says so
        if decision.mask_ids:
            masked = self._id_fields[row.item]
            shown, view.subject_code = access.mask_view(decision, masked, {f.name: f.value for f in view.fields
                                                                           if f.name in masked},
                                                        row.subject_code, row.subject_kind)
            for f in view.fields:
                if f.name in shown:
                    f.value = shown[f.name]
        return view


def _rule_fields(item: Item) -> frozenset[str]:
    """The fields an item's disclosure rule reads (dates, severity)."""
    rule = item.disclosure
    return frozenset(n for n in (rule.start_field, rule.end_field, rule.severity_field) if n)
