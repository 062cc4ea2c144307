"""The consumer against broker situations of real deployments (node/transport/amqp_consumer.py).

A real TLS RabbitMQ with the federation's topology (the ``world`` of test_amqp.py, one broker for
this module): the queue deleted under a consuming parent and put back by the operator, and a queue
missing for a while.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from node.backoff import Backoff
from node.demo.processes import wait_until
from node.transport.amqp import AmqpPublisher
from node.transport.amqp_consumer import AmqpConsumer, AmqpMessage
from node.transport.amqp_topology import up_queue
from node.transport.wire import RECORDS
from tests.transport.test_amqp import DISTRICT, World, consumer, world  # noqa: F401  (module fixture)


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
