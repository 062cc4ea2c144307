"""Asking the parent to compare digests, over the transport the records use (``node.reconciliation``).

- ``grpc``: the parent's ``Federation.Reconcile`` (unary, mutual TLS);
- ``amqp``: a request published to ``credit.up`` with routing key ``<me>.reconcile`` — it queues
  behind this node's record batches, so the parent answers once it has stored what was sent
  before — and the reply read from RabbitMQ's direct reply-to pseudo-queue
  (``amq.rabbitmq.reply-to``), which needs no queue of our own and no permission to declare one.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import TYPE_CHECKING, Any

import grpc

from node.errors import PeerUnavailableError, UsageError
from node.transport.amqp_topology import DIRECT_REPLY_TO
from node.transport.wire import RECONCILE, decode, fpb, frpc

if TYPE_CHECKING:
    from pika.adapters.blocking_connection import BlockingConnection

    from node.app import Node
    from node.reconciliation import ReconcilePeer

__all__ = ["AmqpReconcilePeer", "GrpcReconcilePeer", "peer_for"]

REPLY_TO = DIRECT_REPLY_TO


class GrpcReconcilePeer:
    def __init__(self, node: Node, timeout_s: float = 120.0) -> None:
        from node.transport.grpc_client import open_channel

        parent = node.config.parent
        assert parent is not None
        self._channel = open_channel(parent.target, node.identity, server_name=parent.server_name or None,
                                     node_id=parent.id)
        self._stub = frpc.FederationStub(self._channel)  # type: ignore[no-untyped-call]
        self._timeout_s = timeout_s

    def ask(self, request: fpb.ReconcileRequest) -> fpb.ReconcileResponse:
        from node.transport.grpc_client import error_from_rpc

        try:
            response: fpb.ReconcileResponse = self._stub.Reconcile(request, timeout=self._timeout_s)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None
        return response

    def close(self) -> None:
        self._channel.close()


class AmqpReconcilePeer:
    def __init__(self, node: Node, timeout_s: float = 120.0) -> None:
        from node.transport.amqp import amqp_errors, connect
        from node.transport.amqp_topology import parse_amqp_url

        parent = node.config.parent
        assert parent is not None
        self._me = node.config.id
        self._timeout_s = timeout_s
        self._replies: dict[str, bytes] = {}
        self._connection: BlockingConnection = connect(parse_amqp_url(parent.target, parent.server_name),
                                                       node.identity, name="reconcile")
        try:
            with amqp_errors("opening the reconciliation channel"):
                self._channel = self._connection.channel()
                self._channel.basic_consume(REPLY_TO, self._on_reply, auto_ack=True)
        except BaseException:
            # Nobody holds this peer yet to close it: the connection (and its TLS socket) would be
            # left open, one more with every failed round of the schedule.
            with contextlib.suppress(Exception):
                self._connection.close()
            raise

    def _on_reply(self, _ch: Any, _method: Any, props: Any, body: bytes) -> None:
        self._replies[props.correlation_id or ""] = body

    def ask(self, request: fpb.ReconcileRequest) -> fpb.ReconcileResponse:
        from node.transport.amqp import amqp_errors, publish
        from node.transport.amqp_topology import UP_EXCHANGE, up_key

        correlation = uuid.uuid4().hex
        with amqp_errors("asking the parent to reconcile"):
            publish(self._channel, exchange=UP_EXCHANGE, routing_key=up_key(self._me, "reconcile"),
                    body=request.SerializeToString(), user_id=self._me, kind=RECONCILE, reply_to=REPLY_TO,
                    correlation_id=correlation, persistent=False)
            deadline = time.monotonic() + self._timeout_s
            while correlation not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PeerUnavailableError(f"the parent did not answer within {self._timeout_s:g}s "
                                               "(is it running and consuming its queue?)")
                self._connection.process_data_events(time_limit=min(left, 1.0))
        return decode(fpb.ReconcileResponse, self._replies.pop(correlation))

    def close(self) -> None:
        from node.transport.amqp import amqp_errors

        if self._connection.is_open:
            try:
                with amqp_errors("closing"):
                    self._connection.close()
            except PeerUnavailableError:
                pass  # the connection broke: nothing to close


def peer_for(node: Node) -> ReconcilePeer:
    parent = node.config.parent
    if parent is None:
        raise UsageError("this node has no parent to reconcile with")
    if parent.transport == "amqp":
        return AmqpReconcilePeer(node)
    return GrpcReconcilePeer(node)
