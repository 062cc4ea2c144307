"""A federation on one machine: who is whose parent, and each node's directory and configuration.

Used by the demo, the federation tests and the benchmark. ``provision`` makes a development CA,
issues every node's certificates from it, and writes each node's ``node.yaml`` with fixed loopback
ports (chosen up front, so a node restarted after a crash comes back where its children look for
it). Transport ``grpc`` needs nothing else; ``amqp`` needs a broker URL (``node.demo.broker``).
"""

from __future__ import annotations

import pathlib
import random
import re
import socket
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from node import identity
from node.config import parse_config
from node.provisioning import bundled_catalog
from node.routing import level_of
from node.sampledata import unit_uscc
from node.transport.amqp_topology import Edge

__all__ = ["FederationLayout", "NodePlan", "Provisioned", "demo_plan", "free_port", "provision"]

Transport = Literal["grpc", "amqp"]
LEVEL_NAMES = {"dept": "department", "department": "department", "district": "district", "city": "city",
               "province": "province"}


@dataclass(frozen=True)
class NodePlan:
    id: str
    parent: str | None = None
    unit: str = ""  # a department's source unit (USCC)

    @property
    def level(self) -> str:
        return LEVEL_NAMES[level_of(self.id)]

    @property
    def dirname(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.id)


@dataclass(frozen=True)
class FederationLayout:
    nodes: tuple[NodePlan, ...]
    peers: tuple[tuple[str, str], ...] = ()  # regions that answer each other's lookups (both ways)

    def peers_of(self, node_id: str) -> list[str]:
        return sorted({b for a, b in self.peers if a == node_id} | {a for a, b in self.peers if b == node_id})

    def node(self, node_id: str) -> NodePlan:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def children(self, node_id: str) -> list[NodePlan]:
        return [n for n in self.nodes if n.parent == node_id]

    @property
    def edges(self) -> list[Edge]:
        return [Edge(n.id, n.parent) for n in self.nodes if n.parent]

    @property
    def departments(self) -> list[NodePlan]:
        return [n for n in self.nodes if n.level == "department"]

    @property
    def root(self) -> NodePlan:
        return next(n for n in self.nodes if n.parent is None)

    def top_down(self) -> list[NodePlan]:
        """Parents before children (the order to start nodes in)."""
        depth = {n.id: 0 for n in self.nodes}
        for n in self.nodes:
            p, d = n.parent, 0
            while p is not None:
                d += 1
                p = self.node(p).parent
            depth[n.id] = d
        return sorted(self.nodes, key=lambda n: depth[n.id])


def demo_plan() -> FederationLayout:
    """A city, two districts (peer regions), one market-regulation department under each (上城区, 西湖区)."""
    return FederationLayout((
        NodePlan("city:330100"),
        NodePlan("district:330102", "city:330100"),
        NodePlan("district:330106", "city:330100"),
        NodePlan("dept:330102:scjgj", "district:330102", unit_uscc("330102", "MB000001")),
        NodePlan("dept:330106:scjgj", "district:330106", unit_uscc("330106", "MB000002")),
    ), peers=(("district:330102", "district:330106"),))


def chain_plan() -> FederationLayout:
    """department → district → city: the shortest path with every kind of hop (benchmark)."""
    return FederationLayout((
        NodePlan("city:330100"),
        NodePlan("district:330102", "city:330100"),
        NodePlan("dept:330102:scjgj", "district:330102", unit_uscc("330102", "MB000001")),
    ))


def free_port(taken: Collection[int] = ()) -> int:
    """A port free now on loopback, below the OS's ephemeral range.

    Chosen up front and bound later by the node: a port the OS hands out itself (bind to port 0)
    comes from the range every outgoing connection on the machine takes its local port from, and
    one did take it in between (the district then failed to start, "Address already in use").
    """
    low = _ephemeral_low()
    rng = random.SystemRandom()
    for _ in range(500):
        port = rng.randrange(max(1024, low - 10_000), low)
        if port in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    with socket.socket() as s:  # a crowded machine: the OS's choice, with its small risk
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ephemeral_low() -> int:
    try:
        return int(pathlib.Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


@dataclass
class Provisioned:
    base: pathlib.Path
    layout: FederationLayout
    transport: Transport
    ca_dir: pathlib.Path
    configs: dict[str, pathlib.Path] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    def dir(self, node_id: str) -> pathlib.Path:
        return self.configs[node_id].parent

    def target(self, node_id: str) -> str:
        return f"127.0.0.1:{self.ports[node_id]}"


def provision(base: pathlib.Path, layout: FederationLayout, *, transport: Transport = "grpc",
              broker_url: str = "", forwarding: Mapping[str, Any] | None = None,
              catalog_path: pathlib.Path | None = None) -> Provisioned:
    """CA, certificates and ``node.yaml`` for every node of ``layout`` under ``base``."""
    if transport == "amqp" and not broker_url:
        raise ValueError("transport amqp needs the broker's amqps:// URL")
    base.mkdir(parents=True, exist_ok=True)
    ca_dir = base / "ca"
    if not (ca_dir / "ca.pem").exists():
        identity.init_ca(ca_dir, name="credit federation demo CA")
    out = Provisioned(base, layout, transport, ca_dir)
    for n in layout.nodes:
        out.ports[n.id] = free_port(taken=out.ports.values())
    catalog = (catalog_path or bundled_catalog()).resolve()
    for plan in layout.nodes:
        directory = base / plan.dirname
        if not (directory / "identity" / "cert.pem").exists():
            identity.issue(ca_dir, plan.id, "node", directory / "identity", hosts=("localhost", "127.0.0.1"))
        data: dict[str, Any] = {
            "id": plan.id, "level": plan.level, "identity": {"dir": "identity"},
            "store": {"url": "sqlite:///node.db"},
            "catalog": {"path": str(catalog), "authority": layout.root.id},
            "server": {"listen": out.target(plan.id)},
            "forwarding": dict(forwarding or {}),
        }
        if plan.unit:
            data["unit"] = plan.unit
        if plan.parent:
            target = broker_url if transport == "amqp" else out.target(plan.parent)
            data["parent"] = {"id": plan.parent, "target": target, "transport": transport,
                              "server_name": "localhost"}
        peers = layout.peers_of(plan.id)
        if peers:
            data["peers"] = [{"id": p, "target": out.target(p), "server_name": "localhost"} for p in peers]
        children = layout.children(plan.id)
        if children:
            data["children"] = [{"id": c.id, **({"units": [c.unit]} if c.unit else {})} for c in children]
            if transport == "amqp":
                data["broker"] = {"url": broker_url, "server_name": "localhost"}
        parse_config(data, base_dir=str(directory))  # never write a config the node would refuse
        path = directory / "node.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
        out.configs[plan.id] = path
    return out
