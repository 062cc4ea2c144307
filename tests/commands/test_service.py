"""``credit-node start`` as a real process, and ``credit-node status`` against it."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from transport.nodes import PARENT_ID, Pki, make_pki, write_parent_config

from node.transport import grpc_client

DEADLINE_S = 30.0
CLI = [sys.executable, "-m", "node"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@dataclass
class Started:
    process: subprocess.Popen[str]
    address: str
    config: pathlib.Path


def _wait_for_file(path: pathlib.Path, process: subprocess.Popen[str]) -> str:
    """The port file's content, as soon as the server wrote it (or fail with its stderr)."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_text(encoding="utf-8").strip()
        if process.poll() is not None:
            pytest.fail(f"start exited with {process.returncode}: {process.communicate()[1]}")
        time.sleep(0.02)  # polling a file the server writes once; the deadline bounds the wait
    process.kill()
    pytest.fail(f"no port file within {DEADLINE_S}s: {process.communicate()[1]}")


@pytest.fixture
def started(pki: Pki, tmp_path: pathlib.Path) -> Iterator[Started]:
    config = write_parent_config(pki, tmp_path)
    port_file = tmp_path / "port"
    process = subprocess.Popen([*CLI, "--config", str(config), "start", "--port-file", str(port_file)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield Started(process, _wait_for_file(port_file, process), config)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=DEADLINE_S, check=False)


def test_start_serves_until_sigterm_then_exits_0(started: Started, pki: Pki) -> None:
    host, _, port = started.address.rpartition(":")
    assert host == "127.0.0.1" and int(port) > 0

    with grpc_client.open_channel(started.address, pki.identity("gov")) as channel:
        grpc_client.wait_ready(channel, DEADLINE_S)
        assert grpc_client.health(channel, timeout=DEADLINE_S) == "SERVING"

    result = _cli("status", "--target", started.address, "--identity", str(pki.dir("gov")), "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["node_id"] == PARENT_ID and status["level"] == "district"
    assert status["counts"] == {} and status["outbox_depth"] == 0

    text = _cli("status", "--target", started.address, "--identity", str(pki.dir("gov")))
    assert text.returncode == 0 and text.stdout.startswith(f"{PARENT_ID} (district)")

    started.process.send_signal(signal.SIGTERM)
    out, err = started.process.communicate(timeout=DEADLINE_S)
    assert started.process.returncode == 0, err
    assert f"listening on {started.address}" in out
    events = [json.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
    assert "server.started" in events and "server.stopped" in events
    for line in err.splitlines():
        if line.startswith("{"):
            assert json.loads(line)["node"] == PARENT_ID


def test_sigint_also_stops_cleanly(started: Started) -> None:
    started.process.send_signal(signal.SIGINT)
    started.process.communicate(timeout=DEADLINE_S)
    assert started.process.returncode == 0


def test_the_port_file_is_removed_when_the_node_stops(started: Started, tmp_path: pathlib.Path) -> None:
    port_file = tmp_path / "port"  # where the fixture's node wrote it
    assert port_file.read_text(encoding="utf-8").strip() == started.address
    started.process.send_signal(signal.SIGTERM)
    started.process.communicate(timeout=DEADLINE_S)
    assert started.process.returncode == 0
    assert not port_file.exists()


def test_a_port_file_another_run_has_rewritten_is_left_alone(started: Started, tmp_path: pathlib.Path) -> None:
    port_file = tmp_path / "port"
    port_file.write_text("127.0.0.1:1\n", encoding="utf-8")  # another node's now
    started.process.send_signal(signal.SIGTERM)
    started.process.communicate(timeout=DEADLINE_S)
    assert started.process.returncode == 0
    assert port_file.read_text(encoding="utf-8") == "127.0.0.1:1\n"


def test_status_refused_exits_3(started: Started, pki: Pki) -> None:
    result = _cli("status", "--target", started.address, "--identity", str(pki.dir("agency")))
    assert result.returncode == 3
    assert "E_NOT_AUTHORIZED" in result.stderr


def test_status_with_node_checks_the_servers_certificate_is_that_nodes(started: Started, pki: Pki) -> None:
    base = ("status", "--target", started.address, "--identity", str(pki.dir("gov")), "--timeout", "3")
    named = _cli(*base, "--node", PARENT_ID, "--json")
    assert named.returncode == 0, named.stderr
    assert json.loads(named.stdout)["node_id"] == PARENT_ID
    other = _cli(*base, "--node", "city:330100")  # a valid certificate at TARGET, but not that node's
    assert other.returncode == 4, other.stderr
    assert other.stderr.startswith("error: E_PEER_UNAVAILABLE: the server's certificate is not for the name"), \
        other.stderr
    caller = _cli(*base, "--node", "gov:330100:fgw")
    assert caller.returncode == 2 and "not a node's" in caller.stderr


def test_status_of_a_node_that_is_not_there_exits_4(pki: Pki) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = _cli("status", "--target", f"127.0.0.1:{port}", "--identity", str(pki.dir("gov")), "--timeout", "2")
    assert result.returncode == 4, result.stderr
    assert result.stderr.startswith("error: E_PEER_UNAVAILABLE")


def test_start_with_a_taken_port_fails_with_a_clear_error(pki: Pki, tmp_path: pathlib.Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        config = write_parent_config(pki, tmp_path)
        result = _cli("--config", str(config), "start", "--listen", f"127.0.0.1:{port}")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (f"error: E_CONFIG [listen]: --listen 127.0.0.1:{port}: "
                                              f"cannot listen on 127.0.0.1:{port}: Address already in use")


def test_start_on_a_host_that_is_not_local_fails_naming_the_address_and_why(pki: Pki, tmp_path: pathlib.Path) -> None:
    config = write_parent_config(pki, tmp_path)
    result = _cli("--config", str(config), "start", "--listen", "192.0.2.1:50051")  # TEST-NET-1, never local
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "--listen 192.0.2.1:50051: cannot listen on 192.0.2.1:50051: Cannot assign requested address" in result.stderr


def test_a_port_file_left_by_an_earlier_run_is_gone_before_this_one_serves(pki: Pki, tmp_path: pathlib.Path) -> None:
    # Left by a node killed with -9: a script waiting for the file must not connect to a dead port.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        config = write_parent_config(pki, tmp_path)
        port_file = tmp_path / "port"
        port_file.write_text("127.0.0.1:1\n")
        result = _cli("--config", str(config), "start", "--listen", f"127.0.0.1:{port}", "--port-file", str(port_file))
    assert result.returncode != 0 and not port_file.exists()


def test_a_port_file_in_a_directory_that_does_not_exist_is_refused_before_serving(pki: Pki,
                                                                                  tmp_path: pathlib.Path) -> None:
    config = write_parent_config(pki, tmp_path)
    result = _cli("--config", str(config), "start", "--port-file", str(tmp_path / "no-such-dir" / "port"))
    assert result.returncode == 2 and "port-file" in result.stderr and "listening" not in result.stdout


def test_start_without_config_is_a_usage_error() -> None:
    env = {k: v for k, v in os.environ.items() if k != "CREDIT_NODE_CONFIG"}
    result = subprocess.run([*CLI, "start"], capture_output=True, text=True, timeout=DEADLINE_S, env=env,
                            check=False)
    assert result.returncode == 2 and "--config" in result.stderr


def test_a_second_start_of_a_running_node_is_refused_naming_the_running_one(started: Started) -> None:
    # node/instance.py: two instances would drain one outbox and poll the same adapters twice over.
    again = _cli("--config", str(started.config), "start", "--listen", "127.0.0.1:0")
    assert again.returncode == 1, again.stderr
    assert "Traceback" not in again.stderr
    assert "E_NODE_RUNNING" in again.stderr and f"pid {started.process.pid}, start" in again.stderr
    adapters = _cli("--config", str(started.config), "adapters", "run", "--until-idle")
    assert adapters.returncode == 1 and "E_NODE_RUNNING" in adapters.stderr, adapters.stderr
    # Commands that only use the store run beside it.
    assert _cli("--config", str(started.config), "audit", "verify").returncode == 0


def test_a_node_killed_leaves_no_lock_behind(started: Started) -> None:
    started.process.kill()
    started.process.communicate()
    after = _cli("--config", str(started.config), "adapters", "run", "--until-idle", "--json")
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout)["adapters"] == []



def test_a_node_started_again_after_a_kill_does_not_wait_out_what_its_earlier_run_had_leased(
        tmp_path: pathlib.Path) -> None:
    # The earlier run, killed while delivering, had leased its rows for an hour: alone now
    # (node/instance.py), the new run makes them due at once.
    from sqlalchemy import create_engine, select

    from node.sampledata import penalty_rows, write_csv
    from node.store import Outbox
    from node.store.tables import outbox

    unit = "11330102MB0000019G"
    assert _cli("init", str(tmp_path / "n"), "--id", "dept:330102:scjgj", "--level", "department",
                "--unit", unit).returncode == 0
    config = tmp_path / "n" / "node.yaml"
    with config.open("a", encoding="utf-8") as f:
        f.write("parent: {id: 'district:330102', target: '127.0.0.1:1'}\n")
    from node.catalog import load_catalog
    from node.provisioning import bundled_catalog

    write_csv(tmp_path / "p.csv", load_catalog(bundled_catalog()).item("admin_penalty"),
              penalty_rows(5, source_unit=unit))
    assert _cli("--config", str(config), "import", str(tmp_path / "p.csv"), "--item", "admin_penalty").returncode == 0
    engine = create_engine(f"sqlite:///{tmp_path / 'n' / 'node.db'}")
    try:
        now = int(time.time() * 1000)
        assert len(Outbox(engine).claim("district:330102", 100, now_ms=now, lease_ms=3_600_000)) == 5
        process = subprocess.Popen([*CLI, "--config", str(config), "start", "--port-file", str(tmp_path / "port")],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait_for_file(tmp_path / "port", process)  # serving: the rows were resumed before
            with engine.connect() as conn:
                due = [at <= int(time.time() * 1000) for (at,) in conn.execute(select(outbox.c.next_attempt_ms))]
        finally:
            process.terminate()
            _out, err = process.communicate(timeout=DEADLINE_S)
        # Due now, not in an hour (the forwarder claims nothing from a parent it cannot reach).
        assert due == [True] * 5, err
        assert '"outbox.resumed"' in err and '"deliveries": 5' in err
    finally:
        engine.dispose()
