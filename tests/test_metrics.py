"""node/metrics.py: Prometheus metrics over mutual TLS, from the store, for node/admin/auditor callers only."""

from __future__ import annotations

import http.client
import pathlib
import socket
import ssl
from collections.abc import Callable, Iterator

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from node import metrics
from node.app import Node, build_node, build_runtime
from node.config import load_config
from node.errors import ConfigError, StoreError
from node.identity import issue, revoke, write_crl
from node.metrics import MetricsServer, NodeCollector
from node.provisioning import init_node
from node.sampledata import penalty_rows, write_csv

UNIT = "11330102MB0000019G"


@pytest.fixture
def node(tmp_path: pathlib.Path) -> Iterator[Node]:
    config = init_node(tmp_path / "n", node_id="dept:330102:scjgj", level="department", unit=UNIT)
    n = build_node(load_config(config))
    try:
        yield n
    finally:
        n.close()


@pytest.fixture
def served(node: Node) -> Iterator[MetricsServer]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node_id=node.config.id, level=node.config.level,
                                    catalog_version=node.catalog.version, store=node.store, contacts=list))
    server = MetricsServer(node.identity, node.trust, "127.0.0.1:0", registry)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _caller(node: Node, tmp_path: pathlib.Path, caller_id: str, role: str) -> pathlib.Path:
    return issue(node.config.path("ca"), caller_id, role, tmp_path / caller_id.replace(":", "_"))


def _scrape(server: MetricsServer, identity: pathlib.Path | None) -> tuple[int, str]:
    status, text, _server_header = _get(server, identity)
    return status, text


def _get(server: MetricsServer, identity: pathlib.Path | None, method: str = "GET") -> tuple[int, str, str | None]:
    ctx = ssl.create_default_context(cafile=str(identity / "ca.pem") if identity else None)
    if identity is None:
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    else:
        ctx.load_cert_chain(identity / "cert.pem", identity / "key.pem")
    host, port = server.address.rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=10)
    try:
        conn.request(method, "/metrics")
        response = conn.getresponse()
        return response.status, response.read().decode(), response.getheader("Server" if method == "GET" else "Allow")
    finally:
        conn.close()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_an_admin_scrape_reads_the_nodes_counts_over_mutual_tls(node: Node, served: MetricsServer,
                                                                 tmp_path: pathlib.Path) -> None:
    write_csv(tmp_path / "p.csv", node.catalog.item("admin_penalty"),
              penalty_rows(12, source_unit=UNIT, bad_every=6))
    node.import_file(tmp_path / "p.csv", "admin_penalty")
    status, text = _scrape(served, _caller(node, tmp_path, "admin:330102:ops", "admin"))
    assert status == 200
    samples = _samples(text)
    assert samples[("credit_node_records", (("item", "admin_penalty"),))] == 10
    assert samples[("credit_node_rejections_open", ())] == 2
    assert samples[("credit_node_store_up", ())] == 1
    assert samples[("credit_node_inbound_dead_letters", ())] == 0
    info = next(k for k in samples if k[0] == "credit_node_info")
    assert dict(info[1]) == {"node": "dept:330102:scjgj", "level": "department",
                             "catalog_version": node.catalog.version}


@pytest.mark.parametrize("role", ["public", "gov", "source"])
def test_a_caller_of_another_role_is_refused_with_403(node: Node, served: MetricsServer, tmp_path: pathlib.Path,
                                                      role: str) -> None:
    status, text = _scrape(served, _caller(node, tmp_path, f"{role}:330102:x", role))
    assert status == 403 and f"role {role} may not read the metrics" in text


def test_without_a_client_certificate_there_is_no_connection(served: MetricsServer) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.RemoteDisconnected)):
        _scrape(served, None)


def test_a_revoked_certificate_is_refused_though_the_handshake_let_it_in(node: Node, served: MetricsServer,
                                                                         tmp_path: pathlib.Path) -> None:
    caller = _caller(node, tmp_path, "admin:330102:gone", "admin")
    assert _scrape(served, caller)[0] == 200
    ca = node.config.path("ca")
    revoke(ca, caller, "key_compromise")
    node.trust.load_crl(write_crl(ca, tmp_path / "crl.pem").read_bytes())
    status, text = _scrape(served, caller)
    assert status == 403 and "revoked" in text


def test_a_client_that_connects_and_says_nothing_holds_up_no_scrape(node: Node, served: MetricsServer,
                                                                     tmp_path: pathlib.Path) -> None:
    host, port = served.address.rsplit(":", 1)
    with socket.create_connection((host, int(port))):  # silent: its handshake waits in its own thread
        assert _scrape(served, _caller(node, tmp_path, "auditor:330102:a", "auditor"))[0] == 200


def test_a_store_that_fails_is_reported_as_down_not_as_a_failed_scrape(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> dict[str, int]:
        raise StoreError("reading records: the server closed the connection")

    monkeypatch.setattr(node.store.records, "counts", broken)
    collector = NodeCollector(node_id="n", level="department", catalog_version="v", store=node.store, contacts=list)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    assert registry.get_sample_value("credit_node_store_up") == 0
    assert registry.get_sample_value("credit_node_records", {"item": "admin_penalty"}) is None


def test_the_runtime_serves_metrics_only_where_configured(tmp_path: pathlib.Path) -> None:
    config = init_node(tmp_path / "c", node_id="city:330100", level="city")
    for listen, expected in (("", 0), ("127.0.0.1:0", 1)):
        text = config.read_text(encoding="utf-8")
        base = text.split("metrics:")[0]
        config.write_text(base + (f"metrics:\n  listen: '{listen}'\n" if listen else ""), encoding="utf-8")
        node = build_node(load_config(config))
        try:
            runtime = build_runtime(node)
            assert sum(isinstance(e, MetricsServer) for e in runtime.extensions) == expected
        finally:
            node.close()


def test_a_listen_address_that_is_no_host_port_is_a_config_error(node: Node) -> None:
    with pytest.raises(ConfigError, match=r"metrics\.listen"):
        MetricsServer(node.identity, node.trust, "nine-four-six-four", CollectorRegistry())


@pytest.fixture
def serve(node: Node) -> Iterator[Callable[[], MetricsServer]]:
    """Start a metrics server when the test says (after it set the limits it wants)."""
    started: list[MetricsServer] = []

    def start() -> MetricsServer:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(NodeCollector(node_id=node.config.id, level=node.config.level,
                                        catalog_version=node.catalog.version, store=node.store, contacts=list))
        server = MetricsServer(node.identity, node.trust, "127.0.0.1:0", registry)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _tls(server: MetricsServer, identity: pathlib.Path, timeout: float) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(identity / "ca.pem"))
    ctx.load_cert_chain(identity / "cert.pem", identity / "key.pem")
    host, port = server.address.rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname=host)
    except BaseException:
        raw.close()
        raise


def test_a_client_sending_its_request_a_byte_at_a_time_is_cut_off_at_the_deadline(
        node: Node, serve: Callable[[], MetricsServer], tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "REQUEST_DEADLINE_S", 0.5)
    server = serve()
    caller = _caller(node, tmp_path, "admin:330102:slow", "admin")
    with _tls(server, caller, timeout=0.1) as conn:
        conn.sendall(b"GET /metrics HTTP/1.0\r\nX-Slow: ")
        for _ in range(100):  # 10 s of a byte every 0.1 s, each well within the per-read timeout
            try:
                if conn.recv(1) == b"":
                    break  # closed by the server: end of file, no response
            except TimeoutError:
                conn.sendall(b"a")
            except (ssl.SSLError, ConnectionError):
                break  # or closed mid-record
        else:
            pytest.fail("the server still reads a request begun 10 s ago")


def test_connections_beyond_the_limit_wait_and_one_holding_a_slot_does_not_stop_the_next_scrape(
        node: Node, serve: Callable[[], MetricsServer], tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "MAX_CONNECTIONS", 1)
    server = serve()
    caller = _caller(node, tmp_path, "admin:330102:ops", "admin")
    holder = _tls(server, caller, timeout=10)  # handshake done: served, waiting for its request
    try:
        with pytest.raises((TimeoutError, socket.timeout)):  # the second waits in the listen queue
            _tls(server, caller, timeout=1).close()
    finally:
        holder.close()
    assert _scrape(server, caller)[0] == 200


def test_the_endpoint_does_not_tell_its_python_version(node: Node, served: MetricsServer,
                                                        tmp_path: pathlib.Path) -> None:
    status, _text, server_header = _get(served, _caller(node, tmp_path, "admin:330102:ops", "admin"))
    assert status == 200 and server_header == "credit-node"


def test_a_head_request_gets_the_status_of_a_scrape_and_no_page(node: Node, served: MetricsServer,
                                                                tmp_path: pathlib.Path) -> None:
    status, text, _allow = _get(served, _caller(node, tmp_path, "admin:330102:ops", "admin"), "HEAD")
    assert (status, text) == (200, "")
    status, _text, _allow = _get(served, _caller(node, tmp_path, "gov:330102:x", "gov"), "HEAD")
    assert status == 403  # the same checks as a scrape: a probe learns nothing more


def test_another_method_is_refused_with_405_naming_the_methods_allowed(node: Node, served: MetricsServer,
                                                                       tmp_path: pathlib.Path) -> None:
    status, text, allow = _get(served, _caller(node, tmp_path, "admin:330102:ops", "admin"), "POST")
    assert status == 405 and allow == "GET, HEAD" and "GET" in text


def test_an_admins_record_signing_certificate_does_not_open_the_metrics(node: Node, served: MetricsServer,
                                                                       tmp_path: pathlib.Path) -> None:
    # Same identity, but the Ed25519 key is for records: it has no extended key usage, which TLS
    # reads as "any use", so the handshake lets it in; the node must not.
    caller = _caller(node, tmp_path, "admin:330102:ops", "admin")
    signing = tmp_path / "signing-as-tls"
    signing.mkdir()
    (signing / "ca.pem").write_bytes((caller / "ca.pem").read_bytes())
    (signing / "cert.pem").write_bytes((caller / "signing-cert.pem").read_bytes())
    (signing / "key.pem").write_bytes((caller / "signing-key.pem").read_bytes())
    assert _scrape(served, caller)[0] == 200
    status, text = _scrape(served, signing)
    assert status == 403 and "no clientAuth" in text
