"""The main path for records a source reports here: validate → sign → store + outbox.

Rows arrive from a file (``credit-node import``), an adapter or an unsigned gRPC submission. A
batch is first *prepared* (pure CPU: validation 清洗比对, record ids, body bytes serialised once)
and then *committed* (heads looked up, one Merkle batch signature as this node's source unit —
谁产生谁负责 —, records, outbox rows, rejections and the audit event in one transaction).
The two halves are separate so a big file can be prepared in a worker process while the previous
batch commits (``node/pipeline.py``). Re-reporting the same fact stores nothing new; a changed
fact becomes the next revision of the same record.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from node.catalog import Catalog, Item
from node.conflicts import Conflicts, fact_of
from node.errors import Problem
from node.records import body_digest, content_digest, make_record_id, pb, signed_record_bytes
from node.routing import Router
from node.signing import Signer
from node.store import Store
from node.store.records import AuditEvent, OutboxEntry, RecordRow
from node.store.rejections import RejectionRow, row_key
from node.tabular import SourceRow
from node.validation import Validator

BATCH_ROWS = 2000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class ImportSummary:
    batch_id: str
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    warnings: int = 0

    def count(self, outcomes: Iterable[RowOutcome]) -> None:
        for o in outcomes:
            if o.outcome == "accepted":
                self.accepted += 1
            elif o.outcome == "duplicate":
                self.duplicates += 1
            else:
                self.rejected += 1
            self.warnings += sum(1 for p in o.problems if p.warning)


@dataclass(frozen=True)
class RowOutcome:
    """Per-row result, for sources that answer row by row (gRPC acks, feedback files)."""

    row: int
    outcome: str  # accepted | duplicate | rejected
    record_id: str = ""
    revision: int = 0
    problems: tuple[Problem, ...] = ()


class Prepared(NamedTuple):
    """A valid row, ready to sign: its body assumes revision 1 until the heads say otherwise.

    A named tuple: it crosses the pipe from the worker by the thousand (pickled as a plain tuple).
    """

    slot: int  # position in its batch
    row: int
    record_id: str
    content_digest: bytes
    body: bytes
    key: str
    subject_code: str
    subject_kind: str
    source_unit: str
    decision_date: str
    warnings: tuple[Problem, ...]


@dataclass
class PreparedBatch:
    """The CPU half of a batch; picklable, so a worker process can make it."""

    item: str
    size: int
    prepared: list[Prepared] = field(default_factory=list)
    outcomes: dict[int, RowOutcome] = field(default_factory=dict)
    rejections: list[RejectionRow] = field(default_factory=list)


class Preparer:
    """Validation and body building for one node: pure CPU, no store."""

    def __init__(self, *, node_id: str, catalog: Catalog, validator: Validator,
                 clock: Callable[[], int] = now_ms) -> None:
        self.node_id = node_id
        self.catalog = catalog
        self._validator = validator
        self._clock = clock

    def prepare(self, item: Item, rows: Sequence[SourceRow], *, source: str, batch_id: str) -> PreparedBatch:
        now = self._clock()
        out = PreparedBatch(item=item.code, size=len(rows))
        first_seen: dict[str, tuple[int, bytes]] = {}
        check = self._validator.check
        for idx, row in enumerate(rows):
            if row.problem is not None:
                out.outcomes[idx] = RowOutcome(row.row, "rejected", problems=(row.problem,))
                out.rejections.append(_rejection(batch_id, source, item, row.row, row_key(source, row.row),
                                                 self._validator.source_unit, row.problem, now))
                continue
            c = check(item, row.values, row.row)
            if not c.ok:
                out.outcomes[idx] = RowOutcome(row.row, "rejected", problems=c.problems)
                key = _refusal_key(item, c.key, c.problems, source, row.row)
                out.rejections.extend(_rejection(batch_id, source, item, row.row, key, c.source_unit, p, now)
                                      for p in c.problems if not p.warning)
                continue
            rid = make_record_id(item.code, c.source_unit, c.key)
            digest = content_digest(item.code, c.source_unit, c.fields)
            # One fact twice in a batch: an identical repeat is a duplicate, a different one is
            # refused (the source must say which is right).
            seen = first_seen.get(rid)
            if seen is not None:
                if seen[1] == digest:
                    out.outcomes[idx] = RowOutcome(row.row, "duplicate", rid, 0, c.problems)
                else:
                    p = Problem("E_DUPLICATE_KEY", item.key_fields[0] if item.key_fields else "",
                                f"the same fact ({c.key.replace(chr(31), ' ')}) appears at row {seen[0]} "
                                "with other values", row=row.row)
                    out.outcomes[idx] = RowOutcome(row.row, "rejected", rid, 0, (p,))
                    out.rejections.append(_rejection(batch_id, source, item, row.row, c.key, c.source_unit,
                                                     p, now))
                continue
            first_seen[rid] = (row.row, digest)
            body = pb.RecordBody(
                record_id=rid, revision=1, item=item.code, catalog_version=self.catalog.version,
                subject_code=c.subject_code, subject_kind=c.subject_kind, subject_name=c.subject_name,
                source_unit=c.source_unit, origin_node=self.node_id, reported_at_ms=now, status="active",
                decision_date=c.decision_date)
            add = body.fields.add
            for name, value in c.fields:
                add(name=name, value=value)
            out.prepared.append(Prepared(idx, row.row, rid, digest, body.SerializeToString(), c.key,
                                         c.subject_code, c.subject_kind, c.source_unit, c.decision_date,
                                         c.problems))
        return out


class Ingest:
    def __init__(self, *, preparer: Preparer, signer: Signer, store: Store, router: Router,
                 clock: Callable[[], int] = now_ms, conflicts: Conflicts | None = None) -> None:
        self.preparer = preparer
        self._conflicts = conflicts  # None where one source unit reports everything (a department)
        self._signer = signer
        self._store = store
        self._router = router
        self._clock = clock

    @property
    def catalog(self) -> Catalog:
        return self.preparer.catalog

    def import_rows(self, item: Item, rows: Iterable[SourceRow], *, source: str,
                    progress: Callable[[int], None] | None = None,
                    batch_rows: int = BATCH_ROWS) -> ImportSummary:
        """Import a stream of rows in bounded batches; each batch commits on its own."""
        total = ImportSummary(batch_id=uuid.uuid4().hex)
        for chunk in chunks(rows, batch_rows):
            total.count(self.ingest_batch(item, chunk, source=source, batch_id=total.batch_id))
            if progress is not None:
                progress(len(chunk))
        return total

    def prepare(self, item: Item, rows: Sequence[SourceRow], *, source: str, batch_id: str) -> PreparedBatch:
        """The CPU half of a batch (any thread): see :meth:`Preparer.prepare`."""
        return self.preparer.prepare(item, rows, source=source, batch_id=batch_id)

    def ingest_batch(self, item: Item, rows: Sequence[SourceRow], *, source: str,
                     batch_id: str, meta: Mapping[str, str] | None = None) -> list[RowOutcome]:
        """One batch; ``meta`` (an adapter's position in its source) commits with it, atomically."""
        return self.commit(item, self.preparer.prepare(item, rows, source=source, batch_id=batch_id),
                           source=source, batch_id=batch_id, meta=meta)

    def commit(self, item: Item, batch: PreparedBatch, *, source: str, batch_id: str,
               meta: Mapping[str, str] | None = None) -> list[RowOutcome]:
        now = self._clock()
        outcomes = batch.outcomes
        heads = self._store.records.heads([p.record_id for p in batch.prepared]) if batch.prepared else {}
        pending: list[tuple[Prepared, bytes, int]] = []
        for p in batch.prepared:
            head = heads.get(p.record_id)
            if head is None:
                pending.append((p, p.body, 1))
            elif head.content_digest == p.content_digest:
                outcomes[p.slot] = RowOutcome(p.row, "duplicate", p.record_id, head.revision, p.warnings)
            else:
                changed = pb.RecordBody()
                changed.ParseFromString(p.body)
                changed.revision = head.revision + 1
                changed.reason = "source report changed"
                changed.supersedes_digest = head.body_digest.hex()
                pending.append((p, changed.SerializeToString(), head.revision + 1))
        if not pending:
            if batch.rejections or meta:
                self._store.records.append([], rejections=batch.rejections, meta=meta)
            return [outcomes[i] for i in range(batch.size)]

        digests = [body_digest(b) for _p, b, _r in pending]
        sigs = self._signer.sign_origin_encoded(digests, now_ms=now)
        dests = self._router.upward(item.routing.up_to, item.routing.rule_id)
        node_id, version, code = self.preparer.node_id, self.preparer.catalog.version, item.code
        rows: list[RecordRow] = []
        outbox: list[OutboxEntry] = []
        for (p, body, revision), digest, sig in zip(pending, digests, sigs, strict=True):
            # Positional, in column order (RecordRow): this loop runs once per stored record.
            rows.append(RecordRow(
                p.record_id, revision, code, p.subject_code, p.subject_kind, p.source_unit, node_id, "active",
                p.decision_date, body, digest, p.content_digest, signed_record_bytes(body, (sig,)), now, "",
                version))
            if dests:
                outbox.extend(OutboxEntry(p.record_id, revision, d.node_id, d.rule_id) for d in dests)
        batch_digest = hashlib.sha256(b"".join(r.body_digest for r in rows)).hexdigest()
        audit = AuditEvent(actor=node_id, action="import", subject=batch_id,
                           detail={"item": item.code, "source": source, "stored": len(rows), "digest": batch_digest})
        closing = [(item.code, p.source_unit, k, p.record_id) for p, _b, _r in pending
                   for k in (p.key, row_key(source, p.row))]
        also = [self._conflicts.observer([fact_of(item, r.body) for r in rows])] if self._conflicts else []
        result = self._store.records.append(rows, outbox=outbox, audit=[audit], rejections=batch.rejections,
                                            close_rejections=closing, meta=meta, also=also)
        stored = set(result.stored)
        for p, _body, revision in pending:
            # Not stored: another writer stored this revision between our read of heads and commit.
            outcome = "accepted" if (p.record_id, revision) in stored else "duplicate"
            outcomes[p.slot] = RowOutcome(p.row, outcome, p.record_id, revision, p.warnings)
        return [outcomes[i] for i in range(batch.size)]


def _refusal_key(item: Item, key: str, problems: Sequence[Problem], source: str, row: int) -> str:
    """The natural key of a refused row if it can be trusted, else the row's place in its source.

    A key with an empty part, or built from a field that is itself wrong (a mistyped USCC), would
    never match the corrected report; the row's place (``row:N@SOURCE``) will.
    """
    fields = {f for k in item.key_fields for f in (item.subject_code_fields.values() if k == "@subject_code"
                                                    else (item.subject_kind_field,) if k == "@subject_kind"
                                                    else (k,))}
    if key and all(key.split("\x1f")) and not any(p.field in fields for p in problems if not p.warning):
        return key
    return row_key(source, row)


def _rejection(batch_id: str, source: str, item: Item, row: int, key: str, unit: str,
               p: Problem, now: int) -> RejectionRow:
    return RejectionRow(batch_id=batch_id, source=source, source_unit=unit, item=item.code, row=row,
                        record_key=key, field=p.field, code=p.code, message=p.message, created_at_ms=now)


def chunks(rows: Iterable[SourceRow], size: int) -> Iterator[list[SourceRow]]:
    chunk: list[SourceRow] = []
    for r in rows:
        chunk.append(r)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
