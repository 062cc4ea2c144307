"""A running federation on this machine: nodes as processes, the broker if amqp, and what they hold.

The demo, the federation tests and the benchmark drive nodes through this class; everything it
observes it reads as an operator would (the nodes' stores, read-only, and the ``credit-node``
command), and it only ever signals processes it started.
"""

from __future__ import annotations

import json
import pathlib
import sqlite3
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from node.catalog import load_catalog
from node.demo.broker import LocalBroker
from node.demo.layout import FederationLayout, Provisioned, Transport, provision
from node.demo.processes import NodeProcess, wait_until
from node.provisioning import bundled_catalog
from node.sampledata import penalty_rows, write_csv

__all__ = ["LocalFederation"]


class LocalFederation:
    def __init__(self, base: pathlib.Path, layout: FederationLayout, *, transport: Transport = "grpc",
                 forwarding: Mapping[str, Any] | None = None, log_level: str = "INFO") -> None:
        self.base = base
        self.layout = layout
        self.transport = transport
        self._forwarding = dict(forwarding or {})
        self._log_level = log_level
        self.broker: LocalBroker | None = None
        self.provisioned: Provisioned | None = None
        self.nodes: dict[str, NodeProcess] = {}

    # --- setting up -----------------------------------------------------------------------------
    def provision(self) -> Provisioned:
        from node import identity

        self.base.mkdir(parents=True, exist_ok=True)
        ca_dir = self.base / "ca"
        if not (ca_dir / "ca.pem").exists():
            identity.init_ca(ca_dir, name="credit federation demo CA")
        url = ""
        if self.transport == "amqp":
            self.broker = LocalBroker(self.base / "broker", ca_dir)
            self.broker.start()
            self.broker.load(self.layout.edges)
            url = self.broker.url
        self.provisioned = provision(self.base, self.layout, transport=self.transport, broker_url=url,
                                     forwarding=self._forwarding)
        self.nodes = {nid: NodeProcess(nid, cfg, log_level=self._log_level)
                      for nid, cfg in self.provisioned.configs.items()}
        return self.provisioned

    def start(self) -> None:
        """Every node, parents first (children find their parent serving)."""
        for plan in self.layout.top_down():
            self.nodes[plan.id].start()

    def stop(self) -> dict[str, int | None]:
        """Every node, children first; then the broker. Returns each node's exit code."""
        codes = {plan.id: self.nodes[plan.id].stop() for plan in reversed(self.layout.top_down())
                 if plan.id in self.nodes}
        if self.broker is not None:
            self.broker.stop()
        return codes

    # --- acting as an operator ------------------------------------------------------------------
    def config(self, node_id: str) -> pathlib.Path:
        assert self.provisioned is not None
        return self.provisioned.configs[node_id]

    def cli(self, node_id: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "node", "--config", str(self.config(node_id)), *args],
                              capture_output=True, text=True, timeout=timeout, check=False)

    def cli_json(self, node_id: str, *args: str) -> Any:
        result = self.cli(node_id, *args, "--json")
        try:
            return json.loads(result.stdout)
        except json.JSONDecodeError:
            raise AssertionError(f"{node_id} {' '.join(args)} exit {result.returncode}: {result.stdout}\n"
                                 f"{result.stderr}") from None

    def sample_csv(self, department: str, rows: int, *, seed: int = 1, start_no: int = 1) -> pathlib.Path:
        plan = self.layout.node(department)
        item = load_catalog(bundled_catalog()).item("admin_penalty")
        path = self.base / f"{plan.dirname}-{seed}-{start_no}.csv"
        write_csv(path, item, penalty_rows(rows, source_unit=plan.unit, division=plan.id.split(":")[1],
                                           seed=seed, start_no=start_no))
        return path

    def import_file(self, department: str, path: pathlib.Path, item: str = "admin_penalty") -> dict[str, Any]:
        data: dict[str, Any] = self.cli_json(department, "import", str(path), "--item", item)
        return data

    # --- observing ------------------------------------------------------------------------------
    def _query(self, node_id: str, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        db = self.config(node_id).parent / "node.db"
        if not db.exists():
            return []
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError:
            return []  # the schema is not there yet (the node is still migrating)
        finally:
            conn.close()

    def count(self, node_id: str, item: str | None = None) -> int:
        sql = "SELECT count(*) FROM record_revisions" + (" WHERE item = ?" if item else "")
        rows = self._query(node_id, sql, (item,) if item else ())
        return int(rows[0][0]) if rows else 0

    def keys(self, node_id: str) -> set[tuple[str, int]]:
        return {(r, int(v)) for r, v in self._query(node_id, "SELECT record_id, revision FROM record_revisions")}

    def times(self, node_id: str) -> dict[tuple[str, int], int]:
        """received_at_ms of each revision held (the moment it was stored there)."""
        return {(r, int(v)): int(t) for r, v, t in
                self._query(node_id, "SELECT record_id, revision, received_at_ms FROM record_revisions")}

    def pending(self, node_id: str) -> int:
        rows = self._query(node_id, "SELECT count(*) FROM outbox WHERE state = 'pending'")
        return int(rows[0][0]) if rows else 0

    def dead_letters(self, node_id: str) -> int:
        rows = self._query(node_id, "SELECT count(*) FROM dead_letters")
        return int(rows[0][0]) if rows else 0

    def wait_for(self, node_id: str, records: int, deadline_s: float = 300) -> None:
        wait_until(lambda: self.count(node_id) >= records, deadline_s,
                   what=f"{records} records at {node_id} (has {self.count(node_id)})", poll_s=0.25)

    def wait_drained(self, deadline_s: float = 300) -> None:
        """Until no node has a delivery pending."""
        wait_until(lambda: all(self.pending(n) == 0 for n in self.nodes), deadline_s,
                   what="every outbox to drain", poll_s=0.25)
