"""Reconciliation: a child and its parent compare what they hold and the child replays what is missing.

Delivery is at-least-once and the outbox is durable, so nothing should ever be missing; this is
the check that proves it, and the repair if something went wrong outside the protocol (a parent
restored from an old backup, a store edited by hand, a bug). Two rounds, over the same transport
as the records (``Federation.Reconcile`` over grpc, a request/reply on the broker over amqp):

1. the child sends a digest per (item, day) bucket of the revisions it holds for the parent
   (``node.store.digests``); the parent answers with its own side of each bucket that differs;
2. for the differing buckets (in chunks) the parent lists the (record id, revision, body digest)
   it holds; the child re-enqueues to its outbox every revision the parent lacks — unless a
   delivery of it is still under way — and reports revisions only the parent holds, and revisions
   both hold with different bodies (which no replay can fix: an operator's matter).

Round 1 also carries the child's refusal tallies (``node.tallies``): refused rows stay where they
were refused, their counts go up so the nodes above can assess the units below them.

``ReconcileSchedule`` runs it every ``forwarding.reconcile_every_s`` seconds; the CLI on demand.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from node.errors import NodeError, UsageError
from node.routing import Router
from node.runtime import ThreadExtension
from node.store.deliveries import Deliveries
from node.store.digests import Bucket, HeldDigests, Scope
from node.store.records import OutboxEntry
from node.tallies import accept, snapshot
from node.transport.wire import fpb

if TYPE_CHECKING:
    from node.app import Node

__all__ = ["ReconcilePeer", "ReconcileReport", "ReconcileSchedule", "answer", "reconcile_with_parent"]

log = logging.getLogger(__name__)

FIRST_ROUND_AFTER_S = 300.0
DETAIL_CHUNK = 50  # buckets whose keys are asked for in one request (a bucket holds a day of an item)


class ReconcilePeer(Protocol):
    def ask(self, request: fpb.ReconcileRequest) -> fpb.ReconcileResponse: ...

    def close(self) -> None: ...


@dataclass
class ReconcileReport:
    parent: str
    buckets: int = 0
    differing: list[Bucket] = field(default_factory=list)
    missing: int = 0  # revisions the parent lacks
    replayed: int = 0  # of those, re-enqueued now
    in_flight: int = 0  # of those, already on their way
    dead_lettered: int = 0  # of those, dead letters waiting for an operator (outbox replay), not re-sent
    parent_only: list[tuple[str, int]] = field(default_factory=list)
    conflicting: list[tuple[str, int]] = field(default_factory=list)
    tallies_sent: int = 0  # refusal counts per (origin, source unit, item, day)
    tallies_kept: int = 0
    tallies_ignored: int = 0  # by the parent: not the child's to send (the parent logs why)

    @property
    def in_sync(self) -> bool:
        return not self.differing

    def as_dict(self) -> dict[str, object]:
        return {"parent": self.parent, "buckets": self.buckets, "in_sync": self.in_sync,
                "differing": [{"item": i, "day": d} for i, d in self.differing], "missing": self.missing,
                "replayed": self.replayed, "in_flight": self.in_flight, "dead_lettered": self.dead_lettered,
                "parent_only": [{"record_id": r, "revision": v} for r, v in self.parent_only],
                "conflicting": [{"record_id": r, "revision": v} for r, v in self.conflicting],
                "tallies": {"sent": self.tallies_sent, "kept": self.tallies_kept, "ignored": self.tallies_ignored}}


def child_scope(node: Node) -> tuple[Scope, dict[str, str]]:
    """What this node holds for its parent, and the rule that sends each such item there."""
    cfg = node.config
    if cfg.parent is None:
        raise UsageError("this node has no parent to reconcile with")
    router = Router(cfg.id, cfg.parent.id)
    rules = {code: item.routing.rule_id for code, item in node.catalog.items.items()
             if router.upward(item.routing.up_to, item.routing.rule_id)}
    return Scope(items=tuple(sorted(rules)), not_from=cfg.parent.id), rules


def answer(node: Node, child: str, request: fpb.ReconcileRequest) -> fpb.ReconcileResponse:
    """The parent's side, for ``child`` (an authenticated, registered child)."""
    scope = Scope(received_from=child)
    digests = HeldDigests(node.store.engine)
    response = fpb.ReconcileResponse()
    if request.HasField("refusals"):
        response.tallies_kept, response.tallies_ignored = accept(node, child, request.refusals)
    # Round 1 is the request without detail, even with no bucket: a child restored onto an empty
    # store holds none, and must hear of everything held here, not be told it is in sync.
    if not request.detail:
        theirs = {(b.item, b.day): (b.count, bytes(b.digest)) for b in request.buckets}
        mine = digests.buckets(scope)
        for key in sorted(set(theirs) | set(mine)):
            if theirs.get(key) != mine.get(key):
                count, digest = mine.get(key, (0, b""))
                response.differing.append(fpb.DayDigest(item=key[0], day=key[1], count=count, digest=digest))
    # A bucket named with a control character holds nothing here (no row's item or day has one);
    # not asked of the store, which would refuse a NUL as an outage.
    detail = [(b.item, b.day) for b in request.detail if (b.item + b.day).isprintable()]
    if detail:
        held = digests.held(scope, detail)
        response.held.extend(fpb.HeldRevision(record_id=rid, revision=rev, body_digest=digest)
                             for (rid, rev), (_bucket, digest) in sorted(held.items()))
        # The same records' revisions that reached this node another way (made here, or from the
        # parent): the child's revision of the same number with another body lost a race with one
        # of them, and replaying it would be refused again (E_REVISION_CONFLICT) every cycle.
        records = {rid for rid, _rev in held}
        response.elsewhere.extend(
            fpb.HeldRevision(record_id=rid, revision=rev, body_digest=digest)
            for (rid, rev), (_bucket, digest) in sorted(digests.held(Scope(), detail).items())
            if rid in records and (rid, rev) not in held)
    return response


def reconcile_with_parent(node: Node, peer: ReconcilePeer) -> ReconcileReport:
    cfg = node.config
    scope, rules = child_scope(node)
    parent = cfg.parent.id if cfg.parent else ""
    digests = HeldDigests(node.store.engine)
    mine = digests.buckets(scope)
    report = ReconcileReport(parent, buckets=len(mine))
    refusals = snapshot(node)
    report.tallies_sent = sum(len(t.days) for t in refusals.tallies)
    first = peer.ask(fpb.ReconcileRequest(buckets=[fpb.DayDigest(item=i, day=d, count=n, digest=h)
                                                   for (i, d), (n, h) in sorted(mine.items())],
                                          refusals=refusals))
    report.tallies_kept, report.tallies_ignored = first.tallies_kept, first.tallies_ignored
    # The parent counts all it received from us, including items our catalogue no longer sends it
    # (a release lowered their up_to): nothing we can replay or change, so not a difference to report.
    report.differing = sorted((b.item, b.day) for b in first.differing if b.item in rules)
    deliveries = Deliveries(node.store.engine)
    # A revision the parent refused for good sits in the dead letters until an operator replays it
    # (`outbox replay`): re-sending it every cycle would only add a dead letter per cycle.
    undelivered = deliveries.undelivered(parent) if report.differing else {}
    for start in range(0, len(report.differing), DETAIL_CHUNK):
        chunk = report.differing[start:start + DETAIL_CHUNK]
        reply = peer.ask(fpb.ReconcileRequest(detail=[fpb.DayDigest(item=i, day=d) for i, d in chunk]))
        theirs = {(h.record_id, h.revision): bytes(h.body_digest) for h in reply.held}
        # Held at the parent, but not from us (an older parent sends none): not missing there.
        elsewhere = {(h.record_id, h.revision): bytes(h.body_digest) for h in reply.elsewhere}
        held = digests.held(scope, chunk)
        missing = [(key, bucket) for key, (bucket, _digest) in held.items()
                   if key not in theirs and key not in elsewhere]
        report.missing += len(missing)
        replay = [(key, bucket) for key, bucket in missing if key not in undelivered]
        report.in_flight += sum(1 for key, _b in missing if undelivered.get(key) == "pending")
        report.dead_lettered += sum(1 for key, _b in missing if undelivered.get(key) == "dead")
        added = deliveries.add([OutboxEntry(rid, rev, parent, rules[bucket[0]]) for (rid, rev), bucket in replay])
        report.replayed += added
        # What another reconciliation queued since `undelivered` was read is on its way too.
        report.in_flight += len(replay) - added
        report.parent_only += sorted(key for key in theirs if key not in held)
        report.conflicting += sorted(key for key, (_b, digest) in held.items()
                                     if theirs.get(key, elsewhere.get(key, digest)) != digest)
    return report


class ReconcileSchedule(ThreadExtension):
    """Reconcile with the parent every ``every_s`` seconds (a node extension)."""

    name = "reconcile schedule"

    def __init__(self, node: Node, peer_factory: Callable[[], ReconcilePeer], every_s: float,
                 on_report: Callable[[ReconcileReport], None] | None = None) -> None:
        self._node = node
        self._peer_factory = peer_factory
        self._every_s = every_s
        self._on_report = on_report
        super().__init__()

    def _run(self) -> None:
        # The first round soon after start, not a whole period later: a node restarted more often
        # than it reconciles (an hour by default) would otherwise never send its tallies nor
        # repair what its parent lacks.
        wait = min(self._every_s, FIRST_ROUND_AFTER_S)
        while not self._stop.wait(wait):
            wait = self._every_s
            try:
                # Made each round, inside the try: over amqp it connects to the broker at once, and a
                # broker down at that moment would otherwise end this thread, and every later round.
                peer = self._peer_factory()
            except NodeError as exc:
                log.warning("reconcile: %s", exc)
                continue
            try:
                report = reconcile_with_parent(self._node, peer)
            except NodeError as exc:
                log.warning("reconcile: %s", exc)
                continue
            finally:
                peer.close()
            log.info("reconcile: %d buckets, %d differing, %d missing, %d replayed, %d refusal tallies kept",
                     report.buckets, len(report.differing), report.missing, report.replayed, report.tallies_kept)
            if self._on_report is not None:
                self._on_report(report)

