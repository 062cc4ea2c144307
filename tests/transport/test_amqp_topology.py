"""The broker's names and permission model (pure; the real broker enforces it in test_amqp.py)."""

from __future__ import annotations

import re

import pytest

from node.errors import ConfigError
from node.transport.amqp_topology import Edge, definitions, parse_amqp_url, permissions

EDGES = [Edge("dept:330102:scjgj", "district:330102"), Edge("district:330102", "city:330100"),
         Edge("district:330106", "city:330100")]


def test_a_leaf_writes_only_its_own_keys_and_reads_only_its_own_queue() -> None:
    p = permissions("dept:330102:scjgj", EDGES)
    assert p["configure"] == "^$"
    assert re.fullmatch(p["write"], "credit.up") and not re.fullmatch(p["write"], "credit.down")
    assert re.fullmatch(p["read"], "down.dept:330102:scjgj") and not re.fullmatch(p["read"], "up.district:330102")
    topic_write, topic_read = p["topic"]["credit.up"]
    assert re.fullmatch(topic_write, "dept:330102:scjgj.records")
    assert not re.fullmatch(topic_write, "dept:330102:scjgjx.records")
    assert not re.fullmatch(topic_write, "district:330102.records")
    assert topic_read == "^$" and "credit.down" not in p["topic"]


def test_a_parent_reads_its_inbound_queue_and_writes_down_to_its_children_only() -> None:
    p = permissions("city:330100", EDGES)
    assert re.fullmatch(p["read"], "up.city:330100") and not re.fullmatch(p["read"], "down.city:330100")
    assert re.fullmatch(p["write"], "credit.down") and re.fullmatch(p["write"], "amq.default")
    assert not re.fullmatch(p["write"], "credit.up")  # the root has no parent
    down_write, _ = p["topic"]["credit.down"]
    assert re.fullmatch(down_write, "district:330102") and re.fullmatch(down_write, "district:330106")
    assert not re.fullmatch(down_write, "dept:330102:scjgj")  # a grandchild is its district's business


def test_definitions_bind_each_child_to_its_parents_queue() -> None:
    d = definitions(EDGES)
    assert {q["name"] for q in d["queues"]} == {"up.district:330102", "up.city:330100", "down.dept:330102:scjgj",
                                                "down.district:330102", "down.district:330106"}
    assert all(q["arguments"] == {"x-queue-type": "quorum"} and q["durable"] for q in d["queues"])
    bindings = {(b["source"], b["destination"], b["routing_key"]) for b in d["bindings"]}
    assert ("credit.up", "up.city:330100", "district:330106.#") in bindings
    assert ("credit.down", "down.dept:330102:scjgj", "dept:330102:scjgj") in bindings
    assert all(u["password_hash"] == "" for u in d["users"])
    assert {e["type"] for e in d["exchanges"]} == {"topic"}


def test_only_tls_broker_urls() -> None:
    address = parse_amqp_url("amqps://broker.city:5671/credit", "broker.example")
    assert (address.host, address.port, address.vhost, address.server_name) == (
        "broker.city", 5671, "credit", "broker.example")
    assert parse_amqp_url("amqps://127.0.0.1").port == 5671
    with pytest.raises(ConfigError):
        parse_amqp_url("amqp://127.0.0.1:5672")
