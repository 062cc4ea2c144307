"""The downward channel over amqp: the parent publishes to ``down.<child>``, the child consumes it.

Revisions travel through the forwarder (outbox rows addressed to a child, published to
``credit.down`` with the child's id as routing key, confirmed like upward batches). Catalogue
releases and notices are state, not rows: ``DownwardPublisher`` (a parent's extension) publishes
the current release to each child that has not had it and the notices kept for each child after
the last one published, and records what it published in ``meta`` only after the broker's
confirm. A crash in between re-publishes, and the child recognises what it already applied.

``DownwardHandler`` is the child's consumer handler: records batches and ``DownMessage``\\ s from
its parent (the broker-checked ``user_id``), applied through ``node.downward``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from node.backoff import Backoff
from node.errors import NodeError
from node.inbox import Receipt
from node.records import decode_body, pb
from node.releases import version_key
from node.runtime import ThreadExtension
from node.transport.amqp import AmqpPublisher
from node.transport.amqp_consumer import AmqpMessage
from node.transport.amqp_inbound import unexpected
from node.transport.amqp_topology import DOWN_EXCHANGE, BrokerAddress, down_key
from node.transport.wire import DOWN, RECORDS, decode, fpb

if TYPE_CHECKING:
    from node.app import Node
    from node.downward import Downward

__all__ = ["DownwardHandler", "DownwardPublisher", "refused_notices"]

log = logging.getLogger(__name__)

RELEASE_SENT = "downward.release_sent."  # + child id
NOTICES_SENT = "downward.notices_sent."  # + child id
IDLE_S = 1.0


class DownwardHandler:
    def __init__(self, node: Node, downward: Downward) -> None:
        self._node = node
        self._downward = downward

    def handle(self, message: AmqpMessage) -> bytes | None:
        if message.kind == RECORDS:
            down = fpb.DownMessage(records=message.body)
        elif message.kind == DOWN:
            down = decode(fpb.DownMessage, message.body)
        else:
            raise unexpected(message.kind)
        log.info("downward: %s", self._downward.apply(message.sender, down))
        return None

    def dead_letter(self, message: AmqpMessage, code: str, text: str) -> None:
        # Kept as a DownMessage whatever its kind, as the grpc pull keeps it, so `outbox replay`
        # can apply it again through Downward.
        payload = message.body
        if message.kind == RECORDS:
            with contextlib.suppress(NodeError):  # undecodable: kept as it came, for the operator
                payload = fpb.DownMessage(records=decode(pb.SubmitRequest, message.body)).SerializeToString()
        self._node.store.inbound.add(message.sender, code, text, payload)


class DownwardPublisher(ThreadExtension):
    """Releases and notices to children over the parent's own broker (a node extension)."""

    name = "downward publisher"

    def __init__(self, node: Node, downward: Downward, address: BrokerAddress, backoff: Backoff, *,
                 idle_s: float = IDLE_S) -> None:
        self._node = node
        self._downward = downward
        self._address = address
        self._backoff = backoff
        self._idle_s = idle_s
        super().__init__()

    def _run(self) -> None:
        children = [c.id for c in self._node.config.children]
        publishers = {c: AmqpPublisher(peer=c, address=self._address, identity=self._node.identity,
                                       exchange=DOWN_EXCHANGE, routing_key=down_key(c)) for c in children}
        failures = dict.fromkeys(children, 0)
        due = dict.fromkeys(children, 0.0)
        try:
            while not self._stop.is_set():
                for child, publisher in publishers.items():
                    # Each child on its own: one child's missing queue or refused key used to
                    # restart the round at the first child, and the children after it heard nothing.
                    if self._stop.is_set() or time.monotonic() < due[child]:
                        continue
                    try:
                        self.publish_once(child, publisher)
                        failures[child] = 0
                    except NodeError as exc:
                        failures[child] += 1
                        wait_s = self._backoff.delay(failures[child])
                        due[child] = time.monotonic() + wait_s
                        log.warning("downward publisher: %s: %s; again in %.1fs", child, exc, wait_s)
                self._stop.wait(self._idle_s)
        finally:
            for publisher in publishers.values():
                publisher.close()

    def publish_once(self, child: str, publisher: AmqpPublisher) -> int:
        meta = self._node.store.meta
        sent = 0
        release = self._downward.releases.current_release()
        if release is not None:
            had = meta.get(RELEASE_SENT + child, "") or ""
            if not had or version_key(release.version) > version_key(had):
                publisher.send_message(fpb.DownMessage(catalog=release).SerializeToString(), kind=DOWN)
                meta.put(RELEASE_SENT + child, release.version)
                sent += 1
        cursor = int(meta.get(NOTICES_SENT + child, "0") or 0)
        notices, new_cursor = self._downward.notices_for(child, cursor)
        for notice in notices:
            publisher.send_message(fpb.DownMessage(notice=notice).SerializeToString(), kind=DOWN)
            sent += 1
        if new_cursor != cursor:
            meta.put(NOTICES_SENT + child, str(new_cursor))
        return sent


def refused_notices(downward: Downward) -> Callable[[str, Sequence[tuple[Receipt, pb.SignedRecord]]], None]:
    """``UpwardHandler.on_refused``: tell the source of each record a child sent that was refused."""

    def note(sender: str, refused: Sequence[tuple[Receipt, pb.SignedRecord]]) -> None:
        for receipt, record in refused:
            try:
                body = decode_body(record.body)
                origin, unit = body.origin_node, body.source_unit
            except NodeError:
                origin, unit = sender, ""
            problem = receipt.problem
            downward.raise_notice(sender, to_node=origin, source_unit=unit, record_id=receipt.record_id,
                                  revision=receipt.revision, code=problem.code if problem else "E_REJECTED",
                                  message=problem.message if problem else "refused upstream")

    return note
