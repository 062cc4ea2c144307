"""Prometheus metrics over mutual TLS (``metrics.listen``): what an operator watches, read at scrape time.

The numbers come from the store when Prometheus asks (records per item, deliveries waiting and
dead per destination, the age of the oldest waiting one, dead letters, refused rows not yet
corrected, each peer's last contact), so nothing on the import or lookup path counts anything and
a restarted node reports the same as before. They are counts, not records: as ``Admin.Status``,
they disclose nothing a query would, and only callers with role ``node``, ``admin`` or
``auditor`` get them.

Like every other endpoint of the node, it is mutual TLS only: Prometheus scrapes with a client
certificate from the federation CA (``scheme: https`` and ``tls_config`` with ``cert_file`` and
``key_file``, docs/operations.md). The TLS handshake runs in the connection's own thread, so a
client that connects and says nothing holds up no one else; at most ``MAX_CONNECTIONS`` are served
at once (others wait in the listen queue), and each must finish its handshake and send its request
within ``REQUEST_DEADLINE_S`` or is cut off: a client sending a byte at a time (slowloris), with or
without a certificate, holds a thread and a descriptor for that long, not for good.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from node.errors import ConfigError, NodeError
from node.identity import LoadedIdentity
from node.store import Store
from node.tls import https_server_context, peer_identity
from node.transport.contacts import Contact
from node.truststore import TrustStore

__all__ = ["METRICS_ROLES", "MetricsServer", "NodeCollector"]

METRICS_ROLES = frozenset({"node", "admin", "auditor"})
HANDSHAKE_TIMEOUT_S = 10.0
REQUEST_DEADLINE_S = 10.0  # from the connection to the end of the request's headers, whatever it sends
MAX_CONNECTIONS = 8  # served at once; Prometheus scrapes one at a time per job
log = logging.getLogger(__name__)


class NodeCollector(Collector):
    """The node's state as Prometheus metric families, read from the store at each scrape."""

    def __init__(self, *, node_id: str, level: str, catalog_version: str, store: Store,
                 contacts: Callable[[], list[Contact]], clock: Callable[[], float] = time.time) -> None:
        self._info = {"node": node_id, "level": level, "catalog_version": catalog_version}
        self._store = store
        self._contacts = contacts
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        yield InfoMetricFamily("credit_node", "The node: its id, level and catalogue release", value=self._info)
        up = GaugeMetricFamily("credit_node_store_up", "1 if the store answered this scrape, else 0")
        try:
            families = self._from_store()
        except NodeError as exc:  # the scrape says so instead of failing: the store is what to look at
            log.warning("metrics.store_failed", extra={"code": exc.code, "reason": exc.message})
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families
        yield self._peers()

    def _from_store(self) -> list[Metric]:
        now_ms = self._clock() * 1000
        records = GaugeMetricFamily("credit_node_records", "Records held (current revisions), per item",
                                    labels=["item"])
        for item, n in sorted(self._store.records.counts().items()):
            records.add_metric([item], n)
        pending = GaugeMetricFamily("credit_node_outbox_pending", "Deliveries waiting, per destination",
                                    labels=["destination"])
        dead = GaugeMetricFamily("credit_node_outbox_dead", "Deliveries that used up their retries, per destination",
                                 labels=["destination"])
        oldest = GaugeMetricFamily("credit_node_outbox_oldest_pending_seconds",
                                   "Age of the oldest waiting delivery, per destination", labels=["destination"])
        for destination, st in sorted(self._store.outbox.status().items()):
            pending.add_metric([destination], st["pending"])
            dead.add_metric([destination], st["dead"])
            if st["oldest_ms"] is not None:
                oldest.add_metric([destination], max(0.0, (now_ms - st["oldest_ms"]) / 1000))
        inbound = GaugeMetricFamily("credit_node_inbound_dead_letters",
                                    "Records received that could not be accepted, not replayed yet",
                                    value=self._store.inbound.count())
        refused = GaugeMetricFamily("credit_node_rejections_open", "Refused rows not corrected yet",
                                    value=self._store.rejections.open_count())
        return [records, pending, dead, oldest, inbound, refused]

    def _peers(self) -> Metric:
        seen = GaugeMetricFamily("credit_node_peer_last_contact_timestamp_seconds",
                                 "When each parent, child or peer was last heard from (0: never)",
                                 labels=["peer", "relation"])
        for c in self._contacts():
            seen.add_metric([c.node_id, c.relation], c.last_contact_ms / 1000)
        return seen


class MetricsServer:
    """An extension (start/stop) serving ``GET /metrics`` over mutual TLS on ``listen``."""

    def __init__(self, identity: LoadedIdentity, trust: TrustStore, listen: str, registry: CollectorRegistry) -> None:
        from node.hostnames import split_host_port

        try:
            self._host, self._port = split_host_port(listen)
        except ConfigError:
            raise ConfigError(f"metrics.listen: {listen!r} is not HOST:PORT", field="metrics.listen") from None
        self._context = https_server_context(identity)
        self._trust = trust
        self._registry = registry
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        port = self._port if self._server is None else self._server.server_port
        return f"{self._host}:{port}"

    def start(self) -> None:
        try:
            self._server = _Server((self._host, self._port), self)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {self._host}:{self._port} for metrics: {exc.strerror}",
                              field="metrics.listen") from None
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)
        self._thread.start()
        log.info("metrics.started", extra={"address": self.address})

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None

    def handshake(self, raw: socket.socket) -> ssl.SSLSocket | None:
        raw.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            return self._context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as exc:  # no certificate, another CA, a port scan: not our business
            log.info("metrics.handshake_failed", extra={"reason": str(exc)})
            return None

    def page(self, peer_der: bytes | None) -> tuple[int, bytes]:
        """(HTTP status, body) for a scrape by the certificate ``peer_der``."""
        if not peer_der:
            return 403, b"a client certificate is required\n"
        try:
            who = peer_identity(peer_der, self._trust)
        except NodeError as exc:  # expired or revoked since the handshake let it in
            log.warning("metrics.refused", extra={"code": exc.code, "reason": exc.message})
            return 403, f"{exc.code}: {exc.message}\n".encode()
        if who.role not in METRICS_ROLES:
            log.warning("metrics.refused", extra={"peer": who.node_id, "role": who.role})
            return 403, f"E_NOT_AUTHORIZED: role {who.role} may not read the metrics\n".encode()
        return 200, generate_latest(self._registry)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], owner: MetricsServer) -> None:
        self.owner = owner
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        # With every slot taken, the connection waits in the listen queue; the short wait keeps
        # serve_forever() answering shutdown() (an OSError here is "nothing accepted this time").
        if not self._slots.acquire(timeout=0.5):
            raise OSError("metrics: every connection slot is taken")
        try:
            return super().get_request()
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def finish_request(self, request: Any, client_address: Any) -> None:
        cut = request.dup()  # wrap_socket() takes over the socket: this handle can still shut it down
        deadline = threading.Timer(REQUEST_DEADLINE_S, _shut, (cut,))
        deadline.daemon = True
        deadline.start()
        try:
            tls = self.owner.handshake(request)
            if tls is None:
                return
            try:
                _Handler(tls, client_address, self, deadline)
            finally:
                tls.close()
        finally:
            deadline.cancel()
            cut.close()


def _shut(sock: socket.socket) -> None:
    """Past the deadline: wake the connection's thread from its read, with end of file."""
    with contextlib.suppress(OSError):  # closed meanwhile
        sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def version_string(self) -> str:  # the Server header: not the Python version http.server would tell
        return "credit-node"

    def __init__(self, request: Any, client_address: Any, server: _Server,
                 deadline: threading.Timer | None = None) -> None:
        self._deadline = deadline
        super().__init__(request, client_address, server)

    def parse_request(self) -> bool:
        parsed = super().parse_request()  # reads the headers
        if self._deadline is not None:
            self._deadline.cancel()  # the request is in: answering it is the node's own work
        return parsed

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:  # a load balancer's or monitor's probe: GET's status and headers
        self._answer(send_body=False)

    def _refuse_method(self) -> None:
        # A method HTTP knows but this page does not take is 405 with what it takes (RFC 9110
        # 15.5.6); http.server answers every method it has no handler for with 501.
        body = f"method {self.command} not allowed: the metrics are read with GET\n".encode()
        self._send(405, body, "text/plain; charset=utf-8", send_body=True, allow="GET, HEAD")

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse_method

    def _answer(self, *, send_body: bool) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            status, body, kind = 404, b"not found: the metrics are at /metrics\n", "text/plain; charset=utf-8"
        else:
            status, body = self.server.owner.page(self.connection.getpeercert(binary_form=True))
            kind = CONTENT_TYPE_LATEST if status == 200 else "text/plain; charset=utf-8"
        self._send(status, body, kind, send_body=send_body)

    def _send(self, status: int, body: bytes, kind: str, *, send_body: bool, allow: str = "") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        if allow:
            self.send_header("Allow", allow)
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per scrape would drown the node's log; refusals are logged in page()
