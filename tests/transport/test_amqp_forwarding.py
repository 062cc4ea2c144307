"""Forwarding over amqp while the broker cannot take deliveries (node/forwarding.py, node/transport/amqp.py).

A real TLS RabbitMQ with the federation's topology (the ``world`` of test_amqp.py): the parent's
queue deleted (a publish is returned unroutable), and a disk alarm (the disk free limit raised
above what the disk has, so the broker blocks every connection that publishes). Either way the
records wait without spending their attempts, and go once the cause is gone.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from node.backoff import Backoff
from node.demo.processes import wait_until
from node.forwarding import Forwarder
from node.sampledata import penalty_rows, write_csv
from node.store.tables import outbox
from node.transport import amqp
from node.transport.amqp import AmqpPublisher, connect
from node.transport.amqp_topology import up_queue
from tests.transport.test_amqp import DEPT, DISTRICT, World, world  # noqa: F401  (module fixture)


def forwarder(world: World, publisher: AmqpPublisher, batch: int) -> Forwarder:  # noqa: F811
    return Forwarder(outbox=world.dept.store.outbox, signer=world.dept.signer, trust=world.dept.trust,
                     transports={DISTRICT: lambda: publisher}, backoff=Backoff(0.05, 0.2, max_attempts=2),
                     batch=batch)


def import_records(world: World, count: int, seed: int, directory: pathlib.Path) -> None:  # noqa: F811
    csv = directory / f"p{seed}.csv"
    write_csv(csv, world.dept.catalog.item("admin_penalty"),
              penalty_rows(count, source_unit=world.fed.layout.node(DEPT).unit, seed=seed))
    assert world.dept.import_file(csv, "admin_penalty").accepted == count


def most_attempts(world: World) -> int:  # noqa: F811
    with world.dept.store.outbox._engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.max(outbox.c.attempts))).scalar_one())


def purge_parent_queue(world: World) -> int:  # noqa: F811
    drain = connect(world.address, world.district.identity, name="drain")
    try:
        return int(drain.channel().queue_purge(up_queue(DISTRICT)).method.message_count)
    finally:
        drain.close()


def test_records_wait_for_a_missing_queue_without_spending_attempts_and_go_once_it_is_back(
        world: World, tmp_path: pathlib.Path) -> None:  # noqa: F811  (the imported fixture)
    # A returned (unroutable) batch used to spend an attempt per round: a queue missing for
    # max_attempts rounds (minutes) sent every pending record to the dead letters.
    broker = world.fed.broker
    assert broker is not None
    broker._run("ctl", "--dir", str(broker.dir), "--", "delete_queue", up_queue(DISTRICT))
    import_records(world, 3, 51, tmp_path)
    publisher = AmqpPublisher(peer=DISTRICT, address=world.address, identity=world.dept.identity)
    fwd = forwarder(world, publisher, batch=3)
    fwd.start()
    try:
        wait_until(lambda: fwd.stats[DISTRICT].retried + fwd.stats[DISTRICT].dead >= 9, 60,
                   what="three rounds returned unroutable")
        assert fwd.stats[DISTRICT].dead == 0 and world.dept.store.outbox.dead_letters() == []
        assert "E_AMQP_UNROUTABLE" in fwd.stats[DISTRICT].last_error
        assert f"routing key '{DEPT}.records'" in fwd.stats[DISTRICT].last_error
        broker.load(world.fed.layout.edges)  # the operator puts the topology back
        wait_until(lambda: world.dept.store.outbox.status() == {}, 60, what="the records delivered")
    finally:
        fwd.stop()
        broker.load(world.fed.layout.edges)
    assert world.dept.store.outbox.dead_letters() == []
    assert most_attempts(world) == 1
    assert purge_parent_queue(world) == 1  # the three records in one message


@pytest.fixture
def disk_alarm(world: World) -> Iterator[None]:  # noqa: F811  (the imported fixture)
    broker = world.fed.broker
    assert broker is not None
    broker._run("ctl", "--dir", str(broker.dir), "--", "set_disk_free_limit", "100000GB")

    def alarmed() -> bool:
        status = broker._run("ctl", "--dir", str(broker.dir), "--", "status").stdout
        return "Free disk space alarm" in status

    wait_until(alarmed, 60, what="the broker's disk alarm", poll_s=0.5)
    try:
        yield
    finally:
        broker._run("ctl", "--dir", str(broker.dir), "--", "set_disk_free_limit", "50MB")


def test_a_blocked_broker_spends_no_delivery_attempt_and_forwarding_resumes_when_it_unblocks(
        world: World, disk_alarm: None, tmp_path: pathlib.Path,  # noqa: F811  (the imported fixture)
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Each batch blocked for the timeout used to spend one of its attempts: an alarm lasting
    # max_attempts timeouts (12 minutes by default) sent every pending record to the dead letters.
    monkeypatch.setattr(amqp, "BLOCKED_TIMEOUT_S", 1)
    import_records(world, 6, 44, tmp_path)
    publisher = AmqpPublisher(peer=DISTRICT, address=world.address, identity=world.dept.identity)
    fwd = forwarder(world, publisher, batch=1)
    fwd.start()
    try:
        wait_until(lambda: fwd.stats[DISTRICT].retried + fwd.stats[DISTRICT].dead >= 4, 120,
                   what="four batches blocked by the broker")
        assert fwd.stats[DISTRICT].dead == 0
        assert "E_AMQP_BLOCKED" in fwd.stats[DISTRICT].last_error and "alarm" in fwd.stats[DISTRICT].last_error
        assert f"amqps://{world.address.host}:{world.address.port}" in fwd.stats[DISTRICT].last_error
        broker = world.fed.broker
        assert broker is not None
        broker._run("ctl", "--dir", str(broker.dir), "--", "set_disk_free_limit", "50MB")
        wait_until(lambda: world.dept.store.outbox.status() == {}, 120, what="every record delivered")
    finally:
        fwd.stop()
    assert world.dept.store.outbox.dead_letters() == []
    assert most_attempts(world) == 1
    # At least once: a blocked publish may have reached the queue before its connection closed.
    assert purge_parent_queue(world) >= 6


@pytest.fixture
def small_broker_messages(world: World) -> Iterator[int]:  # noqa: F811  (the imported fixture)
    # An operator may set max_message_size below the node's own limit (16 MiB).
    broker = world.fed.broker
    assert broker is not None
    broker._run("ctl", "--dir", str(broker.dir), "--", "eval", "application:set_env(rabbit, max_message_size, 4096).")
    try:
        yield 4096
    finally:
        broker._run("ctl", "--dir", str(broker.dir), "--", "eval",
                    "application:set_env(rabbit, max_message_size, 134217728).")


def test_a_batch_over_the_brokers_message_size_is_split_to_fit_and_a_record_too_big_alone_refused(
        world: World, small_broker_messages: int) -> None:  # noqa: F811  (the imported fixture)
    # The broker refused the whole batch (406) and the same batch was sent again each round until
    # its rows were dead-lettered.
    publisher = AmqpPublisher(peer=DISTRICT, address=world.address, identity=world.dept.identity)
    try:
        deliveries = publisher.send([b"r" * 1000] * 9 + [b"x" * 5000] + [b"r" * 1000] * 3, [])
    finally:
        publisher.close()
    assert [d.taken for d in deliveries] == [True] * 9 + [False] + [True] * 3
    assert deliveries[9].code == "E_MESSAGE_TOO_LARGE" and "4096" in deliveries[9].message
    assert purge_parent_queue(world) >= 4  # twelve records of 1000 bytes, at most four in 4096 bytes


def test_a_node_stops_while_the_broker_blocks_its_publisher_without_leaving_the_lane_running(
        world: World, disk_alarm: None, tmp_path: pathlib.Path) -> None:  # noqa: F811  (the imported fixture)
    # A blocked publish waited 60 s for the broker, twice the 30 s a stopping node waits for a
    # lane: the node went on closing its store under a forwarding thread still running.
    import_records(world, 2, 61, tmp_path)
    publisher = AmqpPublisher(peer=DISTRICT, address=world.address, identity=world.dept.identity)
    fwd = forwarder(world, publisher, batch=1)
    fwd.start()
    lane = fwd._lanes[DISTRICT].thread
    assert lane is not None
    wait_until(lambda: world.dept.store.outbox.status().get(DISTRICT, {}).get("pending", 0) > 0
               and fwd.stats[DISTRICT].connected, 30, what="the forwarder publishing")
    fwd.stop()
    assert not lane.is_alive()
