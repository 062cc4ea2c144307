"""AMQP over mutual TLS against a real RabbitMQ (scripts/rabbitmq-tls), with the federation's topology.

The broker trusts the federation's dev CA and knows a department, a district and a city (one
``import_definitions``). Nodes are built in this process; the tests drive the publisher and the
consumer directly: batches with confirms reach the parent's inbox with the broker-checked sender,
the permission model holds (own routing keys, own queues, no spoofed ``user_id``), poison
messages end in the inbound dead letters instead of looping, an unroutable batch is an error.
Skipped on a laptop without RabbitMQ; a failure when ``CI`` is set.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
import pytest

from node.app import Node, build_node
from node.backoff import Backoff
from node.config import load_config
from node.demo.layout import chain_plan
from node.demo.local import LocalFederation
from node.demo.processes import wait_until
from node.errors import StoreError, TransportError
from node.forwarding import Forwarder
from node.sampledata import penalty_rows, write_csv
from node.transport import amqp
from node.transport.amqp import AmqpPublisher, connect, publish
from node.transport.amqp_consumer import AmqpConsumer, AmqpMessage
from node.transport.amqp_inbound import UpwardHandler
from node.transport.amqp_topology import UP_EXCHANGE, down_queue, parse_amqp_url, up_key, up_queue
from node.transport.wire import MAX_MESSAGE_BYTES, RECONCILE, RECORDS, fpb
from tests.federation_support import unavailable

DEPT, DISTRICT, CITY = "dept:330102:scjgj", "district:330102", "city:330100"


@dataclass
class World:
    fed: LocalFederation
    dept: Node
    district: Node

    @property
    def address(self):  # type: ignore[no-untyped-def]
        assert self.fed.broker is not None
        return parse_amqp_url(self.fed.broker.url, "localhost")

    def queue_depth(self, queue: str) -> int:
        """Messages ready in ``queue`` (a passive declare: exact, unlike the periodic queue metrics)."""
        connection = connect(self.address, self.district.identity, name="depth")
        try:
            return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
        finally:
            connection.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    fed = LocalFederation(tmp_path_factory.mktemp("amqp"), chain_plan(), transport="amqp")
    try:
        fed.provision()
    except Exception as exc:  # no RabbitMQ here, or it would not start
        if fed.broker is not None:
            fed.broker.stop()
        unavailable(f"TLS RabbitMQ unavailable: {exc}")
    dept = build_node(load_config(fed.config(DEPT)))
    district = build_node(load_config(fed.config(DISTRICT)))
    try:
        yield World(fed, dept, district)
    finally:
        dept.close()
        district.close()
        assert fed.broker is not None
        fed.broker.stop()


def consumer(world: World, handler: object, **kwargs: object) -> AmqpConsumer:
    return AmqpConsumer(name="test consumer", address=world.address, identity=world.district.identity,
                        queue=up_queue(DISTRICT), handler=handler, backoff=Backoff(0.05, 0.2),  # type: ignore[arg-type]
                        **kwargs)  # type: ignore[arg-type]


def test_batches_with_confirms_reach_the_parent_inbox_from_the_broker_checked_sender(
        world: World, tmp_path: pathlib.Path) -> None:
    csv = tmp_path / "p.csv"
    write_csv(csv, world.dept.catalog.item("admin_penalty"),
              penalty_rows(700, source_unit=world.fed.layout.node(DEPT).unit, seed=21))
    assert world.dept.import_file(csv, "admin_penalty").accepted == 700
    publisher = AmqpPublisher(peer=DISTRICT, address=world.address, identity=world.dept.identity)
    fwd = Forwarder(outbox=world.dept.store.outbox, signer=world.dept.signer, trust=world.dept.trust,
                    transports={DISTRICT: lambda: publisher}, backoff=Backoff(0.05, 0.2), batch=300)
    publisher.connect()
    while fwd.drain_once(DISTRICT, publisher):
        pass
    publisher.close()
    assert world.dept.store.outbox.status() == {}  # confirmed by the broker: done
    assert world.queue_depth(up_queue(DISTRICT)) == 3  # 700 records in three messages
    sink = consumer(world, UpwardHandler(inbox=world.district.inbox, store=world.district.store))
    sink.start()
    try:
        wait_until(lambda: world.district.store.records.counts().get("admin_penalty", 0) == 700, 60,
                   what="700 records at the district")
    finally:
        sink.stop()
    rows = list(world.district.store.records.iter_revisions())
    assert {r.received_from for r in rows} == {DEPT}
    assert world.queue_depth(up_queue(DISTRICT)) == 0  # acknowledged after the commit


def test_a_node_may_publish_only_its_own_routing_keys(world: World) -> None:
    as_other = AmqpPublisher(peer=CITY, address=world.address, identity=world.dept.identity,
                             routing_key=up_key(DISTRICT))  # the department pretending to be the district
    with pytest.raises(TransportError) as err:
        as_other.send([b"x"], [])
    assert err.value.code == "E_AMQP_ACCESS_REFUSED"
    as_other.close()


def test_a_node_cannot_claim_another_sender_in_user_id(world: World) -> None:
    connection = connect(world.address, world.dept.identity, name="spoof")
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
            publish(channel, exchange=UP_EXCHANGE, routing_key=up_key(DEPT), body=b"", user_id=DISTRICT,
                    kind=RECORDS)
        assert err.value.reply_code == 406  # PRECONDITION_FAILED: user_id is not the login
    finally:
        connection.close()


@pytest.mark.parametrize("queue", [up_queue(DISTRICT), down_queue(DISTRICT)])
def test_a_node_reads_only_its_own_queues(world: World, queue: str) -> None:
    connection = connect(world.address, world.dept.identity, name="snoop")
    try:
        channel = connection.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as err:
            channel.basic_consume(queue, lambda *_: None)
        assert err.value.reply_code == 403
    finally:
        connection.close()


def test_an_undecodable_message_is_dead_lettered_with_its_reason_not_requeued(world: World) -> None:
    publisher = AmqpPublisher(peer=DISTRICT, address=world.address, identity=world.dept.identity)
    publisher.send_message(b"\xff\xff\xff not protobuf", kind=RECORDS)
    publisher.close()
    letter = next_dead_letter(world, UpwardHandler(inbox=world.district.inbox, store=world.district.store))
    assert (letter.reason, letter.destination_or_sender) == ("E_MESSAGE_MALFORMED", DEPT)
    assert letter.payload == b"\xff\xff\xff not protobuf"
    assert world.queue_depth(up_queue(DISTRICT)) == 0


def next_dead_letter(world: World, handler: object) -> Any:
    """Consume with ``handler`` until the district keeps one more inbound dead letter; that letter."""
    before = len(world.district.store.inbound.letters())
    sink = consumer(world, handler)
    sink.start()
    try:
        wait_until(lambda: len(world.district.store.inbound.letters()) > before, 60, what="a dead letter")
    finally:
        sink.stop()
    return world.district.store.inbound.letters()[-1]


class Failing:
    """A handler whose store is always busy (a retryable failure)."""

    def __init__(self, world: World) -> None:
        self.calls = 0
        self.letters: list[tuple[str, str]] = []
        self._world = world

    def handle(self, message: AmqpMessage) -> bytes | None:
        self.calls += 1
        raise StoreError("database is locked")

    def dead_letter(self, message: AmqpMessage, code: str, text: str) -> None:
        self.letters.append((code, text))


def test_a_message_failing_again_and_again_is_dead_lettered_after_max_deliveries(world: World) -> None:
    publisher = AmqpPublisher(peer=DISTRICT, address=world.address, identity=world.dept.identity)
    publisher.send_message(b"", kind=RECORDS)
    publisher.close()
    handler = Failing(world)
    sink = consumer(world, handler, max_deliveries=3)
    sink.start()
    try:
        wait_until(lambda: handler.letters != [], 60, what="the message to be given up")
    finally:
        sink.stop()
    assert handler.calls == 3
    assert handler.letters == [("E_STORE", "failed 3 times, last: database is locked")]
    assert world.queue_depth(up_queue(DISTRICT)) == 0


def test_a_batch_nobody_would_receive_is_an_error_not_a_silent_drop(world: World) -> None:
    broker = world.fed.broker
    assert broker is not None
    broker._run("ctl", "--dir", str(broker.dir), "--", "delete_queue", up_queue(DISTRICT))
    try:
        publisher = AmqpPublisher(peer=DISTRICT, address=world.address, identity=world.dept.identity)
        with pytest.raises(TransportError) as err:
            publisher.send([b"x"], [])
        assert err.value.code == "E_AMQP_UNROUTABLE" and err.value.retryable
        publisher.close()
    finally:
        broker.load(world.fed.layout.edges)  # the operator puts the topology back


def test_a_reconciliation_request_naming_a_queue_to_answer_in_is_refused_unanswered(world: World) -> None:
    # This node may write the default exchange (to answer on direct reply-to); answering in a
    # queue the requester names would put its reply in another region's or a child's queue.
    answered: list[str] = []

    def answer(sender: str, request: fpb.ReconcileRequest) -> fpb.ReconcileResponse:
        answered.append(sender)
        return fpb.ReconcileResponse()

    connection = connect(world.address, world.dept.identity, name="deputy")
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        publish(channel, exchange=UP_EXCHANGE, routing_key=up_key(DEPT), body=fpb.ReconcileRequest().SerializeToString(),
                user_id=DEPT, kind=RECONCILE, reply_to=up_queue(CITY))
    finally:
        connection.close()
    letter = next_dead_letter(world, UpwardHandler(inbox=world.district.inbox, store=world.district.store,
                                                   answer=answer))
    assert letter.reason == "E_REPLY_TO" and answered == []
    assert world.queue_depth(up_queue(DISTRICT)) == 0


def test_a_message_over_the_size_limit_is_dead_lettered_and_a_sender_splits_its_batches(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    publisher = AmqpPublisher(peer=DISTRICT, address=world.address, identity=world.dept.identity)
    publisher.send_message(b"\x00" * (MAX_MESSAGE_BYTES + 1), kind=RECORDS)
    letter = next_dead_letter(world, UpwardHandler(inbox=world.district.inbox, store=world.district.store))
    assert letter.reason == "E_MESSAGE_TOO_LARGE"
    # A sender keeps under the limit: five records of 400 bytes with room for two per message.
    monkeypatch.setattr(amqp, "MAX_MESSAGE_BYTES", 1000)
    assert len(publisher.send([b"r" * 400] * 5, [])) == 5
    publisher.close()
    assert world.queue_depth(up_queue(DISTRICT)) == 3
    drain = connect(world.address, world.district.identity, name="drain")
    try:
        drain.channel().queue_purge(up_queue(DISTRICT))
    finally:
        drain.close()


def test_a_publisher_connection_idle_past_a_heartbeat_is_replaced_before_it_is_used(world: World) -> None:
    # Idle, a blocking connection answers no heartbeats and the broker drops it: its first publish
    # then failed and spent a delivery attempt.
    publisher = AmqpPublisher(peer=DISTRICT, address=world.address, identity=world.dept.identity)
    publisher.send_message(b"", kind=RECORDS)
    first = publisher._connection
    publisher.send_message(b"", kind=RECORDS)
    assert publisher._connection is first  # in use: kept
    publisher._used_at -= amqp.HEARTBEAT_S  # as if idle for a heartbeat
    publisher.send_message(b"", kind=RECORDS)
    assert publisher._connection is not first and first is not None and not first.is_open
    publisher.close()
    drain = connect(world.address, world.district.identity, name="drain")
    try:
        drain.channel().queue_purge(up_queue(DISTRICT))
    finally:
        drain.close()


def test_a_first_delivery_counts_one_whatever_count_its_publisher_wrote() -> None:
    from node.transport.amqp_consumer import _deliveries

    forged = pika.BasicProperties(headers={"x-delivery-count": 99})
    assert _deliveries(forged, redelivered=False) == 1  # else one retryable failure dead-letters it
    assert _deliveries(pika.BasicProperties(headers={"x-delivery-count": 2}), redelivered=True) == 3
    assert _deliveries(pika.BasicProperties(), redelivered=True) == 2
