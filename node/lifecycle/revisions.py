"""Lifecycle revisions: every change to a record is a NEW signed revision by the node that decides it.

A stored revision is never updated (DESIGN §2.8). Marking a record 异议正在处理, correcting it,
archiving it after its disclosure period, repairing or deleting it all work the same way: the
deciding node copies the head body, changes status, reason and (for a correction) the fields,
links it to the head (``supersedes_digest``), names itself ``origin_node``, signs it with an
ORIGIN signature, and stores it with its outbox rows in ONE transaction, exactly like a record
ingested here (docs/decisions/lifecycle-revisions.md). ``source_unit`` stays: the fact is still
the source unit's; the chain says who decided the change.

Routes: up to the parent as the item's routing rule says (``Router.upward``), and down to the
child the record came from (the first revision received from a node other than the parent):
that child forwards it on towards the source department, so the source learns of every change
made above it. A downward delivery is an outbox row whose destination is the child, rule
``down-to-source`` (``node/downward.py``: the forwarder delivers it over the downward channel and
the child passes it on the same way).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, select

from node.catalog import Catalog
from node.conflicts import Conflicts, fact_of
from node.errors import ConflictError
from node.records import body_digest, content_digest, decode_body, pb
from node.routing import DOWN_RULE, Router
from node.signing import Signer
from node.store import AppendResult, AuditEvent, OutboxEntry, RecordRow, Store
from node.store._sql import chunks, translated
from node.store.tables import record_heads, record_revisions
from node.validation import Checked

__all__ = ["Change", "Reviser"]


@dataclass(frozen=True)
class Change:
    """Supersede ``head`` (the current revision) with one of status ``status`` because ``reason``.

    ``checked`` carries new field values (a correction), already validated against the
    catalogue; ``None`` keeps the head's fields.
    """

    head: RecordRow
    status: str
    reason: str
    checked: Checked | None = None


class Reviser:
    """Builds, signs and stores lifecycle revisions for one node."""

    def __init__(self, *, node_id: str, catalog: Catalog, signer: Signer, store: Store, router: Router,
                 clock: Callable[[], int], conflicts: Conflicts | None = None) -> None:
        self.node_id = node_id
        self.catalog = catalog
        self._signer = signer
        self._store = store
        self._router = router
        self._clock = clock
        self._conflicts = conflicts  # where this node keeps the facts index (app.conflict_detection)

    # --- building (pure) ------------------------------------------------------------------------
    def build(self, changes: Sequence[Change], now_ms: int) -> list[RecordRow]:
        """The new revisions, signed as one Merkle batch (one Ed25519 operation)."""
        bodies: list[bytes] = []
        digests: list[bytes] = []
        for ch in changes:
            body, digest = self._body(ch, now_ms)
            bodies.append(body)
            digests.append(digest)
        sigs = self._signer.sign_origin(bodies, now_ms=now_ms) if bodies else []
        rows: list[RecordRow] = []
        for ch, body, digest, sig in zip(changes, bodies, digests, sigs, strict=True):
            h, c = ch.head, ch.checked
            rows.append(RecordRow(
                record_id=h.record_id, revision=h.revision + 1, item=h.item,
                subject_code=c.subject_code if c else h.subject_code,
                subject_kind=c.subject_kind if c else h.subject_kind, source_unit=h.source_unit,
                origin_node=self.node_id, status=ch.status,
                decision_date=c.decision_date if c else h.decision_date, body=body,
                body_digest=body_digest(body), content_digest=digest,
                signed=pb.SignedRecord(body=body, chain=[sig]).SerializeToString(), received_at_ms=now_ms,
                received_from="", catalog_version=self.catalog.version if c else h.catalog_version))
        return rows

    def _body(self, ch: Change, now_ms: int) -> tuple[bytes, bytes]:
        head = ch.head
        body = pb.RecordBody()
        body.CopyFrom(decode_body(head.body))
        body.revision = head.revision + 1
        body.status = ch.status
        body.reason = ch.reason
        body.supersedes_digest = head.body_digest.hex()
        body.origin_node = self.node_id
        body.reported_at_ms = now_ms
        digest = head.content_digest
        c = ch.checked
        if c is not None:
            del body.fields[:]
            for name, value in c.fields:
                body.fields.add(name=name, value=value)
            body.subject_code, body.subject_kind = c.subject_code, c.subject_kind
            body.subject_name, body.decision_date = c.subject_name, c.decision_date
            body.catalog_version = self.catalog.version
            digest = content_digest(head.item, head.source_unit, c.fields)
        return body.SerializeToString(), digest

    # --- routes -------------------------------------------------------------------------------
    def routes(self, rows: Sequence[RecordRow], *, down: bool = True) -> list[OutboxEntry]:
        """Outbox rows: up by the item's routing rule, and down to the child each record came from."""
        out: list[OutboxEntry] = []
        children = self.children_of([r.record_id for r in rows]) if down else {}
        for row in rows:
            routing = self.catalog.item(row.item).routing
            out.extend(OutboxEntry(row.record_id, row.revision, d.node_id, d.rule_id)
                       for d in self._router.upward(routing.up_to, routing.rule_id))
            child = children.get(row.record_id)
            if child:
                out.append(OutboxEntry(row.record_id, row.revision, child, DOWN_RULE))
        return out

    def children_of(self, record_ids: Sequence[str]) -> dict[str, str]:
        """The node each record first came from, when that is not the parent (i.e. a child)."""
        r = record_revisions.c
        parent = self._router.parent_id or ""
        found: dict[str, tuple[int, str]] = {}
        with translated("finding where records came from"), self._store.engine.connect() as conn:
            for chunk in chunks(sorted(set(record_ids))):
                stmt = (select(r.record_id, r.revision, r.received_from)
                        .where(r.record_id.in_(list(chunk)), r.received_from != "", r.received_from != parent))
                for rid, rev, sender in conn.execute(stmt):
                    if rid not in found or rev < found[rid][0]:
                        found[rid] = (rev, sender)
        return {rid: sender for rid, (_rev, sender) in found.items()}

    # --- storing ------------------------------------------------------------------------------
    def commit(self, changes: Sequence[Change], *, action: str, subject: str,
               detail: dict[str, object] | None = None, down: bool = True,
               also: Sequence[Callable[[Connection, list[RecordRow]], None]] = (),
               exact: bool = True, now_ms: int | None = None) -> tuple[list[RecordRow], AppendResult]:
        """Sign and store ``changes`` with their outbox rows and one audit event, atomically.

        ``also`` callbacks run in the same transaction (case tables). With ``exact`` every
        revision must become its record's head, or nothing is stored (``E_REVISION_RACE``: the
        record changed meanwhile, e.g. its source corrected it; read it again and retry).
        """
        now = self._clock() if now_ms is None else now_ms
        rows = self.build(changes, now)
        if not rows:
            return [], AppendResult([], [], [])
        digest = hashlib.sha256(b"".join(r.body_digest for r in rows)).hexdigest()
        audit = AuditEvent(actor=self.node_id, action=action, subject=subject,
                           detail={**(detail or {}), "revisions": len(rows), "digest": digest,
                                   **({"record_id": rows[0].record_id, "revision": rows[0].revision}
                                      if len(rows) == 1 else {})})
        callbacks = [_guard(rows)] if exact else []
        if self._conflicts is not None:
            # A correction made here (an objection answered for a source reporting to this node)
            # changes what its unit says, as one arriving from a child does. Before the ``also``
            # callbacks, which may append to the audit log: detection's lock is taken before the
            # chain's in every transaction, or two would each hold one and wait for the other.
            callbacks.append(self._conflicts.observer(
                [fact_of(self.catalog.item(r.item), r.body) for r in rows],
                bodies={(r.record_id, r.revision): r.body_digest for r in rows}))
        callbacks.extend(_bind(cb, rows) for cb in also)
        result = self._store.records.append(rows, outbox=self.routes(rows, down=down), audit=[audit],
                                            also=callbacks, now_ms=now)
        return rows, result


def _bind(cb: Callable[[Connection, list[RecordRow]], None], rows: list[RecordRow]) -> Callable[[Connection], None]:
    return lambda conn: cb(conn, rows)


def _guard(rows: Sequence[RecordRow]) -> Callable[[Connection], None]:
    """Inside the append transaction: each new revision is its record's head, or roll back."""
    want = {r.record_id: (r.revision, r.body_digest) for r in rows}

    def check(conn: Connection) -> None:
        h = record_heads.c
        seen: dict[str, tuple[int, bytes]] = {}
        for chunk in chunks(sorted(want)):
            for rid, rev, digest in conn.execute(
                    select(h.record_id, h.revision, h.body_digest).where(h.record_id.in_(list(chunk)))):
                seen[rid] = (int(rev), bytes(digest))
        moved = sorted(rid for rid, w in want.items() if seen.get(rid) != w)
        if moved:
            raise ConflictError(f"record {moved[0]} changed meanwhile (another revision {seen.get(moved[0], (0,))[0]} "
                                "is its head); read it again and retry", code="E_REVISION_RACE")
    return check
