"""The main path for records a source reports here: validate → sign → store + outbox.

Rows arrive from a file (``credit-node import``), an adapter or an unsigned gRPC submission. Each
batch is validated (清洗比对), turned into record bodies serialised once, signed with one Merkle
batch signature as this node's source unit (谁产生谁负责), and written with its outbox rows and
its audit event in one transaction. Re-reporting the same fact stores nothing new; a changed fact
becomes the next revision of the same record.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from node.catalog import Catalog, Item
from node.errors import Problem
from node.records import body_digest, content_digest, make_record_id, pb
from node.routing import Router
from node.signing import Signer
from node.store import Store
from node.store.records import AuditEvent, OutboxEntry, RecordRow
from node.store.rejections import RejectionRow
from node.tabular import SourceRow
from node.validation import Checked, Validator

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
    problems: list[Problem] = field(default_factory=list)  # first problems only, for terminals
    record_ids: list[tuple[str, int]] = field(default_factory=list)  # kept only when asked

    def add(self, other: ImportSummary) -> None:
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        self.warnings += other.warnings


@dataclass(frozen=True)
class RowOutcome:
    """Per-row result, for sources that answer row by row (gRPC acks, feedback files)."""

    row: int
    outcome: str  # accepted | duplicate | rejected
    record_id: str = ""
    revision: int = 0
    problems: tuple[Problem, ...] = ()


class Ingest:
    def __init__(self, *, node_id: str, catalog: Catalog, validator: Validator, signer: Signer,
                 store: Store, router: Router, clock: Callable[[], int] = now_ms,
                 keep_problems: int = 1000) -> None:
        self._node_id = node_id
        self._catalog = catalog
        self._validator = validator
        self._signer = signer
        self._store = store
        self._router = router
        self._clock = clock
        self._keep_problems = keep_problems

    def import_rows(self, item: Item, rows: Iterable[SourceRow], *, source: str,
                    progress: Callable[[int], None] | None = None,
                    batch_rows: int = BATCH_ROWS) -> ImportSummary:
        """Import a stream of rows in bounded batches; each batch commits on its own."""
        total = ImportSummary(batch_id=uuid.uuid4().hex)
        for chunk in _chunks(rows, batch_rows):
            outcomes = self.ingest_batch(item, chunk, source=source, batch_id=total.batch_id)
            for o in outcomes:
                if o.outcome == "accepted":
                    total.accepted += 1
                elif o.outcome == "duplicate":
                    total.duplicates += 1
                else:
                    total.rejected += 1
                for p in o.problems:
                    if p.warning:
                        total.warnings += 1
                    if len(total.problems) < self._keep_problems:
                        total.problems.append(p)
            if progress is not None:
                progress(len(chunk))
        return total

    def ingest_batch(self, item: Item, rows: Sequence[SourceRow], *, source: str,
                     batch_id: str) -> list[RowOutcome]:
        now = self._clock()
        outcomes: dict[int, RowOutcome] = {}
        checked: list[tuple[int, SourceRow, Checked]] = []
        rejections: list[RejectionRow] = []
        for idx, row in enumerate(rows):
            if row.problem is not None:
                outcomes[idx] = RowOutcome(row.row, "rejected", problems=(row.problem,))
                rejections.append(self._rejection(batch_id, source, item, row.row, f"row:{row.row}",
                                                  "", row.problem, now))
                continue
            c = self._validator.check(item, row.values, row.row)
            if not c.ok:
                outcomes[idx] = RowOutcome(row.row, "rejected", problems=c.problems)
                key = c.key or f"row:{row.row}"
                rejections.extend(self._rejection(batch_id, source, item, row.row, key, c.source_unit, p, now)
                                  for p in c.problems if not p.warning)
                continue
            checked.append((idx, row, c))

        # One fact reported twice in the same batch: the first row wins, an identical repeat is a
        # duplicate, a different one is refused (the source must say which is right).
        by_id: dict[str, tuple[int, bytes]] = {}
        fresh: list[tuple[int, SourceRow, Checked, str, bytes]] = []
        for idx, row, c in checked:
            rid = make_record_id(item.code, c.source_unit, c.key)
            digest = content_digest(item.code, c.source_unit, c.fields)
            seen = by_id.get(rid)
            if seen is None:
                by_id[rid] = (row.row, digest)
                fresh.append((idx, row, c, rid, digest))
            elif seen[1] == digest:
                outcomes[idx] = RowOutcome(row.row, "duplicate", rid, 0, c.problems)
            else:
                p = Problem("E_DUPLICATE_KEY", item.key_fields[0] if item.key_fields else "",
                            f"the same fact ({c.key}) appears again at row {seen[0]} with other values",
                            row=row.row)
                outcomes[idx] = RowOutcome(row.row, "rejected", rid, 0, (p,))
                rejections.append(self._rejection(batch_id, source, item, row.row, c.key, c.source_unit, p, now))

        heads = self._store.records.heads([f[3] for f in fresh]) if fresh else {}
        bodies: list[bytes] = []
        pending: list[tuple[int, SourceRow, Checked, str, bytes, int]] = []
        for idx, row, c, rid, digest in fresh:
            head = heads.get(rid)
            if head is not None and head.content_digest == digest:
                outcomes[idx] = RowOutcome(row.row, "duplicate", rid, head.revision, c.problems)
                continue
            revision = 1 if head is None else head.revision + 1
            body = pb.RecordBody(
                record_id=rid, revision=revision, item=item.code, catalog_version=self._catalog.version,
                subject_code=c.subject_code, subject_kind=c.subject_kind, subject_name=c.subject_name,
                source_unit=c.source_unit, origin_node=self._node_id,
                fields=[pb.Field(name=n, value=v) for n, v in c.fields], reported_at_ms=now,
                status="active", decision_date=c.decision_date,
                reason="" if head is None else "source report changed",
                supersedes_digest="" if head is None else head.body_digest.hex(),
            ).SerializeToString()
            bodies.append(body)
            pending.append((idx, row, c, rid, digest, revision))

        if pending:
            self._store_signed(item, bodies, pending, outcomes, rejections, source, batch_id, now)
        elif rejections:
            self._store.records.append([], rejections=rejections)
        return [outcomes[i] for i in range(len(rows))]

    def _store_signed(self, item: Item, bodies: list[bytes],
                      pending: list[tuple[int, SourceRow, Checked, str, bytes, int]],
                      outcomes: dict[int, RowOutcome], rejections: list[RejectionRow],
                      source: str, batch_id: str, now: int) -> None:
        sigs = self._signer.sign_origin(bodies, now_ms=now)
        dests = self._router.upward(item.routing.up_to, item.routing.rule_id)
        rows: list[RecordRow] = []
        outbox: list[OutboxEntry] = []
        for body, sig, (_idx, _row, c, rid, digest, revision) in zip(bodies, sigs, pending, strict=True):
            signed = pb.SignedRecord(body=body, chain=[sig]).SerializeToString()
            rows.append(RecordRow(
                record_id=rid, revision=revision, item=item.code, subject_code=c.subject_code,
                subject_kind=c.subject_kind, source_unit=c.source_unit, origin_node=self._node_id,
                status="active", decision_date=c.decision_date, body=body, body_digest=body_digest(body),
                content_digest=digest, signed=signed, received_at_ms=now, received_from="",
                catalog_version=self._catalog.version))
            outbox.extend(OutboxEntry(rid, revision, d.node_id, d.rule_id) for d in dests)
        root = hashlib.sha256(b"".join(r.body_digest for r in rows)).hexdigest()
        audit = AuditEvent(actor=self._node_id, action="import", subject=batch_id,
                           detail={"item": item.code, "source": source, "stored": len(rows), "digest": root})
        closing = [(item.code, c.source_unit, c.key, rid) for (_i, _r, c, rid, _d, _v) in pending]
        result = self._store.records.append(rows, outbox=outbox, audit=[audit], rejections=rejections,
                                            close_rejections=closing)
        stored = set(result.stored)
        for idx, row, c, rid, _digest, revision in pending:
            if (rid, revision) in stored:
                outcomes[idx] = RowOutcome(row.row, "accepted", rid, revision, c.problems)
            else:
                # Another writer stored this revision between our read of the heads and our commit.
                outcomes[idx] = RowOutcome(row.row, "duplicate", rid, revision, c.problems)

    @staticmethod
    def _rejection(batch_id: str, source: str, item: Item, row: int, key: str, unit: str,
                   p: Problem, now: int) -> RejectionRow:
        return RejectionRow(batch_id=batch_id, source=source, source_unit=unit, item=item.code, row=row,
                            record_key=key, field=p.field, code=p.code, message=p.message,
                            created_at_ms=now)


def _chunks(rows: Iterable[SourceRow], size: int) -> Iterator[list[SourceRow]]:
    chunk: list[SourceRow] = []
    for r in rows:
        chunk.append(r)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
