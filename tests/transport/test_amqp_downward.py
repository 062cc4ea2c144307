"""The parent's downward publisher against a broker missing one child's queue (node/transport/amqp_downward.py).

A real TLS RabbitMQ with the topology of a city and two districts: the city keeps a notice for
each district and publishes them to ``down.<district>``; one district's queue is missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from node.app import Node, build_node
from node.backoff import Backoff
from node.config import load_config
from node.demo.layout import demo_plan
from node.demo.local import LocalFederation
from node.demo.processes import wait_until
from node.downward import Downward
from node.transport.amqp import connect
from node.transport.amqp_downward import DownwardPublisher
from node.transport.amqp_topology import BrokerAddress, down_queue, parse_amqp_url
from tests.federation_support import unavailable

CITY, WEST, EAST = "city:330100", "district:330102", "district:330106"


@dataclass
class Tree:
    fed: LocalFederation
    city: Node
    west: Node
    east: Node

    @property
    def address(self) -> BrokerAddress:
        assert self.fed.broker is not None
        return parse_amqp_url(self.fed.broker.url, "localhost")

    def depth(self, child: Node) -> int:
        connection = connect(self.address, child.identity, name="depth")
        try:
            return int(connection.channel().queue_declare(down_queue(child.config.id), passive=True)
                       .method.message_count)
        finally:
            connection.close()

    def ctl(self, *args: str) -> None:
        broker = self.fed.broker
        assert broker is not None
        broker._run("ctl", "--dir", str(broker.dir), "--", *args)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tree]:
    fed = LocalFederation(tmp_path_factory.mktemp("amqp-down"), demo_plan(), transport="amqp")
    try:
        fed.provision()
    except Exception as exc:  # no RabbitMQ here, or it would not start
        if fed.broker is not None:
            fed.broker.stop()
        unavailable(f"TLS RabbitMQ unavailable: {exc}")
    nodes = [build_node(load_config(fed.config(n))) for n in (CITY, WEST, EAST)]
    try:
        yield Tree(fed, *nodes)
    finally:
        for node in nodes:
            node.close()
        assert fed.broker is not None
        fed.broker.stop()


def test_one_childs_missing_queue_does_not_hold_back_what_goes_to_the_others(tree: Tree) -> None:
    # The publisher went through the children in order and started over at the first failure:
    # the first child's missing queue kept every child after it from hearing anything.
    assert next(c.id for c in tree.city.config.children) == WEST
    downward = Downward(tree.city)
    for child in (WEST, EAST):
        downward.raise_notice(child, to_node=child, source_unit="", record_id=f"r-{child}", revision=1,
                              code="E_TEST", message="refused upstream")
    east_before = tree.depth(tree.east)
    tree.ctl("delete_queue", down_queue(WEST))
    publisher = DownwardPublisher(tree.city, downward, tree.address, Backoff(0.05, 0.2), idle_s=0.1)
    publisher.start()
    try:
        wait_until(lambda: tree.depth(tree.east) > east_before, 60, what="the notice in the other child's queue")
        assert tree.fed.broker is not None
        tree.fed.broker.load(tree.fed.layout.edges)  # the operator puts the missing queue back
        wait_until(lambda: tree.depth(tree.west) > 0, 60, what="the notice in the queue put back")
    finally:
        publisher.stop()
        assert tree.fed.broker is not None
        tree.fed.broker.load(tree.fed.layout.edges)
