"""The downward channel (issue §5): what a parent sends its children, and what a child does with it.

Three kinds of message travel down, each addressed to the node that must act (see
docs/federation.md and docs/decisions/downward-channel.md):

- **revisions** (a correction, a revocation …) of a record, for its source. A parent that makes a
  revision (``revise``) stores it with a delivery to the child the record came from; that child
  stores it and, unless it is the record's origin, passes it on the same way. Records travel in
  ``SubmitRequest`` batches with the hop signature of each forwarding node (rule ``down-to-source``),
  like records going up; a child accepts them only from its parent, with a verified chain, and only
  for records it holds or made.
- **notices** for a source unit (e.g. a record refused upstream): kept in the raising node's
  hash-chained audit log (action ``notice``) with the child they go to, so they are durable and
  served from a cursor; the origin keeps one as a rejection (feedback to the source unit).
- **catalogue releases**, signed by the catalogue authority (``node.releases``): applied only if
  the configured authority signed them, then passed on to the children.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from node.conflicts import fact_of
from node.errors import ConfigError, NodeError, NotAuthorizedError, NotFoundError, UsageError
from node.lifecycle.revisions import Change, Reviser
from node.records import STATUSES, body_digest, content_digest, decode_body, pb
from node.rejection import RejectionRow
from node.releases import Applied, Releases, sign_release
from node.routing import DOWN_RULE, Router
from node.store.audit import AuditEntry
from node.store.deliveries import Deliveries
from node.store.records import AuditEvent, OutboxEntry, RecordRow
from node.transport.wire import decode, fpb

if TYPE_CHECKING:
    import pathlib

    from node.app import Node

__all__ = ["DOWN_RULE", "NOTICE", "Downward", "Revision"]

log = logging.getLogger(__name__)

NOTICE = "notice"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def refused(message: str, code: str) -> NodeError:
    """A downward message this node will never accept: dead-lettered, not retried."""
    err = NotAuthorizedError(message, code=code)
    err.retryable = False
    return err


@dataclass(frozen=True)
class Revision:
    record_id: str
    revision: int
    destinations: list[str]


class Downward:
    def __init__(self, node: Node, *, clock: Callable[[], int] = _now_ms) -> None:
        self._node = node
        self._me = node.config.id
        self._parent = node.config.parent.id if node.config.parent else None
        self._children = {c.id for c in node.config.children}
        self._deliveries = Deliveries(node.store.engine)
        self.releases = Releases(node.config)
        self._clock = clock
        from node.app import conflict_detection  # node.app builds this class: imported late

        # A revision made above changes what its unit says here too: without it, this node's
        # conflicts list would go on showing a difference its parent saw closed.
        self._conflicts = conflict_detection(node.config, node.store)

    # --- routing down -----------------------------------------------------------------------------
    def child_toward(self, record_id: str) -> str | None:
        """The child a record came up through: where anything about it goes down."""
        for _rev, sender in self._deliveries.revisions(record_id):
            if sender in self._children:
                return sender
        return None

    # --- a parent's side ----------------------------------------------------------------------
    def revise(self, record_id: str, *, status: str, reason: str) -> Revision:
        """A new revision of a held record made here, sent up (per routing) and down to its source."""
        if status not in STATUSES:
            raise UsageError(f"status must be one of {', '.join(STATUSES)}", field="status")
        if not reason.strip():  # the reason is part of the signed revision: an empty one explains nothing
            raise UsageError("a revision needs a reason", field="reason")
        node = self._node
        head = node.store.records.get(record_id)
        if head is None:
            raise NotFoundError(f"no record {record_id} is held here", field="record_id")
        # Built, signed, routed and stored as every lifecycle revision is (one place for all).
        reviser = Reviser(node_id=self._me, catalog=node.catalog, signer=node.signer, store=node.store,
                          router=Router(self._me, self._parent), clock=self._clock, conflicts=self._conflicts)
        rows, _stored = reviser.commit([Change(head, status, reason)], action="revise",
                                       subject=f"{record_id}@{head.revision + 1}",
                                       detail={"status": status, "reason": reason})
        return Revision(record_id, rows[0].revision, [e.destination for e in reviser.routes(rows)])

    def raise_notice(self, via: str, *, to_node: str, source_unit: str, record_id: str, revision: int, code: str,
                     message: str, from_node: str | None = None, notice_id: str | None = None) -> str:
        """Keep a notice for the source of a record, to go down to child ``via``; returns its id.

        The id is derived from what the notice says: raised again for the same refusal (a batch
        processed again after a crash between its commit and its acknowledgement), it is the same
        notice, which the source keeps once.
        """
        said = "\x1f".join((to_node, source_unit, record_id, str(revision), code))
        nid = notice_id or f"{self._me}/{hashlib.sha256(said.encode()).hexdigest()[:16]}"
        if NOTICE in self._node.store.audit.actions_on(nid):
            return nid  # the same refusal again (a copy re-published, a batch redelivered): kept once
        detail = {"via": via, "to_node": to_node, "source_unit": source_unit, "record_id": record_id,
                  "revision": revision, "code": code, "message": message, "from_node": from_node or self._me,
                  "at_ms": self._clock()}
        self._node.store.audit.record(AuditEvent(actor=self._me, action=NOTICE, subject=nid, detail=detail))
        return nid

    def notices_for(self, child: str, after_seq: int, limit: int = 500) -> tuple[list[fpb.Notice], int]:
        """Notices going down to ``child`` kept after audit position ``after_seq``, and the new cursor."""
        out: list[fpb.Notice] = []
        cursor = after_seq
        for entry in self._audit_after(after_seq):
            cursor = entry.seq
            d = entry.detail
            if entry.action == NOTICE and d.get("via") == child:
                out.append(fpb.Notice(notice_id=entry.subject, to_node=str(d["to_node"]),
                                      source_unit=str(d["source_unit"]), record_id=str(d["record_id"]),
                                      revision=int(str(d["revision"])), code=str(d["code"]),
                                      message=str(d["message"]), from_node=str(d["from_node"]),
                                      at_ms=int(str(d["at_ms"]))))
                if len(out) >= limit:
                    break
        return out, cursor

    def _audit_after(self, seq: int) -> Iterator[AuditEntry]:
        return self._node.store.audit.iter(after_seq=seq)

    def publish_release(self, path: pathlib.Path) -> Applied:
        """Sign the catalogue at ``path`` as the authority and make it this node's release."""
        if not self._node.config.catalog.authority:
            # Checked before signing: the node would refuse its own release (E_RELEASE_AUTHORITY).
            raise ConfigError(f"catalog.authority is not set, so this node releases no catalogue (the authority "
                              f"sets it to its own id, {self._me}; every node below, to the authority's)",
                              field="catalog.authority")
        release = sign_release(self._node.identity, path, now_ms=self._clock())
        return self.releases.apply(release, self._node.trust, "")

    # --- a child's side: applying what came down ------------------------------------------------
    def apply(self, sender: str, message: fpb.DownMessage) -> str:
        """Act on one downward message from ``sender`` (the authenticated peer). Returns what was done."""
        if sender != self._parent:
            raise refused(f"{sender} is not this node's parent ({self._parent}); downward messages come only "
                          "from the parent", "E_SENDER_NOT_PARENT")
        kind = message.WhichOneof("payload")
        if kind == "records":
            return self._records(sender, decode(pb.SubmitRequest, message.records))
        if kind == "notice":
            return self._notice(sender, message.notice)
        if kind == "catalog":
            applied = self.releases.apply(message.catalog, self._node.trust, self._node.catalog.version)
            return f"release {applied.version} " + ("applied (in use from the next start)" if applied.applied
                                                     else f"not applied: {applied.reason}")
        raise refused("empty downward message", "E_MESSAGE_MALFORMED")

    def _records(self, sender: str, request: pb.SubmitRequest) -> str:
        """Store the revisions of a downward batch; each record this node refuses becomes its own
        inbound dead letter (replayable), so one bad record does not cost the others."""
        node, now = self._node, self._clock()
        certificates = list(request.certificates)
        if certificates:
            node.inbox.learn_certificates(certificates)
        records = list(request.records)
        rows: list[RecordRow] = []
        kept: list[pb.SignedRecord] = []
        entries: list[OutboxEntry] = []
        refusals: list[tuple[pb.SignedRecord, NodeError]] = []
        for rec, err in zip(records, node.verifier.verify(records), strict=True):
            try:
                if err is not None:
                    raise refused(f"a record from {sender} does not verify: {err.message}", err.code)
                row, toward = self._row(sender, rec, now)
            except NodeError as exc:
                if exc.retryable:  # the store failed, not the record: unacknowledged, sent again
                    raise
                refusals.append((rec, exc))
                continue
            rows.append(row)
            kept.append(rec)
            if toward is not None:
                entries.append(OutboxEntry(row.record_id, row.revision, toward, DOWN_RULE))
        stored = held = 0
        if rows:
            audit = AuditEvent(actor=sender, action="receive-down", subject=f"{sender}@{now}",
                               detail={"records": len(rows), "from": sender})
            # Noted in the storing transaction, before its audit append (the lock order of every
            # writer: docs/decisions/store-writes-and-logs.md); only revisions stored with this body.
            also = [self._conflicts.observer(
                [fact_of(node.catalog.item(r.item), r.body) for r in rows],
                bodies={(r.record_id, r.revision): r.body_digest for r in rows})] if self._conflicts else []
            result = node.store.records.append(rows, outbox=entries, audit=[audit], also=also, now_ms=now)
            stored, held = len(result.stored), len(result.duplicates)
            conflicts = set(result.conflicts)
            refusals += [(rec, refused(f"another body is already held for {row.record_id}@{row.revision}",
                                       "E_REVISION_CONFLICT"))
                         for rec, row in zip(kept, rows, strict=True) if (row.record_id, row.revision) in conflicts]
        for rec, why in refusals:
            log.warning("downward: refused a record from %s: %s", sender, why)
            payload = fpb.DownMessage(records=pb.SubmitRequest(records=[rec], certificates=certificates)
                                      .SerializeToString()).SerializeToString()
            node.store.inbound.add(sender, why.code, why.message, payload)
        refused_text = f", {len(refusals)} refused (inbound dead letters)" if refusals else ""
        return f"{stored} revision(s) stored, {held} already held{refused_text}"

    def _row(self, sender: str, rec: pb.SignedRecord, now: int) -> tuple[RecordRow, str | None]:
        """The row to store for one verified downward record, and the child it goes on to (if any)."""
        node = self._node
        body = decode_body(rec.body)
        if rec.chain[-1].signer != sender:
            raise refused(f"last signature is by {rec.chain[-1].signer}, not {sender}", "E_SENDER_MISMATCH")
        # Addressed down the tree: a revision concerns a record that came up through this node.
        if node.store.records.get(body.record_id) is None:
            raise refused(f"{body.record_id} is not held here: not addressed to {self._me}", "E_NOT_ADDRESSED")
        toward = self.child_toward(body.record_id)
        node.catalog.item(body.item)  # an item this node does not know: refused (UnknownItemError)
        row = RecordRow(
            record_id=body.record_id, revision=body.revision, item=body.item, subject_code=body.subject_code,
            subject_kind=body.subject_kind, source_unit=body.source_unit, origin_node=body.origin_node,
            status=body.status or "active", decision_date=body.decision_date, body=bytes(rec.body),
            body_digest=body_digest(rec.body),
            content_digest=content_digest(body.item, body.source_unit, [(f.name, f.value) for f in body.fields]),
            signed=rec.SerializeToString(), received_at_ms=now, received_from=sender,
            catalog_version=body.catalog_version)
        if (unstorable := row.unstorable()) is not None:
            raise refused(f"the body's {unstorable[0]} {unstorable[1]}", "E_BODY_HEADER")
        return row, toward

    def _notice(self, sender: str, notice: fpb.Notice) -> str:
        if notice.to_node == self._me:
            row = RejectionRow(batch_id=notice.notice_id, source=notice.from_node or sender,
                               source_unit=notice.source_unit, item=notice.record_id.split("-", 1)[0], row=0,
                               record_key=notice.record_id, field="", code=notice.code, message=notice.message)
            if self._already(notice.notice_id):
                return f"notice {notice.notice_id} already kept"
            self._node.store.records.append([], rejections=[row], audit=[AuditEvent(
                actor=sender, action="notice-received", subject=notice.notice_id,
                detail={"record_id": notice.record_id, "code": notice.code, "from_node": notice.from_node})])
            return f"notice {notice.notice_id} kept for the source unit"
        via = self.child_toward(notice.record_id)
        if via is None:
            raise refused(f"notice for {notice.to_node} about {notice.record_id}: no child here leads there",
                          "E_NOT_ADDRESSED")
        if self._already(notice.notice_id):
            return f"notice {notice.notice_id} already passed on"
        self.raise_notice(via, to_node=notice.to_node, source_unit=notice.source_unit, record_id=notice.record_id,
                          revision=notice.revision, code=notice.code, message=notice.message,
                          from_node=notice.from_node, notice_id=notice.notice_id)
        return f"notice {notice.notice_id} passed on to {via}"

    def _already(self, notice_id: str) -> bool:
        # Redelivery after a crash: recognise the notice (both actions are in the audit log).
        return bool(self._node.store.audit.actions_on(notice_id) & {NOTICE, "notice-received"})
