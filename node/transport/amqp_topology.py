"""The RabbitMQ side of the federation: exchange, queue and routing-key names, and permissions.

Pure. One broker per parent (a federation on one machine may share one broker; the names never
collide because queues are named by node id):

- ``credit.up`` (topic): a child publishes its batches with routing key ``<child id>.records``
  (reconciliation requests: ``<child id>.reconcile``). The parent's quorum queue ``up.<parent id>``
  is bound with ``<child id>.#`` for each of its children, so the tree is the parent's binding set.
- ``credit.down`` (topic): a parent publishes what is addressed to a child with routing key
  ``<child id>``; the child's quorum queue ``down.<child id>`` is bound with exactly that key.

Topology is declared by the operator (``credit-node broker definitions`` → ``rabbitmqctl
import_definitions``), so nodes need no ``configure`` permission. Each node, a RabbitMQ user named
by its certificate CN (EXTERNAL login), may:

- as a child: write ``credit.up`` with routing keys ``^<id>(\\..+)?$`` only; read ``down.<id>``;
- as a parent: read ``up.<id>``; write ``credit.down`` with routing keys naming its children only;
  write ``amq.default`` to answer reconciliation requests (direct reply-to).

RabbitMQ checks the ``user_id`` message property against the connection's user, so a consumer
learns the sender's node id from a property the broker vouches for. docs/federation.md has the why.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from node.errors import ConfigError

__all__ = [
    "DOWN_EXCHANGE",
    "QUEUE_ARGUMENTS",
    "UP_EXCHANGE",
    "BrokerAddress",
    "Edge",
    "definitions",
    "down_key",
    "down_queue",
    "parse_amqp_url",
    "permissions",
    "up_key",
    "up_queue",
]

UP_EXCHANGE = "credit.up"
# RabbitMQ's direct reply-to: a requester asks with this reply_to and the broker hands the consumer
# "amq.rabbitmq.reply-to.<token>", a pseudo-queue of that one connection.
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
DOWN_EXCHANGE = "credit.down"
# Quorum queues: replicated, always durable, and they count redeliveries (x-delivery-count),
# which is what lets a consumer recognise a message that keeps failing. No broker-side
# delivery limit: the consumer moves a poison message to its own dead letters instead, so the
# broker never drops anything.
QUEUE_ARGUMENTS: dict[str, Any] = {"x-queue-type": "quorum"}
DEFAULT_PORT = 5671


def up_queue(node_id: str) -> str:
    return f"up.{node_id}"


def down_queue(node_id: str) -> str:
    return f"down.{node_id}"


def up_key(node_id: str, kind: str = "records") -> str:
    return f"{node_id}.{kind}"


def down_key(child_id: str) -> str:
    return child_id


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    server_name: str  # the name the broker's certificate must carry
    vhost: str = "/"


def parse_amqp_url(url: str, server_name: str = "") -> BrokerAddress:
    """``amqps://host[:port][/vhost]`` → address. Plain ``amqp://`` is refused (DESIGN §2.4)."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "amqps":
        raise ConfigError(f"{url!r}: the broker must be reached over TLS (amqps://host:port)", field="target")
    if not parsed.hostname:
        raise ConfigError(f"{url!r}: no host", field="target")
    try:
        port = parsed.port or DEFAULT_PORT
    except ValueError:
        raise ConfigError(f"{url!r}: bad port", field="target") from None
    vhost = urllib.parse.unquote(parsed.path[1:]) if len(parsed.path) > 1 else "/"
    return BrokerAddress(parsed.hostname, port, server_name or parsed.hostname, vhost)


@dataclass(frozen=True)
class Edge:
    """``child`` reports to ``parent`` over the broker being described."""

    child: str
    parent: str


def _any_of(names: Iterable[str]) -> str:
    return "|".join(re.escape(n) for n in sorted(set(names)))


def permissions(node_id: str, edges: Sequence[Edge]) -> dict[str, Any]:
    """RabbitMQ permissions of ``node_id`` on a broker carrying ``edges`` (see the module doc)."""
    children = [e.child for e in edges if e.parent == node_id]
    is_child = any(e.child == node_id for e in edges)
    write, read = [], []
    topic: dict[str, tuple[str, str]] = {}
    if is_child:
        write.append(re.escape(UP_EXCHANGE))
        read.append(re.escape(down_queue(node_id)))
        topic[UP_EXCHANGE] = (f"^{re.escape(node_id)}(\\..+)?$", "^$")
    if children:
        write += [re.escape(DOWN_EXCHANGE), re.escape("amq.default")]
        read.append(re.escape(up_queue(node_id)))
        topic[DOWN_EXCHANGE] = (f"^({_any_of(children)})$", "^$")
    return {
        "configure": "^$",
        "write": f"^({'|'.join(write)})$" if write else "^$",
        "read": f"^({'|'.join(read)})$" if read else "^$",
        "topic": topic,
    }


def definitions(edges: Sequence[Edge], vhost: str = "/") -> dict[str, Any]:
    """Broker definitions (users, permissions, exchanges, quorum queues, bindings) for ``edges``.

    Feed to ``rabbitmqctl import_definitions FILE``: one call sets up a whole federation, and
    importing again is harmless. Users get no password: the broker offers only EXTERNAL.
    """
    nodes = sorted({e.child for e in edges} | {e.parent for e in edges})
    parents = sorted({e.parent for e in edges})
    children = sorted({e.child for e in edges})
    users: list[dict[str, Any]] = []
    perms: list[dict[str, Any]] = []
    topics: list[dict[str, Any]] = []
    for node in nodes:
        users.append({"name": node, "password_hash": "", "hashing_algorithm": "rabbit_password_hashing_sha256",
                      "tags": []})
        p = permissions(node, edges)
        perms.append({"user": node, "vhost": vhost, "configure": p["configure"], "write": p["write"],
                      "read": p["read"]})
        topics.extend({"user": node, "vhost": vhost, "exchange": ex, "write": w, "read": r}
                      for ex, (w, r) in sorted(p["topic"].items()))
    exchanges = [{"name": name, "vhost": vhost, "type": "topic", "durable": True, "auto_delete": False,
                  "internal": False, "arguments": {}} for name in (UP_EXCHANGE, DOWN_EXCHANGE)]
    queue_names = [up_queue(p) for p in parents] + [down_queue(c) for c in children]
    queues = [{"name": q, "vhost": vhost, "durable": True, "auto_delete": False, "arguments": QUEUE_ARGUMENTS}
              for q in queue_names]
    bindings = [{"source": UP_EXCHANGE, "vhost": vhost, "destination": up_queue(e.parent),
                 "destination_type": "queue", "routing_key": f"{e.child}.#", "arguments": {}} for e in edges]
    bindings += [{"source": DOWN_EXCHANGE, "vhost": vhost, "destination": down_queue(c),
                  "destination_type": "queue", "routing_key": down_key(c), "arguments": {}} for c in children]
    return {"users": users, "vhosts": [{"name": vhost}], "permissions": perms, "topic_permissions": topics,
            "exchanges": exchanges, "queues": queues, "bindings": bindings}
