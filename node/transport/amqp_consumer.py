"""Consuming a queue on a broker: prefetch window, ack after commit, poison messages dead-lettered.

One thread, one connection (pika's BlockingConnection is not thread-safe). Deliveries are
collected by pika's callback and handled outside it, so a handler may take its time and the
consumer may back off without re-entering pika. For each message:

- the sender is the ``user_id`` property, which RabbitMQ has checked against the connection's
  user (the certificate CN): a message without one is refused;
- the handler runs; it returns after its transaction committed, and only then is the message
  acknowledged (a crash in between means a redelivery, which the idempotent inbox absorbs);
- a non-retryable failure (undecodable payload, unknown message type …) or a message that failed
  ``max_deliveries`` times (quorum queues count them in ``x-delivery-count``) is written to the
  store's inbound dead letters with its reason and then acknowledged, never requeued for ever;
- a retryable failure (the store is busy, …) requeues the message after a backoff.

If the connection drops, or the broker cancels the consumer (the queue was deleted, or a quorum
queue lost its leader), the consumer reconnects with a growing backoff until stopped: a queue that
is missing is reported at each try, and consumed again once the operator has put it back.
Unacknowledged messages return to the queue and are delivered again.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import pika.exceptions as px
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from node.backoff import Backoff
from node.errors import NodeError, TransportError
from node.identity import LoadedIdentity
from node.transport.amqp import amqp_errors, connect, publish
from node.transport.amqp_topology import DIRECT_REPLY_TO, BrokerAddress

__all__ = ["AmqpConsumer", "AmqpMessage", "MessageHandler"]

log = logging.getLogger(__name__)

MAX_DELIVERIES = 5
COUNTED_MESSAGES = 10_000  # redeliveries remembered locally, for queues that do not count them


@dataclass(frozen=True)
class AmqpMessage:
    sender: str  # node id vouched for by the broker (user_id == the login's certificate CN)
    kind: str  # the ``type`` property
    body: bytes
    deliveries: int  # 1 on the first delivery
    reply_to: str | None = None
    correlation_id: str | None = None


class MessageHandler(Protocol):
    def handle(self, message: AmqpMessage) -> bytes | None:
        """Process one message (commit before returning); a reply body for requests, else None."""
        ...

    def dead_letter(self, message: AmqpMessage, code: str, text: str) -> None:
        """Keep a message that will not be processed, with its reason (store.inbound)."""
        ...


def _deliveries(properties: Any, redelivered: bool) -> int:
    """How many times the message has been delivered, this time included."""
    if not redelivered:
        # A first delivery: a count the publisher wrote into its own headers would have a message
        # that fails once, retryably, dead-lettered at once.
        return 1
    headers = getattr(properties, "headers", None) or {}
    count = headers.get("x-delivery-count")  # set by a quorum queue on redelivery
    if isinstance(count, int):
        return count + 1
    return 2


class AmqpConsumer:
    """A node extension (``start``/``stop``) consuming ``queue`` with ``handler``."""

    def __init__(self, *, name: str, address: BrokerAddress, identity: LoadedIdentity, queue: str,
                 handler: MessageHandler, prefetch: int = 4, max_deliveries: int = MAX_DELIVERIES,
                 backoff: Backoff | None = None,
                 on_state: Callable[[str], None] | None = None,
                 on_contact: Callable[[str], None] | None = None) -> None:
        self.name = name
        self._on_contact = on_contact or (lambda _node_id: None)  # Admin.Status: who was last heard from
        self._address = address
        self._identity = identity
        self._queue = queue
        self._handler = handler
        self._prefetch = max(1, prefetch)
        self._max_deliveries = max_deliveries
        self._backoff = backoff or Backoff(min_s=0.5, max_s=15.0)
        self._on_state = on_state or (lambda _state: None)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0
        self._outages = 0  # consecutive lost consumptions: a queue missing for long is retried less often
        self._counted: OrderedDict[tuple[str, str], int] = OrderedDict()

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            connection = self._backoff.reconnecting(self._connect, self._stop, self._log_retry)
            if connection is None:
                return
            try:
                self._consume(connection)
            except TransportError as exc:
                self._outages += 1
                wait_s = self._backoff.delay(self._outages)
                log.warning("%s: %s; reconnecting in %.1fs", self.name, exc, wait_s)
                self._on_state("disconnected")
                self._stop.wait(wait_s)
            finally:
                _close(connection)

    def _log_retry(self, exc: BaseException, wait_s: float) -> None:
        self._on_state("disconnected")
        log.warning("%s: %s; retrying in %.1fs", self.name, exc, wait_s)

    def _connect(self) -> BlockingConnection:
        return connect(self._address, self._identity, name=self.name)

    # --- consuming ----------------------------------------------------------------------------
    def _consume(self, connection: BlockingConnection) -> None:
        pending: list[tuple[Any, Any, bytes]] = []
        cancelled: list[object] = []
        with amqp_errors(f"consuming {self._queue}"):
            channel = connection.channel()
            channel.basic_qos(prefetch_count=self._prefetch)
            # Without this, a consumer the broker cancelled leaves a channel that receives nothing
            # for ever, and the queue, once put back, is never consumed again.
            channel.add_on_cancel_callback(cancelled.append)
            channel.basic_consume(self._queue, lambda _ch, method, props, body: pending.append((method, props, body)))
            self._outages = 0
            self._on_state("connected")
            log.info("%s: consuming %s", self.name, self._queue)
            while not self._stop.is_set():
                connection.process_data_events(time_limit=0.5)
                if cancelled and not pending:
                    raise TransportError(f"the broker cancelled our consumer of queue {self._queue!r} (deleted, "
                                         "or its quorum lost)", code="E_AMQP_CONSUMER_CANCELLED")
                while pending and not self._stop.is_set():
                    method, props, body = pending.pop(0)
                    self._deliver(connection, channel, method, props, body)

    def _deliver(self, connection: BlockingConnection, channel: BlockingChannel, method: Any, props: Any,
                 body: bytes) -> None:
        message = AmqpMessage(sender=props.user_id or "", kind=props.type or "", body=body,
                              deliveries=self._count(props, method.redelivered, body), reply_to=props.reply_to,
                              correlation_id=props.correlation_id)
        tag = method.delivery_tag
        if not message.sender:
            self._give_up(channel, tag, message, "E_SENDER_UNKNOWN",
                          "message without user_id: the sender cannot be established")
            return
        self._on_contact(message.sender)
        try:
            reply = self._handler.handle(message)
        except Exception as exc:  # the handler's failure decides the message's fate, whatever it is
            error = exc if isinstance(exc, NodeError) else None
            code = error.code if error else "E_INTERNAL"
            text = error.message if error else f"{type(exc).__name__}: {exc}"
            if error is None:
                log.exception("%s: handling a message from %s failed", self.name, message.sender)
            if (error is not None and not error.retryable) or message.deliveries >= self._max_deliveries:
                reason = text if message.deliveries < self._max_deliveries else (
                    f"failed {message.deliveries} times, last: {text}")
                self._give_up(channel, tag, message, code, reason)
            else:
                self._failures += 1
                log.warning("%s: message from %s failed (%s), requeued", self.name, message.sender, exc)
                connection.sleep(self._backoff.delay(self._failures))
                channel.basic_nack(tag, requeue=True)
            return
        self._failures = 0
        if reply is not None and message.reply_to and message.reply_to.startswith(DIRECT_REPLY_TO + "."):
            # Replies go to the requester's direct reply-to pseudo-queue via the default exchange,
            # never to a queue the requester names: this node's write on the default exchange
            # would put its answer in any queue of the broker (another region's, a child's).
            publish(channel, exchange="", routing_key=message.reply_to, body=reply,
                    user_id=self._identity.node_id, kind=message.kind + ".reply",
                    correlation_id=message.correlation_id, persistent=False, mandatory=False)
        channel.basic_ack(tag)

    def _count(self, props: Any, redelivered: bool, body: bytes) -> int:
        """Deliveries of this message so far: the queue's count, or ours where it keeps none.

        A classic queue (one an operator declared by hand) sets no ``x-delivery-count``: without
        a count of our own, a message that kept failing was requeued for ever. Keyed by sender,
        so a child reusing another's message ids cannot hasten the other's dead letters; a message
        without an id (any client may leave it out) is known by its body's digest instead.
        """
        counted = _deliveries(props, redelivered)
        message_id = getattr(props, "message_id", None)
        identity = f"id:{message_id}" if message_id else "sha256:" + hashlib.sha256(body).hexdigest()
        key = (props.user_id or "", identity)
        seen = self._counted.pop(key, 0) + 1 if redelivered else 1
        self._counted[key] = seen
        while len(self._counted) > COUNTED_MESSAGES:
            self._counted.popitem(last=False)
        return max(counted, seen)

    def _give_up(self, channel: BlockingChannel, tag: int, message: AmqpMessage, code: str, text: str) -> None:
        """Dead-letter the message in the store, then ack; if the store fails too, requeue it."""
        try:
            self._handler.dead_letter(message, code, text)
        except NodeError as exc:
            log.error("%s: cannot dead-letter a message (%s); requeued", self.name, exc)
            self._stop.wait(self._backoff.delay(2))
            channel.basic_nack(tag, requeue=True)
            return
        log.warning("%s: message from %s dead-lettered: %s: %s", self.name, message.sender, code, text)
        channel.basic_ack(tag)


def _close(connection: BlockingConnection) -> None:
    try:
        if connection.is_open:
            connection.close()
    except (px.AMQPError, OSError):
        pass  # the connection is already broken; the broker requeues what was unacknowledged
