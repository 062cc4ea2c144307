"""A private TLS RabbitMQ for a local federation (``scripts/rabbitmq-tls``), trusting the federation CA.

The broker's server certificate is issued by the same development CA as the nodes' (identity
``admin:broker``, valid for ``localhost`` and ``127.0.0.1``), so nodes verify the broker and the
broker verifies nodes against one root. The federation's users, permissions, exchanges, quorum
queues and bindings are loaded in one ``rabbitmqctl import_definitions`` call
(``node.transport.amqp_topology.definitions``).
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import time
from collections.abc import Sequence

from node import identity
from node.errors import PeerUnavailableError
from node.transport.amqp_topology import Edge, definitions

__all__ = ["BROKER_ID", "LocalBroker", "rabbitmq_script"]

BROKER_ID = "admin:broker"
START_TIMEOUT_S = 150
EXIT_NOT_INSTALLED = 69


def rabbitmq_script() -> pathlib.Path:
    return pathlib.Path(__file__).resolve().parents[2] / "scripts" / "rabbitmq-tls"


class LocalBroker:
    def __init__(self, state_dir: pathlib.Path, ca_dir: pathlib.Path) -> None:
        self.dir = state_dir
        self.ca_dir = ca_dir
        self.port = 0

    @property
    def url(self) -> str:
        return f"amqps://127.0.0.1:{self.port}"

    def _run(self, *args: str, timeout: float = START_TIMEOUT_S + 30) -> subprocess.CompletedProcess[str]:
        # Run beside the state dir: an Erlang crash dump lands there, not in the caller's directory.
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        return subprocess.run([str(rabbitmq_script()), *args], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False, cwd=self.dir.parent)

    def start(self) -> int:
        """Start (or find running) and return the AMQPS port. PeerUnavailableError if it cannot."""
        tls = self.dir.parent / f"{self.dir.name}-tls"
        if not (tls / "cert.pem").exists():
            identity.issue(self.ca_dir, BROKER_ID, "admin", tls, hosts=("localhost", "127.0.0.1"))
        # On a restart, reuse the port this directory had: nodes are configured with it.
        port = str(self.port) if self.port else "auto"
        result = self._run("start", "--dir", str(self.dir), "--port", port, "--ca", str(tls / "ca.pem"),
                           "--cert", str(tls / "cert.pem"), "--key", str(tls / "key.pem"),
                           "--timeout", str(START_TIMEOUT_S))
        if result.returncode != 0:
            what = ("RabbitMQ is not installed" if result.returncode == EXIT_NOT_INSTALLED
                    else "the TLS broker did not start")
            raise PeerUnavailableError(f"{what} (scripts/rabbitmq-tls exit {result.returncode}): "
                                       f"{result.stderr.strip()[-2000:]}")
        self.port = int(result.stdout.strip())
        return self.port

    def load(self, edges: Sequence[Edge]) -> None:
        """Users, permissions and topology for ``edges`` (one import; importing again is harmless)."""
        path = self.dir.parent / f"{self.dir.name}-definitions.json"
        path.write_text(json.dumps(definitions(edges), indent=1), encoding="utf-8")
        result = self._run("ctl", "--dir", str(self.dir), "--", "import_definitions", str(path), timeout=120)
        if result.returncode != 0:
            raise PeerUnavailableError(f"importing broker definitions failed: {result.stderr.strip()[-2000:]}")
        users = {e.child for e in edges} | {e.parent for e in edges}
        self._await_users(users)

    def _await_users(self, users: set[str], timeout_s: float = 60) -> None:
        # import_definitions returns before the import finished ("asynchronous"): poll for it.
        deadline = time.monotonic() + timeout_s
        while True:
            result = self._run("ctl", "--dir", str(self.dir), "--", "list_users", "--quiet", "--no-table-headers",
                               timeout=60)
            listed = {line.split("\t", 1)[0] for line in result.stdout.splitlines()}
            if users <= listed:
                return
            if time.monotonic() > deadline:
                raise PeerUnavailableError(f"broker users {sorted(users - listed)} did not appear")
            time.sleep(0.5)  # polling an external process with a deadline

    def stop(self) -> None:
        self._run("stop", "--dir", str(self.dir))

    def running(self) -> bool:
        return self._run("status", "--dir", str(self.dir), timeout=60).returncode == 0
