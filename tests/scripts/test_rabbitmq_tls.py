"""scripts/rabbitmq-tls: a real TLS RabbitMQ with EXTERNAL (client certificate) auth.

Needs RabbitMQ installed locally; skipped without it, failed without it under CI=1.
One broker serves the whole module (tests/broker_fixture.py); the lifecycle test runs
its own so it can crash and stop it. Expect ~15 s per broker boot on a 2-CPU machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pika
import pika.exceptions
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # plain `pytest` (not `python -m pytest`) from elsewhere
    sys.path.insert(0, str(REPO_ROOT))

from tests.broker_fixture import (  # noqa: E402
    EXIT_NOT_INSTALLED,
    CertificateAuthority,
    run_script,
    skip_or_fail,
    tls_broker,  # noqa: F401  (pytest fixture)
)

pytestmark = pytest.mark.slow  # real broker processes

NODE = "district:330106"
SIBLING = "district:330107"
PARENT = "city:330100"
UP_EXCHANGE = "credit.up"
PARENT_QUEUE = f"up.{PARENT}"


def down_queue(node_id: str) -> str:
    return f"down.{node_id}"


@pytest.fixture(scope="module")
def federation(tls_broker):  # noqa: F811  (the imported fixture)
    """Users and topology: PARENT administers, NODE has the node permission model."""
    tls_broker.add_user(PARENT, configure=".*", write=".*", read=".*", topic_permissions=False)
    tls_broker.add_user(NODE)  # defaults: write credit.up with keys NODE[.x], read down.NODE
    with tls_broker.connect(PARENT) as conn:
        ch = conn.channel()
        ch.exchange_declare(UP_EXCHANGE, exchange_type="topic", durable=True)
        ch.queue_declare(PARENT_QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
        ch.queue_bind(PARENT_QUEUE, UP_EXCHANGE, routing_key="#")
        for node_id in (NODE, SIBLING):
            ch.queue_declare(down_queue(node_id), durable=True)
    return tls_broker


def receive(channel, queue: str, body: bytes, timeout: float = 15.0) -> pika.BasicProperties:
    """Consume from queue until `body` arrives (acking everything seen); fail after timeout."""
    deadline = time.monotonic() + timeout
    try:
        for method, properties, got in channel.consume(queue, inactivity_timeout=1.0):
            if method is not None:
                channel.basic_ack(method.delivery_tag)
                if got == body:
                    return properties
            if time.monotonic() > deadline:
                break
    finally:
        channel.cancel()
    pytest.fail(f"message {body!r} did not arrive on {queue} within {timeout}s")


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def assert_channel_refused(excinfo: pytest.ExceptionInfo, *fragments: str) -> None:
    error = excinfo.value
    assert error.reply_code == 403, error
    for fragment in fragments:
        assert fragment in error.reply_text, error.reply_text


# (a) ------------------------------------------------------------------------------------
def test_registered_node_logs_in_with_its_certificate_and_exchanges_messages(federation):
    broker = federation
    body_up = f"record {uuid.uuid4()}".encode()
    body_down = f"receipt {uuid.uuid4()}".encode()
    with broker.connect(NODE) as node_conn, broker.connect(PARENT) as parent_conn:
        # The broker took the user name from the certificate CN, via EXTERNAL.
        listing = broker.ctl("list_connections", "user", "auth_mechanism", "ssl_protocol", "--silent")
        rows = {tuple(line.split("\t")) for line in listing.splitlines()}
        assert any(r[:2] == (NODE, "EXTERNAL") and r[2] in ("tlsv1.3", "tlsv1.2") for r in rows), listing

        node_ch = node_conn.channel()
        node_ch.confirm_delivery()
        # Confirmed + mandatory: returns only once the broker has routed and accepted it.
        node_ch.basic_publish(
            UP_EXCHANGE, f"{NODE}.records", body_up,
            properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent),
            mandatory=True,
        )
        parent_ch = parent_conn.channel()
        receive(parent_ch, PARENT_QUEUE, body_up)

        parent_ch.confirm_delivery()
        parent_ch.basic_publish("", down_queue(NODE), body_down, mandatory=True)
        receive(node_ch, down_queue(NODE), body_down)


# (b), (c) -------------------------------------------------------------------------------
# With TLS 1.3 the server checks the client certificate after the client has finished its
# side of the handshake, so the client sees either the server's alert or just the stream
# closing (EOF/reset), depending on timing. The test therefore checks both ends: the
# client never reached AMQP login, and the broker logged the alert it sent.
TLS_LEVEL_FAILURES = ("ALERT", "SSLEOFError", "SSLZeroReturnError", "ConnectionResetError", "EOF occurred")


def assert_refused_during_tls(broker, params, server_alert: str) -> None:
    log_offset = broker.log_file.stat().st_size
    with pytest.raises(pika.exceptions.AMQPConnectionError) as excinfo:
        pika.BlockingConnection(params)
    error = excinfo.value
    assert not isinstance(error, (pika.exceptions.ProbableAuthenticationError, pika.exceptions.AuthenticationError))
    assert any(marker in str(error) for marker in TLS_LEVEL_FAILURES), error

    def alert_logged() -> bool:
        with broker.log_file.open("rb") as log:
            log.seek(log_offset)
            return server_alert.encode() in log.read()

    wait_for(alert_logged, 10, f"the broker to log {server_alert!r}")


def test_client_without_certificate_fails_the_tls_handshake(federation):
    params = federation.connection_parameters(None)  # trusts the CA, presents no certificate
    assert_refused_during_tls(federation, params, "SERVER ALERT: Fatal - Certificate required")


def test_certificate_from_another_ca_is_refused(federation, tmp_path):
    # Same CN as a registered user: only the issuer is wrong.
    rogue_cert, rogue_key = CertificateAuthority(tmp_path / "rogue", name="rogue CA").issue(NODE)
    context = federation.ssl_context(None)
    context.load_cert_chain(str(rogue_cert), str(rogue_key))
    params = federation.connection_parameters(None, ssl_context=context)
    assert_refused_during_tls(federation, params, "SERVER ALERT: Fatal - Unknown CA")


# (d) ------------------------------------------------------------------------------------
def test_certificate_of_an_unregistered_node_is_refused_at_login(federation):
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as excinfo:
        federation.connect("district:999999")
    assert "ACCESS_REFUSED" in str(excinfo.value)
    assert "EXTERNAL" in str(excinfo.value)


def test_password_login_is_not_offered(federation):
    # Valid client certificate, but PLAIN credentials: only EXTERNAL exists, guest is gone.
    params = federation.connection_parameters(NODE, credentials=pika.PlainCredentials("guest", "guest"))
    with pytest.raises(pika.exceptions.AuthenticationError):
        pika.BlockingConnection(params)
    users = federation.ctl("list_users", "--silent")
    assert "guest" not in {line.split("\t")[0] for line in users.splitlines()}


# (e) ------------------------------------------------------------------------------------
@pytest.mark.parametrize("routing_key", [NODE, f"{NODE}.records", f"{NODE}.records.batch"])
def test_node_may_publish_its_own_routing_keys(federation, routing_key):
    with federation.connect(NODE) as conn:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish(UP_EXCHANGE, routing_key, b"mine", mandatory=True)  # raises if refused


@pytest.mark.parametrize(
    "routing_key",
    [
        f"{SIBLING}.records",      # another node's key
        "district:3301060.records",  # our id is only a prefix of this id
        f"{NODE}x",                # no separator after our id
        f"x.{NODE}.records",       # our id, but not at the start
        "",
        "#",
    ],
)
def test_topic_permissions_refuse_other_routing_keys(federation, routing_key):
    with federation.connect(NODE) as conn:
        ch = conn.channel()
        ch.confirm_delivery()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
            ch.basic_publish(UP_EXCHANGE, routing_key, b"not mine")
        assert_channel_refused(excinfo, f"access to topic '{routing_key}'", UP_EXCHANGE, NODE)
        # A channel error, not a connection error: the node can carry on.
        assert conn.is_open
        again = conn.channel()
        again.confirm_delivery()
        again.basic_publish(UP_EXCHANGE, f"{NODE}.records", b"still fine", mandatory=True)


def test_node_may_not_publish_elsewhere_or_read_other_queues(federation):
    with federation.connect(NODE) as conn:
        ch = conn.channel()
        ch.confirm_delivery()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
            ch.basic_publish("amq.topic", f"{NODE}.records", b"wrong exchange")
        assert_channel_refused(excinfo, "exchange 'amq.topic'")

        ch = conn.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
            ch.basic_consume(down_queue(SIBLING), lambda *a: None)
        assert_channel_refused(excinfo, f"queue '{down_queue(SIBLING)}'")

        ch = conn.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as excinfo:
            ch.queue_declare(f"up.{NODE}.private", durable=True)
        assert_channel_refused(excinfo, f"queue 'up.{NODE}.private'")  # declaring needs configure


@pytest.mark.parametrize("spelling", ["{dir}/", "{parent}//{name}", "{parent}/./{name}", "./{name}"])
def test_any_spelling_of_the_state_dir_names_the_same_running_broker(federation, spelling):
    # Processes were recognised by the state dir exactly as spelt at start: with a trailing
    # slash `status` said "not running" and `stop` cleared the pid files of a live broker.
    state = federation.dir
    spelt = spelling.format(dir=state, parent=state.parent, name=state.name)
    result = subprocess.run([str(REPO_ROOT / "scripts" / "rabbitmq-tls"), "status", "--dir", spelt],
                            capture_output=True, text=True, timeout=60, cwd=state.parent, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("running:")
    assert f"dir {state}," in result.stdout or result.stdout.rstrip().endswith(f"dir {state}")


# (f) ------------------------------------------------------------------------------------
def plain_broker_answers() -> bool:
    """Does the machine's own broker on 127.0.0.1:5672 speak AMQP (Connection.Start)?"""
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=5) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            frame = sock.recv(7)
    except OSError:
        return False
    return len(frame) == 7 and frame[0] == 1  # a method frame on channel 0


def live_processes_of(state_dir: Path) -> list[str]:
    """Non-zombie processes started for state_dir (the script marks their environment)."""
    marker = f"CREDIT_RMQ_STATE_DIR={state_dir}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                status = (proc / "status").read_text()
                if "\nState:\tZ" not in status:
                    found.append(f"{proc.name}: {(proc / 'cmdline').read_bytes()[:120]!r}")
        except OSError:
            continue
    return found


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs procfs to find processes")
def test_lifecycle_is_idempotent_survives_a_crash_and_leaves_nothing_behind(tmp_path):
    plain_before = plain_broker_answers()
    plain_plugins = Path("/etc/rabbitmq/enabled_plugins")
    plugins_before = plain_plugins.read_bytes() if plain_plugins.exists() else None

    ca = CertificateAuthority(tmp_path / "pki")
    cert, key = ca.issue("localhost", server=True, dns_names=["localhost"], ip_addresses=["127.0.0.1"])
    state = tmp_path / "state"

    def script(*args: str):
        return run_script(args[0], "--dir", state, *args[1:])

    assert script("status").returncode == 3
    assert script("stop").returncode == 0  # nothing to stop is fine

    started = script("start", "--port", "auto", "--ca", str(ca.ca_pem), "--cert", str(cert), "--key", str(key))
    if started.returncode != 0:
        script("stop")
        what = "is not installed" if started.returncode == EXIT_NOT_INSTALLED else "failed to start"
        skip_or_fail(f"RabbitMQ {what}:\n{started.stderr}")
    try:
        port = int(started.stdout.strip())
        assert (state / "port").read_text().strip() == str(port)
        assert port_open(port)
        node = (state / "node").read_text().strip()
        assert node == f"credit-tls-{port}@localhost"
        assert (state / "tls" / "server.key").stat().st_mode & 0o777 == 0o600

        again = script("start", "--port", "auto")  # certificates are remembered
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip() == str(port)
        assert "already running" in again.stderr
        assert script("status").returncode == 0
        assert script("add-user", "--user", NODE).returncode == 0

        # Crash: kill -9 the broker. `start` must recover from the stale state dir.
        beam_pid = int((state / "rabbit.pid").read_text())
        os.kill(beam_pid, signal.SIGKILL)
        wait_for(lambda: script("status").returncode == 3, 30, "status to report the crash")
        restarted = script("start", "--port", "auto")
        assert restarted.returncode == 0, restarted.stderr
        assert restarted.stdout.strip() == str(port)  # same port, hence same node and data
        assert NODE in script("ctl", "--", "list_users", "--silent").stdout
    finally:
        stopped = script("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert script("stop").returncode == 0  # idempotent
    assert script("status").returncode == 3
    assert not (state / "port").exists()
    assert live_processes_of(state) == []
    assert not port_open(port)
    if plain_before:
        assert plain_broker_answers(), "the machine's plain RabbitMQ on 5672 stopped answering"
    if plugins_before is not None:
        assert plain_plugins.read_bytes() == plugins_before


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs procfs to find processes")
def test_start_waits_for_a_broker_whose_launch_is_slow_to_reach_rabbitmq_server(tmp_path):
    # The process `start` launches is setsid, then env, then rabbitmq-server; only the last carries
    # the state dir's mark in its environment. A busy machine makes that chain slow (here a setsid
    # that dawdles): a start must not take the unmarked launcher for a broker that died at once,
    # give up, and leave the broker it launched running behind it.
    real = subprocess.run(["sh", "-c", "command -v setsid"], capture_output=True, text=True).stdout.strip()
    if not real:
        skip_or_fail("setsid is not installed")
    slow = tmp_path / "bin"
    slow.mkdir()
    launched = tmp_path / "launched.pid"  # the launcher's pid stays the broker shell's through each exec
    (slow / "setsid").write_text(f"#!/bin/sh\necho $$ >{launched}\nsleep 2\nexec {real} \"$@\"\n")
    (slow / "setsid").chmod(0o755)
    ca = CertificateAuthority(tmp_path / "pki")
    cert, key = ca.issue("localhost", server=True, dns_names=["localhost"], ip_addresses=["127.0.0.1"])
    state = tmp_path / "state"
    env = {**os.environ, "PATH": f"{slow}:{os.environ['PATH']}"}
    started = subprocess.run([str(REPO_ROOT / "scripts" / "rabbitmq-tls"), "start", "--dir", str(state), "--port",
                              "auto", "--ca", str(ca.ca_pem), "--cert", str(cert), "--key", str(key)],
                             capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL, env=env)
    try:
        if started.returncode == EXIT_NOT_INSTALLED:
            skip_or_fail(f"RabbitMQ is not installed:\n{started.stderr}")
        assert started.returncode == 0, started.stderr
        assert port_open(int(started.stdout.strip()))
    finally:
        run_script("stop", "--dir", state)
        if started.returncode != 0 and launched.exists():
            # A start that gave up left no state to stop by: end what it launched (its session).
            pid = int(launched.read_text())
            for kill in (os.killpg, os.kill):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    kill(pid, signal.SIGKILL)
    assert live_processes_of(state) == []
