"""The consumer against broker situations of real deployments (node/transport/amqp_consumer.py).

A real TLS RabbitMQ with the federation's topology (the ``world`` of test_amqp.py, one broker for
this module): the queue deleted under a consuming parent and put back by the operator, and a queue
missing for a while, a queue made classic by hand (no delivery count), and one batch delivered
twice to two consumers at once.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import pika

from node.app import build_node
from node.backoff import Backoff
from node.config import load_config
from node.demo.processes import wait_until
from node.errors import StoreError
from node.forwarding import HopSigner
from node.sampledata import penalty_rows, write_csv
from node.transport.amqp import AmqpPublisher, connect
from node.transport.amqp_consumer import AmqpConsumer, AmqpMessage
from node.transport.amqp_inbound import UpwardHandler
from node.transport.amqp_topology import UP_EXCHANGE, definitions, up_key, up_queue
from node.transport.wire import RECORDS
from tests.transport.test_amqp import DEPT, DISTRICT, World, consumer, world  # noqa: F401  (module fixture)


class Recording:
    """A handler that keeps what it was given."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def handle(self, message: AmqpMessage) -> bytes | None:
        self.bodies.append(message.body)
        return None

    def dead_letter(self, message: AmqpMessage, code: str, text: str) -> None:
        raise AssertionError(f"dead-lettered: {code}: {text}")


def test_a_queue_deleted_under_the_consumer_and_put_back_is_consumed_again(world: World) -> None:  # noqa: F811  (the imported fixture)
    # RabbitMQ cancels the consumers of a deleted queue (basic.cancel); the consumer used to go on
    # waiting on a channel with no consumer, and took nothing from the queue once it was back.
    broker = world.fed.broker
    assert broker is not None
    states: list[str] = []
    handler = Recording()
    sink = consumer(world, handler, on_state=states.append)
    sink.start()
    try:
        wait_until(lambda: "connected" in states, 30, what="the consumer to consume")
        broker._run("ctl", "--dir", str(broker.dir), "--", "delete_queue", up_queue(DISTRICT))
        wait_until(lambda: states[-1] == "disconnected", 30, what="the consumer to notice the cancel")
        broker.load(world.fed.layout.edges)  # the operator puts the topology back
        publisher = AmqpPublisher(peer=DISTRICT, address=world.address, identity=world.dept.identity)
        publisher.send_message(b"after the queue came back", kind=RECORDS)
        publisher.close()
        wait_until(lambda: handler.bodies == [b"after the queue came back"], 60,
                   what="the message published to the re-created queue to be consumed")
    finally:
        sink.stop()
    assert world.queue_depth(up_queue(DISTRICT)) == 0


@dataclass(frozen=True)
class CountingBackoff(Backoff):
    """Records which attempt number each wait was asked for."""

    asked: list[int] = field(default_factory=list)

    def delay(self, attempt: int) -> float:
        self.asked.append(attempt)
        return 0.05


def test_a_missing_queue_is_retried_less_and_less_often(world: World) -> None:  # noqa: F811  (the imported fixture)
    # A queue missing until an operator acts used to be retried every half second for ever: a new
    # TLS connection and a warning each time.
    broker = world.fed.broker
    assert broker is not None
    broker._run("ctl", "--dir", str(broker.dir), "--", "delete_queue", up_queue(DISTRICT))
    backoff = CountingBackoff()
    sink = AmqpConsumer(name="test consumer", address=world.address, identity=world.district.identity,
                        queue=up_queue(DISTRICT), handler=Recording(), backoff=backoff)
    sink.start()
    try:
        wait_until(lambda: len(backoff.asked) >= 3, 30, what="three tries at the missing queue")
    finally:
        sink.stop()
        broker.load(world.fed.layout.edges)
    assert backoff.asked[:3] == [1, 2, 3]


class Failing:
    """A handler whose store is always busy (a retryable failure)."""

    def __init__(self) -> None:
        self.calls = 0
        self.letters: list[tuple[str, str]] = []

    def handle(self, message: AmqpMessage) -> bytes | None:
        self.calls += 1
        raise StoreError("database is locked")

    def dead_letter(self, message: AmqpMessage, code: str, text: str) -> None:
        self.letters.append((code, text))


@contextlib.contextmanager
def classic_parent_queue(world: World, tmp_path: pathlib.Path) -> Iterator[None]:  # noqa: F811  (a parameter)
    """The district's queue made classic by hand (no x-delivery-count), put back quorum afterwards."""
    broker = world.fed.broker
    assert broker is not None
    classic = definitions(world.fed.layout.edges)
    classic["queues"] = [dict(q, arguments={}) for q in classic["queues"] if q["name"] == up_queue(DISTRICT)]
    path = tmp_path / "classic.json"
    path.write_text(json.dumps({k: classic[k] for k in ("queues", "bindings")}), encoding="utf-8")
    broker._run("ctl", "--dir", str(broker.dir), "--", "delete_queue", up_queue(DISTRICT))
    broker._run("ctl", "--dir", str(broker.dir), "--", "import_definitions", str(path))
    try:
        wait_until(lambda: world.queue_depth(up_queue(DISTRICT)) == 0, 30, what="the classic queue")
        yield
    finally:
        broker._run("ctl", "--dir", str(broker.dir), "--", "delete_queue", up_queue(DISTRICT))
        broker.load(world.fed.layout.edges)


def given_up_after_failing(world: World, max_deliveries: int) -> Failing:  # noqa: F811  (a parameter)
    handler = Failing()
    sink = consumer(world, handler, max_deliveries=max_deliveries)
    sink.start()
    try:
        wait_until(lambda: handler.letters != [] or handler.calls > 2 * max_deliveries, 60,
                   what="the message to be given up")
    finally:
        sink.stop()
    return handler


def test_a_message_failing_on_a_classic_queue_is_still_dead_lettered_after_max_deliveries(
        world: World, tmp_path: pathlib.Path) -> None:  # noqa: F811  (the imported fixture)
    # An operator who creates the queue by hand may make it classic: no x-delivery-count, and
    # every redelivery counted 2, so a message that kept failing was requeued for ever.
    with classic_parent_queue(world, tmp_path):
        publisher = AmqpPublisher(peer=DISTRICT, address=world.address, identity=world.dept.identity)
        publisher.send_message(b"", kind=RECORDS)
        publisher.close()
        handler = given_up_after_failing(world, max_deliveries=3)
        assert handler.letters == [("E_STORE", "failed 3 times, last: database is locked")]
        assert handler.calls == 3
        assert world.queue_depth(up_queue(DISTRICT)) == 0


def test_a_message_without_message_id_failing_on_a_classic_queue_is_dead_lettered_after_max_deliveries(
        world: World, tmp_path: pathlib.Path) -> None:  # noqa: F811  (the imported fixture)
    # A child's own client need not set message_id; the local count was keyed by it alone, so such
    # a message that kept failing on a classic queue was requeued for ever.
    with classic_parent_queue(world, tmp_path):
        connection = connect(world.address, world.dept.identity, name="bare child client")
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            channel.basic_publish(UP_EXCHANGE, up_key(DEPT), b"\x0a\x03abc", mandatory=True,
                                  properties=pika.BasicProperties(user_id=DEPT, type=RECORDS, delivery_mode=2))
        finally:
            connection.close()
        handler = given_up_after_failing(world, max_deliveries=3)
        assert handler.letters == [("E_STORE", "failed 3 times, last: database is locked")]
        assert handler.calls == 3
        assert world.queue_depth(up_queue(DISTRICT)) == 0


def test_one_batch_delivered_twice_to_two_consumers_at_once_is_stored_once(
        world: World, tmp_path: pathlib.Path) -> None:  # noqa: F811  (the imported fixture)
    # A publisher that lost its confirm sends a batch again; two consumers of the parent (two
    # processes on one store) may then handle both copies at the same time.
    csv = tmp_path / "p.csv"
    write_csv(csv, world.dept.catalog.item("admin_penalty"),
              penalty_rows(200, source_unit=world.fed.layout.node(DEPT).unit, seed=71))
    assert world.dept.import_file(csv, "admin_penalty").accepted == 200
    items = world.dept.store.outbox.claim(DISTRICT, 1000, 2**62)
    payload, certificates = HopSigner(world.dept.signer, world.dept.trust).prepare(items)
    publisher = AmqpPublisher(peer=DISTRICT, address=world.address, identity=world.dept.identity)
    for _ in range(2):
        publisher.send(payload, certificates)
    publisher.close()
    world.dept.store.outbox.done([i.id for i in items])
    before = world.district.store.records.counts().get("admin_penalty", 0)
    second = build_node(load_config(world.fed.config(DISTRICT)))
    sinks = [consumer(world, UpwardHandler(inbox=node.inbox, store=node.store), prefetch=1)
             for node in (world.district, second)]
    try:
        for sink in sinks:
            sink.start()
        wait_until(lambda: world.queue_depth(up_queue(DISTRICT)) == 0, 60, what="both copies consumed")
    finally:
        for sink in sinks:
            sink.stop()
        second.close()
    rows = list(world.district.store.records.iter_revisions())
    assert world.district.store.records.counts().get("admin_penalty", 0) == before + 200
    assert len({(r.record_id, r.revision) for r in rows}) == len(rows)
    assert world.district.store.inbound.letters() == []
