"""AMQP over mutual TLS (pika): the connection, error wrapping, and the upward publisher.

A node logs in to its parent's broker with its certificate (EXTERNAL; the user is the CN, i.e. the
node id). Everything pika raises is turned into a :class:`~node.errors.TransportError` here, so the
forwarder and the consumers see only the node's error tree (DESIGN §2.10).

The publisher sends one persistent message per batch (a ``SubmitRequest`` of up to a few thousand
records) with ``mandatory`` set and publisher confirms on: ``BlockingConnection`` waits for the
broker's confirm of each message, which for a quorum queue means the message is on disk. One
confirm round trip per batch instead of per record is what makes the rate (DESIGN §2.6).
"""

from __future__ import annotations

import contextlib
import logging
import re
import ssl
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pika
import pika.exceptions as px
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from node.errors import PeerNotReadyError, PeerUnavailableError, TransportError
from node.identity import LoadedIdentity
from node.tls import amqp_ssl_context
from node.transport.amqp_topology import UP_EXCHANGE, BrokerAddress, up_key
from node.transport.base import QUEUED, REJECTED, Delivery
from node.transport.wire import MAX_MESSAGE_BYTES, RECORDS, message_batches, submit_request

__all__ = ["AmqpPublisher", "amqp_errors", "connect", "publish"]

log = logging.getLogger(__name__)

HEARTBEAT_S = 30
# A broker in a memory/disk alarm blocks publishers; give up after this. Under the 30 s a stopping
# node waits for a forwarding lane: a longer wait left the lane running while the store closed.
# Giving up costs nothing: a blocked batch spends no attempt and is tried again.
BLOCKED_TIMEOUT_S = 20
# RabbitMQ's refusal of a message over its max_message_size (406), which names the limit.
BROKER_LIMIT = re.compile(r"larger than configured max size (\d+)")


def broker_limit(exc: TransportError) -> int | None:
    """The broker's message size limit, if ``exc`` is its refusal of a message over it."""
    cause = exc.__cause__
    if isinstance(cause, px.ChannelClosedByBroker) and cause.reply_code == 406:
        found = BROKER_LIMIT.search(cause.reply_text or "")
        if found:
            return int(found.group(1))
    return None


def _refused(message: str, code: str) -> TransportError:
    # A refusal is an operator's matter (permissions, topology); retried with backoff until fixed.
    return PeerNotReadyError(message, code=code)


def wrap(exc: BaseException, where: str) -> TransportError:
    """The node error for a pika (or socket/TLS) failure while ``where``."""
    if isinstance(exc, TransportError):
        return exc
    if isinstance(exc, px.UnroutableError):
        return _refused(f"{where}: the broker has no queue bound for this message's routing key (is the "
                        "parent's topology imported?)", "E_AMQP_UNROUTABLE")
    if isinstance(exc, px.NackError):
        return TransportError(f"{where}: the broker refused the message (nack)", code="E_AMQP_NACK")
    if isinstance(exc, px.ChannelClosedByBroker):
        if exc.reply_code == 403:
            return _refused(f"{where}: access refused: {exc.reply_text}", "E_AMQP_ACCESS_REFUSED")
        if exc.reply_code == 404:
            return _refused(f"{where}: not found on the broker: {exc.reply_text}", "E_AMQP_TOPOLOGY")
        return TransportError(f"{where}: channel closed by the broker: {exc.reply_code} {exc.reply_text}",
                              code="E_AMQP_CHANNEL")
    if isinstance(exc, px.ProbableAuthenticationError | px.ProbableAccessDeniedError | px.AuthenticationError):
        return _refused(f"{where}: the broker refused our login (is this node a user there?): {exc}",
                        "E_AMQP_LOGIN_REFUSED")
    if isinstance(exc, px.ConnectionBlockedTimeout):
        return _refused(f"{where}: the broker blocks publishers (a memory or disk alarm is on there; "
                        f"waited {BLOCKED_TIMEOUT_S}s)", "E_AMQP_BLOCKED")
    if isinstance(exc, px.AMQPError | OSError | ssl.SSLError):
        detail = str(exc) or type(exc).__name__
        return PeerUnavailableError(f"{where}: broker unreachable or connection lost: {detail}")
    raise exc  # a programming error: do not disguise it as a transport failure


@contextmanager
def amqp_errors(where: str) -> Iterator[None]:
    """Run a block that talks to the broker, translating pika's errors at this boundary."""
    try:
        yield
    except (px.AMQPError, OSError, ssl.SSLError) as exc:
        raise wrap(exc, where) from exc


def connect(address: BrokerAddress, identity: LoadedIdentity, *, name: str) -> BlockingConnection:
    """A TLS connection logged in as this node (EXTERNAL); ``name`` shows in the broker's UI."""
    params = pika.ConnectionParameters(
        host=address.host, port=address.port, virtual_host=address.vhost,
        ssl_options=pika.SSLOptions(amqp_ssl_context(identity), address.server_name),
        credentials=pika.credentials.ExternalCredentials(),
        heartbeat=HEARTBEAT_S, blocked_connection_timeout=BLOCKED_TIMEOUT_S,
        connection_attempts=1, socket_timeout=10, stack_timeout=15,
        client_properties={"connection_name": f"{identity.node_id} {name}"},
    )
    with amqp_errors(f"connecting to amqps://{address.host}:{address.port}"):
        return pika.BlockingConnection(params)


def publish(channel: BlockingChannel, *, exchange: str, routing_key: str, body: bytes, user_id: str,
            kind: str, headers: Mapping[str, Any] | None = None, reply_to: str | None = None,
            correlation_id: str | None = None, persistent: bool = True, mandatory: bool = True) -> None:
    """One message; on a confirm channel this returns once the broker confirmed it.

    ``user_id`` is checked by RabbitMQ against the connection's user, which is what lets the
    receiver trust it as the sender's node id.
    """
    props = pika.BasicProperties(
        content_type="application/x-protobuf", type=kind, user_id=user_id,
        delivery_mode=pika.DeliveryMode.Persistent if persistent else pika.DeliveryMode.Transient,
        message_id=uuid.uuid4().hex, timestamp=int(time.time()), headers=dict(headers or {}),
        reply_to=reply_to, correlation_id=correlation_id,
    )
    channel.basic_publish(exchange=exchange, routing_key=routing_key, body=body, properties=props,
                          mandatory=mandatory)


class AmqpPublisher:
    """The ``amqp`` :class:`~node.transport.base.Transport`: batches to the parent's ``credit.up``.

    Not thread-safe (pika's BlockingConnection is not): one per forwarding thread.
    """

    def __init__(self, *, peer: str, address: BrokerAddress, identity: LoadedIdentity,
                 exchange: str = UP_EXCHANGE, routing_key: str | None = None) -> None:
        self._peer = peer
        self._address = address
        self._identity = identity
        self._exchange = exchange
        self._routing_key = routing_key or up_key(identity.node_id)
        self._connection: BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._used_at = 0.0
        self._broker_limit: int | None = None  # the broker's max_message_size, once it refused a message

    @property
    def peer(self) -> str:
        return self._peer

    def _open(self) -> BlockingChannel:
        # Idle, a BlockingConnection answers no heartbeats, and the broker drops it after two
        # missed ones: the first publish after a quiet spell failed and spent a delivery attempt.
        # A connection idle that long is replaced before it is used.
        if self._channel is not None and self._channel.is_open and time.monotonic() - self._used_at < HEARTBEAT_S:
            return self._channel
        self.close()
        self._connection = connect(self._address, self._identity, name=f"publisher to {self._peer}")
        with amqp_errors("opening a channel"):
            channel = self._connection.channel()
            channel.confirm_delivery()
        self._channel = channel
        return channel

    def connect(self) -> None:
        self._open()

    def send(self, records: Sequence[bytes], certificates: Sequence[bytes]) -> list[Delivery]:
        out: list[Delivery] = []
        while len(out) < len(records):
            # The parent refuses a message over the node's limit; the broker one over its own
            # max_message_size, which an operator may have set lower and is learnt from its refusal.
            limit = min(MAX_MESSAGE_BYTES, self._broker_limit or MAX_MESSAGE_BYTES)
            room = limit - sum(len(c) + 10 for c in certificates)
            part = next(iter(message_batches(records[len(out):], room)))
            body = submit_request(part, certificates)
            if self._broker_limit is not None and len(body) > self._broker_limit:  # one record, alone too big
                out.append(Delivery(REJECTED, "E_MESSAGE_TOO_LARGE",
                                    f"a message of {len(body)} bytes for this record alone; the broker at "
                                    f"amqps://{self._address.host}:{self._address.port} takes at most "
                                    f"{self._broker_limit}"))
                continue
            try:
                self.send_message(body, kind=RECORDS, headers={"records": len(part)})
            except TransportError as exc:
                learnt = broker_limit(exc)
                if learnt is None or learnt >= limit:
                    raise
                log.warning("%s: the broker takes messages of at most %d bytes; batches are split to fit",
                            self._peer, learnt)
                self._broker_limit = learnt
                continue
            out.extend([Delivery(QUEUED)] * len(part))
        return out

    def send_message(self, body: bytes, *, kind: str, headers: Mapping[str, Any] | None = None) -> None:
        """Publish one confirmed, persistent, mandatory message; raises TransportError if not confirmed."""
        channel = self._open()
        try:
            with amqp_errors(f"publishing to {self._peer} at amqps://{self._address.host}:{self._address.port} "
                             f"(exchange {self._exchange!r}, routing key {self._routing_key!r})"):
                publish(channel, exchange=self._exchange, routing_key=self._routing_key, body=body,
                        user_id=self._identity.node_id, kind=kind, headers=headers)
            self._used_at = time.monotonic()
        except TransportError:
            self.close()  # the channel may be closed or in doubt: start clean next time
            raise

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            with contextlib.suppress(px.AMQPError, OSError):  # a broken connection: nothing to save
                connection.close()
