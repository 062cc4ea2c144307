"""The node's gRPC endpoint: grpcio's asyncio server, mutual TLS only, health and reflection.

One :class:`GrpcServer` is one runtime extension (``node.runtime``): ``start`` binds
``server.listen`` (port 0 picks a free port; :attr:`GrpcServer.address` tells which) and serves
the services it was given; ``stop`` drains in-flight calls for ``grace_s`` seconds, then cancels
what is left. There is no insecure port (DESIGN §2.4): the only credentials are
``tls.grpc_server_credentials``, which require a client certificate from the federation CA;
revocation is then enforced per call (``node.transport.peers.caller_identity``).

The server is ``grpc.aio`` on an event loop of its own thread, whose default executor is a pool
of ``max_workers`` threads (``node.transport.handler_pool``). Handlers written as plain functions
(most of them: they read and write the store) run there against a copy of their call, never the
call itself, which grpc frees when the call ends (``node.transport.threaded``: a handler still
running after its deadline crashed the process); they must be unary. Handlers written as
coroutines run on the loop itself and hand what blocks to the same pool, so a call that never
waits (``Admin.Echo``, a local ``Query.Lookup``) costs no thread hand-off, and
``Exchange.Submit`` reads its stream there. The threaded
``grpc.server`` spent more CPU passing each call between its threads than a lookup spent on the
lookup (docs/decisions/grpc-asyncio-server.md).

Besides the node's services the server runs the standard ``grpc.health.v1.Health`` service
(``SERVING`` for ``""`` and every registered service, health and reflection included, while
running, ``NOT_SERVING`` while draining; ``List`` gives them all at once) and server reflection, so ``grpcurl`` and load balancers
work without the .proto files.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from node.errors import ConfigError
from node.hostnames import split_host_port
from node.identity import LoadedIdentity
from node.records import pb
from node.tls import grpc_server_credentials
from node.transport.handler_pool import HandlerPool
from node.transport.registration import Admit, register
from node.transport.unforeseen import quiet_undelivered

__all__ = ["MAX_MESSAGE_BYTES", "GrpcServer", "Service"]

log = logging.getLogger(__name__)

_RELEASE_S = 5.0  # at least this long for cancelled handlers to leave the pool at stop
_RELEASE_POLL_S = 0.01

# A SubmitRequest of a few thousand signed records is several MB; grpc's default limit is 4 MB.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Clients send keepalive pings every 30 s (grpc_client); allow them, also on idle streams.
_SERVER_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.so_reuseport", 0),  # a second node on the same port must fail to start, not share it
)


class _Health(health_aio.HealthServicer):  # type: ignore[misc]
    """grpcio-health's asyncio servicer with ``List``, which its generated base leaves unimplemented
    although the health.proto it ships declares it (what ``Check`` answers, for every name)."""

    async def List(self, request: health_pb2.HealthListRequest,
                   context: grpc.aio.ServicerContext[object, object]) -> health_pb2.HealthListResponse:
        statuses = dict(self._server_status)  # Check's own table; copied: set() may run meanwhile
        return health_pb2.HealthListResponse(statuses={
            name: health_pb2.HealthCheckResponse(status=status) for name, status in statuses.items()})


class _ReflectionPool:
    """The default descriptor pool as reflection reads it, with the file of a method found too:
    protobuf's upb pool finds messages, fields, enums and services by name but no method
    (``credit.v1.Exchange.Submit``), which ``grpcurl describe`` asks reflection for."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def FindFileContainingSymbol(self, symbol: str) -> Any:
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            service, _, method = symbol.rpartition(".")
            try:
                found = self._pool.FindServiceByName(service)
            except KeyError:
                raise KeyError(symbol) from None
            if method not in found.methods_by_name:
                raise KeyError(symbol) from None
            return found.file


@dataclass(frozen=True)
class Service:
    """A service to serve: its full name (``credit.v1.Exchange``) and how to add it to a server."""

    name: str
    register: Callable[[grpc.aio.Server], None]


def bind_failure(host: str, port: int) -> str:
    """Why the OS refuses ``host:port`` (asked again with a plain socket, as grpc only says it failed)."""
    try:
        addresses = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        return f"the host cannot be resolved ({exc.args[-1]})"
    for family, kind, proto, _name, sockaddr in addresses:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as grpc binds
                probe.bind(sockaddr)
        except OSError as exc:
            return exc.strerror or str(exc)
    return "address in use or not local?"


class GrpcServer:
    def __init__(self, identity: LoadedIdentity, listen: str, services: Sequence[Service], *,
                 max_workers: int = 16, grace_s: float = 10.0, admit: Admit | None = None) -> None:
        self._host, self._port_wanted = split_host_port(listen)
        self._listen = listen
        self._identity = identity
        self._services = tuple(services)
        self._max_workers = max_workers
        self._grace_s = grace_s
        self._admit = admit  # health and reflection check no caller of their own: this one, if given
        self._running: _Running | None = None
        self._port = 0
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return "grpc-server"

    @property
    def port(self) -> int:
        """The bound port (0 before ``start``)."""
        return self._port

    @property
    def address(self) -> str:
        """``host:port`` as bound (the configured host with the real port)."""
        return f"{self._host}:{self._port}"

    def start(self) -> None:
        with self._lock:
            if self._running is not None:
                return
            pool = HandlerPool(max_workers=self._max_workers, thread_name_prefix="grpc")
            loop = asyncio.new_event_loop()
            loop.set_default_executor(pool)
            thread = threading.Thread(target=loop.run_forever, name="grpc-loop", daemon=True)
            thread.start()
            try:
                server, status, port = asyncio.run_coroutine_threadsafe(self._serve(pool), loop).result()
            except BaseException:
                _close(loop, thread, pool)
                raise
            self._running, self._port = _Running(loop, thread, pool, server, status), port
        log.info("server.started", extra={"address": self.address, "services": [s.name for s in self._services]})

    async def _serve(self, pool: HandlerPool) -> tuple[grpc.aio.Server, _Health, int]:
        # grpc.aio objects belong to the loop they are made on: everything here runs on it.
        quiet_undelivered()
        server = grpc.aio.server(migration_thread_pool=pool, options=_SERVER_OPTIONS)
        for service in self._services:
            service.register(server)
        # Health and reflection are services of the server too: a probe that checks each name
        # reflection lists must not find one of them unknown (NOT_FOUND).
        names = [s.name for s in self._services] + [health.SERVICE_NAME, reflection.SERVICE_NAME]
        # Registered as the node's own services are: a request that is no message is answered
        # INVALID_ARGUMENT / E_BAD_REQUEST, not UNKNOWN with protobuf's words and a logged traceback.
        status = _Health()
        register(health_pb2_grpc.add_HealthServicer_to_server, status, health.SERVICE_NAME, server, admit=self._admit)
        register(reflection_pb2_grpc.add_ServerReflectionServicer_to_server, reflection.aio.ReflectionServicer(
                     names, pool=_ReflectionPool(pb.DESCRIPTOR.pool)),
                 reflection.SERVICE_NAME, server, admit=self._admit)
        try:
            port = server.add_secure_port(self._listen, grpc_server_credentials(self._identity))
        except RuntimeError:  # grpcio >= 1.50 raises instead of returning 0
            port = 0
        if port == 0:
            await server.stop(None)  # release what the server holds before its loop closes
            # The operator's address to fix (another process on the port, a host not on this
            # machine): a configuration error with the OS's reason, which grpc does not give.
            raise ConfigError(f"cannot listen on {self._listen}: {bind_failure(self._host, self._port_wanted)}",
                              field="server.listen")
        await server.start()
        for service_name in ("", *names):
            await status.set(service_name, health_pb2.HealthCheckResponse.SERVING)
        return server, status, port

    def stop(self) -> None:
        """Refuse new calls, let in-flight ones finish within ``grace_s``, then cancel the rest."""
        with self._lock:
            running, self._running = self._running, None
        if running is None:
            return
        log.info("server.draining", extra={"grace_s": self._grace_s})
        try:
            asyncio.run_coroutine_threadsafe(self._drain(running), running.loop).result()
        finally:
            _close(running.loop, running.thread, running.pool)
        log.info("server.stopped", extra={"address": self.address})

    async def _drain(self, running: _Running) -> None:
        await running.health.enter_graceful_shutdown()  # health says NOT_SERVING while we drain
        await running.server.stop(self._grace_s)
        # Handlers still in the pool may need the loop to send their answer or abort; the loop
        # runs until the pool is idle (bounded), so none waits on a stopped loop.
        deadline = time.monotonic() + max(self._grace_s, _RELEASE_S)
        while running.pool.busy() and time.monotonic() < deadline:
            await asyncio.sleep(_RELEASE_POLL_S)
        if running.pool.busy():  # abandoned: the pool's threads are daemons (node/transport/handler_pool.py)
            log.warning("server.handlers_still_running", extra={"count": running.pool.busy(),
                                                                  "threads": running.pool.stacks()})


@dataclass(frozen=True)
class _Running:
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    pool: HandlerPool
    server: grpc.aio.Server
    health: _Health


def _close(loop: asyncio.AbstractEventLoop, thread: threading.Thread, pool: HandlerPool) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.close()
    # Calls cancelled at the end of the grace period may still be running in the pool; they
    # finish on their own (their answers go nowhere), the node does not wait for them here.
    pool.shutdown(wait=False, cancel_futures=True)
