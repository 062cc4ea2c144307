"""The main path for records a source reports here: validate → sign → store + outbox.

Rows arrive from a file (``credit-node import``), an adapter or an unsigned gRPC submission. A
batch is first *prepared* (pure CPU: validation 清洗比对, record ids, body bytes serialised once)
and then *committed* (heads looked up, one Merkle batch signature as this node's source unit —
谁产生谁负责 —, records, outbox rows, rejections and the audit event in one transaction).
The two halves are separate so a big file can be prepared in a worker process while the previous
batch commits (``node/pipeline.py``); preparing lives in ``node/preparing.py``, committing here.
Re-reporting the same fact stores nothing new; a changed fact becomes the next revision of the
same record.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence

from node.access import WITHDRAWN_STATUSES
from node.catalog import Catalog, Item
from node.conflicts import Conflicts, fact_of
from node.errors import Problem, StoreError
from node.lifecycle.deletion import ON_REQUEST
from node.lifecycle.revisions import Change, Reviser
from node.preparing import (
    IMPORT_RACE_RETRIES,
    ImportSummary,
    Prepared,
    PreparedBatch,
    Preparer,
    RowOutcome,
    chunks,
    now_ms,
)
from node.records import SOURCE_CHANGE_REASON, body_digest, decode_body, pb, signed_record_bytes
from node.rejection import row_key
from node.routing import Router
from node.signing import Signer
from node.store import Store
from node.store.records import AuditEvent, Head, OutboxEntry, RecordRow
from node.tabular import SourceRow

BATCH_ROWS = 2000
# Statuses a changed re-report keeps: decided for the subject, or set while a case is open.
_KEPT_WHILE_CHANGED = frozenset({"repaired", "disputed", "withheld", "checking"})


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
            prepared = self.preparer.prepare(item, chunk, source=source, batch_id=total.batch_id)
            total.count(self.commit(item, prepared, source=source, batch_id=total.batch_id,
                                    race_retries=IMPORT_RACE_RETRIES))
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
               meta: Mapping[str, str] | None = None, race_retries: int = 0) -> list[RowOutcome]:
        """Store a prepared batch. ``race_retries``: times the batch is taken again, its heads read
        anew, when another writer stored a revision it numbered (``E_REVISION_RACE``: nothing of it
        was stored); a file import retries, an adapter's pull is polled again instead."""
        for attempt in range(race_retries + 1):
            try:
                outcomes = self._commit(item, batch, source=source, batch_id=batch_id, meta=meta)
                break
            except StoreError as exc:
                if exc.code != "E_REVISION_RACE" or attempt == race_retries:
                    raise
        # After the batch, in a transaction of its own: a re-report (a duplicate) retires what a
        # crash between the two left active, so nothing is lost by not sharing the batch's.
        replaced = {p.replaces: p.record_id for p in batch.prepared if p.replaces}
        if replaced:
            self._retire_stand_ins(replaced)
        return outcomes

    def _retire_stand_ins(self, replaced: Mapping[str, str]) -> None:
        """Revoke the records 个体工商户 had under their 工商注册号 (the 17 zeros and X standing in for
        a USCC not issued yet) now that they report under their USCC: the same facts, which would
        otherwise be disclosed twice, once under a code that is no longer the subject's."""
        changes = []
        for rid, head in self._store.records.heads(replaced).items():
            row = None if head.status in WITHDRAWN_STATUSES else self._store.records.get(rid)
            if row is not None:
                changes.append(Change(row, "revoked", f"reported again under its USCC, as record {replaced[rid]}"))
        if changes:
            reviser = Reviser(node_id=self.preparer.node_id, catalog=self.catalog, signer=self._signer,
                              store=self._store, router=self._router, clock=self._clock, conflicts=self._conflicts)
            reviser.commit(changes, action="stand_in.replaced", subject=changes[0].head.record_id,
                           detail={"replaced_by": sorted({replaced[c.head.record_id] for c in changes})},
                           exact=False)

    def _commit(self, item: Item, batch: PreparedBatch, *, source: str, batch_id: str,
                meta: Mapping[str, str] | None) -> list[RowOutcome]:
        now = self._clock()
        outcomes = batch.outcomes
        heads = self._store.records.heads([p.record_id for p in batch.prepared]) if batch.prepared else {}
        pending: list[tuple[Prepared, bytes, int, str]] = []
        changed_heads: dict[str, Head] = {}
        for p in batch.prepared:
            head = heads.get(p.record_id)
            if head is None:
                pending.append((p, p.body, 1, "active"))
            elif head.content_digest == p.content_digest:
                outcomes[p.slot] = RowOutcome(p.row, "duplicate", p.record_id, head.revision, p.warnings)
            else:
                changed_heads[p.record_id] = head
        kept = self._decided_for_subject(changed_heads) if changed_heads else {}
        corrected = self._corrected_away(changed_heads, batch.prepared) if changed_heads else {}
        for p in batch.prepared:
            before = changed_heads.get(p.record_id)
            if before is None:
                continue
            if p.record_id in corrected:
                # The source's own system still holds what an objection corrected (its table was
                # never fixed): re-exported, it must not quietly undo a decision taken under the
                # objection procedure (seed 001 附件2; DOMAIN §5). Kept as is, and the source told.
                warning = Problem("W_CORRECTED_VALUE", "", f"this row repeats what revision {corrected[p.record_id]} "
                                  "corrected after an objection; the correction stays: correct the source system too",
                                  p.row, warning=True)
                outcomes[p.slot] = RowOutcome(p.row, "duplicate", p.record_id, before.revision, (*p.warnings, warning))
                continue
            status = kept.get(p.record_id, "active")
            changed = pb.RecordBody()
            changed.ParseFromString(p.body)
            changed.revision = before.revision + 1
            changed.status = status
            if status == "active":
                changed.reason = SOURCE_CHANGE_REASON
            elif status in ("repaired", "deleted"):
                changed.reason = f"{SOURCE_CHANGE_REASON}; stays {status}, as decided for its subject"
            else:
                changed.reason = f"{SOURCE_CHANGE_REASON}; stays {status} while its case is open"
            changed.supersedes_digest = before.body_digest.hex()
            pending.append((p, changed.SerializeToString(), before.revision + 1, status))
        if not pending:
            if batch.rejections or meta:
                self._store.records.append([], rejections=batch.rejections, meta=meta)
            return [outcomes[i] for i in range(batch.size)]

        digests = [body_digest(b) for _p, b, _r, _s in pending]
        sigs = self._signer.sign_origin_encoded(digests, now_ms=now)
        dests = self._router.upward(item.routing.up_to, item.routing.rule_id)
        node_id, version, code = self.preparer.node_id, self.preparer.catalog.version, item.code
        rows: list[RecordRow] = []
        outbox: list[OutboxEntry] = []
        for (p, body, revision, status), digest, sig in zip(pending, digests, sigs, strict=True):
            # Positional, in column order (RecordRow): this loop runs once per stored record.
            rows.append(RecordRow(
                p.record_id, revision, code, p.subject_code, p.subject_kind, p.source_unit, node_id, status,
                p.decision_date, body, digest, p.content_digest, signed_record_bytes(body, (sig,)), now, "",
                version))
            if dests:
                outbox.extend(OutboxEntry(p.record_id, revision, d.node_id, d.rule_id) for d in dests)
        batch_digest = hashlib.sha256(b"".join(r.body_digest for r in rows)).hexdigest()
        audit = AuditEvent(actor=node_id, action="import", subject=batch_id,
                           detail={"item": item.code, "source": source, "stored": len(rows), "digest": batch_digest})
        # A fact given twice in this batch with other values is refused (E_DUPLICATE_KEY) for the
        # source to say which is right: the row of it that was taken must not close that at once.
        disputed = {r.record_key for r in batch.rejections if r.code == "E_DUPLICATE_KEY"}
        closing = [(item.code, p.source_unit, k, p.record_id) for p, _b, _r, _s in pending
                   for k in (p.key, row_key(source, p.row)) if k not in disputed]
        also = [self._conflicts.observer([fact_of(item, r.body) for r in rows])] if self._conflicts else []
        # Revisions were numbered from heads read before the write transaction: if another writer
        # (an adapter, the downward channel, the lifecycle) stored one of those numbers meanwhile,
        # the whole batch is refused (E_REVISION_RACE, retryable) rather than a changed fact
        # reported as a duplicate while the adapter's position moves past it.
        result = self._store.records.append(rows, outbox=outbox, audit=[audit], rejections=batch.rejections,
                                            close_rejections=closing, meta=meta, also=also, conflicts_abort=True)
        stored = set(result.stored)
        for p, _body, revision, _status in pending:
            # Not stored: the same bytes were stored by another writer meanwhile (a true duplicate).
            outcome = "accepted" if (p.record_id, revision) in stored else "duplicate"
            outcomes[p.slot] = RowOutcome(p.row, outcome, p.record_id, revision, p.warnings)
        return [outcomes[i] for i in range(batch.size)]

    def _corrected_away(self, heads: Mapping[str, Head], prepared: Sequence[Prepared]) -> dict[str, int]:
        """Records whose incoming content is one a later correction replaced, with that revision.

        Only the content is compared: a source that changes a value back of its own accord (no
        correction in between) makes a revision as usual.
        """
        incoming = {p.record_id: p.content_digest for p in prepared if p.record_id in heads}
        out: dict[str, int] = {}
        for rid, trail in self._store.records.trails([r for r, h in heads.items() if h.revision > 1]).items():
            said = [t.revision for t in trail if t.content_digest == incoming.get(rid)]
            fix = next((t.revision for t in trail if said and t.revision > said[-1] and t.status == "corrected"), None)
            if fix is not None:
                out[rid] = fix
        return out

    def _decided_for_subject(self, heads: Mapping[str, Head]) -> dict[str, str]:
        """The records among ``heads`` whose state was decided for their subject, with that state.

        A source re-reporting a changed fact makes its next revision, but does not undo what was
        decided for the subject meanwhile: a repaired record (信用修复, seed 000 第十八条(三): 信用修复申请进行核实、办理) stays
        out of public disclosure, a commendation deleted at its subject's request (seed 003 篇5
        第二十九条) stays deleted. Departments re-export whole tables, so any edit (a remark)
        would otherwise publish the record again.
        """
        # A record under objection or under the platform's check keeps its mark (or its suspension)
        # until the case ends: a changed export is the source's news, not the case's outcome
        # (001 附件2 六(一); seed 003 篇2 第三十三条), and the case's answer revises on top of it.
        out = {rid: h.status for rid, h in heads.items() if h.status in _KEPT_WHILE_CHANGED}
        for rid, h in heads.items():
            if h.status == "deleted":  # rare: one read each
                row = self._store.records.get(rid, h.revision)
                if row is not None and decode_body(row.body).reason.startswith(ON_REQUEST):
                    out[rid] = "deleted"
        return out
