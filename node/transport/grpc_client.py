"""The client side of the gRPC boundary: mTLS channels and thin calls for the CLI and other nodes.

Every ``grpc.RpcError`` is turned into the node's exception tree here, by status code, keeping
the server's stable code from the ``credit-error-code`` trailing metadata
(:func:`error_from_rpc`): ``UNAVAILABLE``/``DEADLINE_EXCEEDED`` → :class:`PeerUnavailableError`
(retryable), ``UNAUTHENTICATED``/``PERMISSION_DENIED`` → :class:`NotAuthorizedError` (refused),
and so on (docs/protocol.md, "gRPC"). ``RESOURCE_EXHAUSTED`` is a refusal only when the node sent
it with its code (``E_RATE_LIMITED``); grpc's own, without one, is a message over a size limit
(:class:`MessageTooLargeError`, naming the limit) or another transport failure. A failed TLS
handshake cannot be told apart from a peer that is down: grpc reports both as ``UNAVAILABLE``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from node.errors import (
    BlockedError,
    ConflictError,
    IntegrityError,
    MessageTooLargeError,
    NodeError,
    NotAuthorizedError,
    NotFoundError,
    PeerUnavailableError,
    TransportError,
    UsageError,
)
from node.hostnames import node_name
from node.identity import LoadedIdentity
from node.records import pb, rpc
from node.tls import grpc_channel_credentials
from node.transport.grpc_server import MAX_MESSAGE_BYTES
from node.transport.peers import CODE_KEY, FIELD_KEY

__all__ = ["echo", "error_from_rpc", "health", "open_channel", "status", "submit", "wait_ready"]

KEEPALIVE_MS = 30_000

_REFUSED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.RESOURCE_EXHAUSTED)
# grpc's words for a message over a limit: "SERVER: Received message larger than max (N vs. M)".
_TOO_LARGE = re.compile(r"(SERVER|CLIENT): (Received|Sent) message larger than max \((\d+) vs\. (\d+)\)")
_WHOSE = {("SERVER", "Received"): "the peer's receive", ("SERVER", "Sent"): "the peer's send",
          ("CLIENT", "Received"): "this client's receive", ("CLIENT", "Sent"): "this client's send"}
_UNAVAILABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED,
                grpc.StatusCode.ABORTED)
_BY_STATUS: dict[grpc.StatusCode, type[NodeError]] = {
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.INVALID_ARGUMENT: UsageError,  # the request as sent is wrong: the caller's to fix
    grpc.StatusCode.OUT_OF_RANGE: UsageError,
    grpc.StatusCode.FAILED_PRECONDITION: ConflictError,
    grpc.StatusCode.DATA_LOSS: IntegrityError,
}


def open_channel(target: str, identity: LoadedIdentity, *, server_name: str | None = None,
                 node_id: str | None = None) -> grpc.Channel:
    """A mutual-TLS channel to ``target`` (``host:port``) presenting ``identity``.

    The server's certificate must carry ``server_name``, else the name of ``node_id`` when the
    server is a known node (a parent, a peer region: ``node.hostnames.node_name``, so no other
    node's certificate passes at that address), else the host of ``target``
    (``grpc.ssl_target_name_override``). Keepalive pings every 30 s notice a dead peer on a
    long-lived stream.
    """
    options: list[tuple[str, str | int]] = [
        ("grpc.keepalive_time_ms", KEEPALIVE_MS),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    if server_name or node_id:
        options.append(("grpc.ssl_target_name_override", server_name or node_name(node_id or "")))
    return grpc.secure_channel(_checked_target(target), grpc_channel_credentials(identity), options=options)


def _checked_target(target: str) -> str:
    """``target`` if it is HOST:PORT (port 1-65535) or a gRPC name with a scheme (dns:, unix: …).

    grpc would take a port of 99999 modulo 65536 and a missing port as 443, and report either as
    an unreachable peer; a mistyped target is the caller's to fix.
    """
    if target.startswith(("dns:", "unix:", "unix-abstract:", "ipv4:", "ipv6:", "vsock:")):
        return target
    host, sep, port = target.rpartition(":")
    if not sep or not host.strip("[]") or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError(f"target {target!r} is not HOST:PORT (a port 1-65535)", field="target")
    return target


def wait_ready(channel: grpc.Channel, timeout: float) -> None:
    """Block until the channel is connected (handshake done) or raise PeerUnavailableError."""
    # A health check that waits for the connection, not grpc.channel_ready_future, whose polling
    # thread raises 'Channel closed!' when the channel is closed soon after (node/transport/grpc_forward.py).
    try:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout,
                                                  wait_for_ready=True)
    except grpc.RpcError as exc:
        code = exc.code() if isinstance(exc, grpc.Call) else None
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise PeerUnavailableError(f"no connection within {timeout:g}s (peer down, or TLS handshake "
                                       "refused)") from None
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return  # an answer (this caller refused, told again at its first real call): connected
        raise error_from_rpc(exc) from None


def error_from_rpc(error: grpc.RpcError) -> NodeError:
    """The node error a failed call stands for (status code + the server's stable code)."""
    code_fn = getattr(error, "code", None)
    status = code_fn() if callable(code_fn) else grpc.StatusCode.UNKNOWN
    details_fn = getattr(error, "details", None)
    details = (details_fn() if callable(details_fn) else "") or (status.name if status else "failed")
    trailing_fn = getattr(error, "trailing_metadata", None)
    trailing = dict(trailing_fn() or ()) if callable(trailing_fn) else {}
    code = str(trailing.get(CODE_KEY, "")) or None
    field = str(trailing.get(FIELD_KEY, ""))
    message = _strip_code(details, code)
    if status == grpc.StatusCode.RESOURCE_EXHAUSTED and code is None:
        # Not the node's refusal (that carries its code): grpc's own, which no right would change.
        return _exhausted(details)
    if status in _REFUSED:
        cls: type[NodeError] = BlockedError if code == BlockedError.code else NotAuthorizedError
        return cls(message, field=field, code=code)
    if status in _UNAVAILABLE:
        if "Hostname Verification Check failed" in message:  # grpc's words; the name is ours to explain
            message = ("the server's certificate is not for the name checked (the node id the server must "
                       f"be, the server name given, or the target's host): {message}")
        return PeerUnavailableError(message, field=field, code=code)
    if status in _BY_STATUS:
        return _BY_STATUS[status](message, field=field, code=code)
    if status == grpc.StatusCode.UNIMPLEMENTED:
        return TransportError(f"the peer does not implement this call: {message}", code="E_UNIMPLEMENTED")
    return NodeError(message, field=field, code=code or "E_REMOTE")


def _exhausted(details: str) -> TransportError:
    found = _TOO_LARGE.search(details)
    if found is not None:
        side, way, size, limit = found.groups()
        return MessageTooLargeError(f"a message of {int(size):,} bytes is over {_WHOSE[side, way]} limit of "
                                    f"{int(limit):,} bytes ({details}); send less in one call")
    if "larger than max" in details:
        return MessageTooLargeError(f"a message is over a size limit ({details}); send less in one call")
    return TransportError(f"the call ran out of a resource: {details}")


def _strip_code(details: str, code: str | None) -> str:
    """``CODE [field]: message`` → ``message`` (the code and field travel separately)."""
    if code and details.startswith(code):
        head, sep, rest = details.partition(": ")
        if sep and head.split(" ")[0] == code:
            return rest
    return details


def submit(channel: grpc.Channel, requests: Iterable[pb.SubmitRequest], *,
           timeout: float | None = None) -> Iterator[pb.SubmitResponse]:
    """Stream ``requests`` to ``Exchange.Submit``; yields one response per request, as they come."""
    stub = rpc.ExchangeStub(channel)  # type: ignore[no-untyped-call]
    try:
        yield from stub.Submit(iter(requests), timeout=timeout)
    except grpc.RpcError as exc:
        raise error_from_rpc(exc) from None


def status(channel: grpc.Channel, timeout: float = 10.0) -> pb.StatusResponse:
    try:
        stub = rpc.AdminStub(channel)  # type: ignore[no-untyped-call]
        response: pb.StatusResponse = stub.Status(pb.StatusRequest(), timeout=timeout)
    except grpc.RpcError as exc:
        raise error_from_rpc(exc) from None
    return response


def echo(channel: grpc.Channel, payload: bytes = b"", timeout: float = 10.0) -> bytes:
    try:
        stub = rpc.AdminStub(channel)  # type: ignore[no-untyped-call]
        response: pb.EchoResponse = stub.Echo(pb.EchoRequest(payload=payload), timeout=timeout)
    except grpc.RpcError as exc:
        raise error_from_rpc(exc) from None
    return bytes(response.payload)


def health(channel: grpc.Channel, service: str = "", timeout: float = 10.0) -> str:
    """The standard health check: ``SERVING``, ``NOT_SERVING``, ``SERVICE_UNKNOWN`` …"""
    try:
        response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                             timeout=timeout)
    except grpc.RpcError as exc:
        raise error_from_rpc(exc) from None
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))
