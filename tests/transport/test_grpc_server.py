"""The gRPC endpoint against real handshakes: mTLS only, revocation per call, health, reflection, drain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from node.errors import (
    BlockedError,
    ConfigError,
    ConflictError,
    IntegrityError,
    NodeError,
    NotAuthorizedError,
    NotFoundError,
    PeerUnavailableError,
    RecordRejected,
    StoreError,
    UnauthenticatedError,
    UsageError,
)
from node.hostnames import split_host_port
from node.identity import issue, load_identity
from node.records import pb, rpc
from node.transport import grpc_client
from node.transport.grpc_server import GrpcServer, Service
from node.transport.peers import CODE_KEY, abort_with_async, status_for
from node.transport.registration import register
from node.transport.unforeseen import guarded

from .conftest import DEADLINE_S, Running
from .nodes import Pki, child_records

SERVICES = ("credit.v1.Exchange", "credit.v1.Admin")


def _raw_channel(running: Running, creds: grpc.ChannelCredentials) -> grpc.Channel:
    return grpc.secure_channel(running.address, creds)


def _echo_error(channel: grpc.Channel) -> grpc.RpcError:
    stub = channel.unary_unary("/credit.v1.Admin/Echo", request_serializer=pb.EchoRequest.SerializeToString,
                               response_deserializer=pb.EchoResponse.FromString)
    with pytest.raises(grpc.RpcError) as err:
        stub(pb.EchoRequest(payload=b"x"), timeout=DEADLINE_S)
    return err.value


def test_mutual_tls_round_trip_on_a_port_chosen_by_the_system(shared: Running) -> None:
    host, port = split_host_port(shared.address)
    assert host == "127.0.0.1" and port > 0
    with shared.channel("gov") as channel:
        assert grpc_client.echo(channel, b"ping") == b"ping"


def test_handshake_without_a_client_certificate_fails(shared: Running, pki: Pki) -> None:
    creds = grpc.ssl_channel_credentials(root_certificates=pki.identity("gov").ca_pem)
    with _raw_channel(shared, creds) as channel:
        assert _echo_error(channel).code() == grpc.StatusCode.UNAVAILABLE


def test_handshake_with_a_certificate_from_another_ca_fails(shared: Running, pki: Pki) -> None:
    foreign = pki.foreign
    # It trusts our CA, so only its own certificate can be the reason it is refused.
    creds = grpc.ssl_channel_credentials(root_certificates=pki.identity("gov").ca_pem,
                                         private_key=(foreign / "key.pem").read_bytes(),
                                         certificate_chain=(foreign / "cert.pem").read_bytes())
    with _raw_channel(shared, creds) as channel:
        assert _echo_error(channel).code() == grpc.StatusCode.UNAVAILABLE


def test_handshake_with_an_expired_certificate_fails(shared: Running, pki: Pki) -> None:
    # load_identity refuses an expired identity, so build the credentials from the files.
    expired = pki.expired
    creds = grpc.ssl_channel_credentials(root_certificates=(expired / "ca.pem").read_bytes(),
                                         private_key=(expired / "key.pem").read_bytes(),
                                         certificate_chain=(expired / "cert.pem").read_bytes())
    with _raw_channel(shared, creds) as channel:
        assert _echo_error(channel).code() == grpc.StatusCode.UNAVAILABLE


def test_a_revoked_certificate_passes_the_handshake_but_every_call_is_refused(shared: Running) -> None:
    with shared.channel("revoked") as channel:  # the handshake succeeds: grpc cannot read CRLs
        error = _echo_error(channel)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "revoked" in (error.details() or "")
        assert dict(error.trailing_metadata() or ())[CODE_KEY] == "E_UNAUTHENTICATED"
        with pytest.raises(NotAuthorizedError) as refused:
            grpc_client.status(channel, timeout=DEADLINE_S)
        assert refused.value.code == "E_UNAUTHENTICATED"
        assert refused.value.exit_code == 3
        with pytest.raises(NotAuthorizedError, match="revoked"):
            list(grpc_client.submit(channel, [pb.SubmitRequest()], timeout=DEADLINE_S))


def test_a_certificate_revoked_after_its_first_call_is_refused_on_the_next(
        serve: Callable[..., Running], pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> None:
    from node.identity import revoke, write_crl

    base = tmp_path_factory.mktemp("late")
    issue(pki.ca, "gov:330100:late", "gov", base / "late")
    running = serve()
    late = load_identity(base / "late")
    with grpc_client.open_channel(running.address, late) as channel:
        assert grpc_client.echo(channel, b"1", timeout=DEADLINE_S) == b"1"  # now cached
        revoke(pki.ca, base / "late", "key_compromise")
        crl = write_crl(pki.ca, base / "crl.pem")
        running.node.trust.load_crl(crl.read_bytes())
        with pytest.raises(NotAuthorizedError, match="revoked"):
            grpc_client.echo(channel, b"2", timeout=DEADLINE_S)


def test_health_is_serving_for_the_server_and_every_service(shared: Running) -> None:
    with shared.channel("gov") as channel:
        for service in ("", *SERVICES):
            assert grpc_client.health(channel, service, timeout=DEADLINE_S) == "SERVING"
        with pytest.raises(NotFoundError):
            grpc_client.health(channel, "credit.v1.Nope", timeout=DEADLINE_S)


def test_health_is_serving_for_the_health_and_reflection_services_themselves(shared: Running) -> None:
    # A probe that checks every service reflection lists must not find two of them unknown.
    with shared.channel("gov") as channel:
        for service in ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"):
            assert grpc_client.health(channel, service, timeout=DEADLINE_S) == "SERVING"


def test_health_list_names_every_service_with_its_status(shared: Running) -> None:
    # Health.List is in the current grpc.health.v1 proto: a generic probe asks it for everything at once.
    with shared.channel("gov") as channel:
        answer = health_pb2_grpc.HealthStub(channel).List(health_pb2.HealthListRequest(), timeout=DEADLINE_S)
    statuses = {name: health_pb2.HealthCheckResponse.ServingStatus.Name(s.status)
                for name, s in answer.statuses.items()}
    for service in ("", *SERVICES, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"):
        assert statuses[service] == "SERVING"


def test_a_method_the_servicer_does_not_implement_is_unimplemented_not_internal(
        pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    class Partial(rpc.AdminServicer):  # type: ignore[misc]
        def Echo(self, request: pb.EchoRequest, context: grpc.ServicerContext) -> pb.EchoResponse:
            return pb.EchoResponse(payload=request.payload)  # Status left to the generated base

    service = Service("credit.v1.Admin", lambda server: register(
        rpc.add_AdminServicer_to_server, Partial(), "credit.v1.Admin", server))
    server = GrpcServer(pki.identity("parent"), "127.0.0.1:0", [service])
    server.start()
    try:
        with grpc_client.open_channel(server.address, pki.identity("gov")) as channel:
            stub = channel.unary_unary("/credit.v1.Admin/Status", request_serializer=pb.StatusRequest.SerializeToString,
                                       response_deserializer=pb.StatusResponse.FromString)
            with pytest.raises(grpc.RpcError) as err:
                stub(pb.StatusRequest(), timeout=DEADLINE_S)
    finally:
        server.stop()
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert dict(err.value.trailing_metadata() or ())[CODE_KEY] == "E_UNIMPLEMENTED"
    assert "credit.v1.Admin/Status" in (err.value.details() or "")
    assert not [r for r in caplog.records if r.levelname == "ERROR"]  # a client's question, not a node failure


def test_reflection_lists_the_services(shared: Running) -> None:
    with shared.channel("gov") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        answers = list(stub.ServerReflectionInfo(iter([request]), timeout=DEADLINE_S))
    names = {s.name for s in answers[0].list_services_response.service}
    assert set(SERVICES) <= names
    assert "grpc.health.v1.Health" in names


def test_reflection_finds_the_file_of_a_method_as_of_any_other_symbol(shared: Running) -> None:
    # grpcurl's `describe credit.v1.Exchange.Submit` asks for the file containing the method.
    with shared.channel("gov") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        symbols = ("credit.v1.Exchange", "credit.v1.Exchange.Submit", "credit.v1.Admin.Status", "credit.v1.Nope.Submit",
                   "credit.v1.Exchange.Nope")
        requests = [reflection_pb2.ServerReflectionRequest(file_containing_symbol=s) for s in symbols]
        answers = list(stub.ServerReflectionInfo(iter(requests), timeout=DEADLINE_S))
    found = [a.WhichOneof("message_response") for a in answers]
    assert found == ["file_descriptor_response"] * 3 + ["error_response"] * 2
    assert answers[1].file_descriptor_response == answers[0].file_descriptor_response
    assert answers[3].error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_a_second_server_on_the_same_port_fails_to_start(shared: Running, pki: Pki) -> None:
    other = GrpcServer(pki.identity("parent"), shared.address, [])
    with pytest.raises(ConfigError, match=r"cannot listen .*: Address already in use") as exc:
        other.start()
    assert exc.value.field == "server.listen"


def test_listen_address_must_be_host_and_port(pki: Pki) -> None:
    for bad in ("localhost", ":50051", "host:http", "host:70000"):
        with pytest.raises(ConfigError, match="HOST:PORT"):
            GrpcServer(pki.identity("parent"), bad, [])


def test_stop_drains_a_call_in_flight(running: Running, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> None:
    records, cert = child_records(pki, tmp_path_factory.mktemp("drain"), 4)
    outgoing: queue.Queue[pb.SubmitRequest | None] = queue.Queue()

    def requests() -> Iterator[pb.SubmitRequest]:
        while (request := outgoing.get()) is not None:
            yield request

    channel = running.channel("child")
    responses = grpc_client.submit(channel, requests(), timeout=30)
    outgoing.put(pb.SubmitRequest(records=records[:2], certificates=[cert]))
    assert len(next(responses).acks) == 2  # the call is in flight

    probe = running.channel("gov")
    stopper = threading.Thread(target=running.runtime.stop)
    stopper.start()
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:  # wait until draining began (health says so, or calls fail)
        try:
            if grpc_client.health(probe, timeout=1.0) != "SERVING":
                break
        except NodeError:
            break
    probe.close()
    outgoing.put(pb.SubmitRequest(records=records[2:]))
    later = next(responses)
    assert [a.outcome for a in later.acks] == [pb.Ack.ACCEPTED] * 2
    outgoing.put(None)
    assert list(responses) == []
    stopper.join(DEADLINE_S)
    assert not stopper.is_alive()
    channel.close()


@pytest.mark.parametrize("round_", range(3))
def test_stopping_with_a_client_stream_left_open_leaves_no_handler_thread_behind(
        serve: Callable[..., Running], pki: Pki, tmp_path_factory: pytest.TempPathFactory, round_: int) -> None:
    # A child's Submit stream stays open between batches. Its handler runs in the server's thread
    # pool waiting for the next request, and must end when the server stops: a thread still
    # waiting would keep the process from exiting after SIGTERM.
    records, cert = child_records(pki, tmp_path_factory.mktemp(f"open-{round_}"), 1)
    running = serve()
    outgoing: queue.Queue[pb.SubmitRequest | None] = queue.Queue()

    def requests() -> Iterator[pb.SubmitRequest]:
        while (request := outgoing.get()) is not None:
            yield request

    before = set(threading.enumerate())
    channel = running.channel("child")
    responses = grpc_client.submit(channel, requests(), timeout=60)
    outgoing.put(pb.SubmitRequest(records=records, certificates=[cert]))
    assert len(next(responses).acks) == 1  # the handler now waits for the next request
    handlers = [t for t in threading.enumerate() if t not in before and t.name.startswith("grpc")]
    assert handlers
    running.runtime.stop()
    for thread in handlers:
        thread.join(DEADLINE_S)
    assert [t.name for t in handlers if t.is_alive()] == []
    outgoing.put(None)
    channel.close()


@pytest.mark.parametrize(("error", "status"), [
    (NotAuthorizedError("no"), grpc.StatusCode.PERMISSION_DENIED),
    (UnauthenticatedError("revoked"), grpc.StatusCode.UNAUTHENTICATED),
    (BlockedError("blocked"), grpc.StatusCode.PERMISSION_DENIED),
    (NotFoundError("none"), grpc.StatusCode.NOT_FOUND),
    (ConflictError("clash"), grpc.StatusCode.FAILED_PRECONDITION),
    (StoreError("db down"), grpc.StatusCode.UNAVAILABLE),
    (PeerUnavailableError("peer down"), grpc.StatusCode.UNAVAILABLE),
    (IntegrityError("chain broken"), grpc.StatusCode.DATA_LOSS),
    (UsageError("bad"), grpc.StatusCode.INVALID_ARGUMENT),
    (RecordRejected([]), grpc.StatusCode.INVALID_ARGUMENT),
    (NodeError("other"), grpc.StatusCode.INTERNAL),
])
def test_errors_map_to_status_codes(error: NodeError, status: grpc.StatusCode) -> None:
    assert status_for(error) == status


def test_a_store_error_that_trying_again_cannot_mend_is_internal_not_an_outage() -> None:
    constraint = StoreError("storing records: NUL in a text value", code="E_STORE_CONSTRAINT")
    constraint.retryable = False  # as node.store._sql.translated makes it
    assert status_for(constraint) == grpc.StatusCode.INTERNAL


def _failing_service(servicer: object) -> Callable[[grpc.aio.Server], None]:
    def register(server: grpc.aio.Server) -> None:
        wrapped: Any = guarded(servicer, "test.Failing")  # as every service registers its servicer
        kinds = {"Plain": grpc.unary_unary_rpc_method_handler, "Async": grpc.unary_unary_rpc_method_handler,
                 "Stream": grpc.unary_stream_rpc_method_handler}
        handlers = {name: kind(getattr(wrapped, name), request_deserializer=bytes, response_serializer=bytes)
                    for name, kind in kinds.items() if hasattr(servicer, name)}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Failing", handlers),))
    return register


def test_a_refusal_for_a_call_its_client_has_left_is_not_logged_as_a_node_failure(
        pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    # A caller whose deadline passes (or who cancels) while its refusal is being decided: grpc can
    # no longer send the status. That is the client's leaving, not a bug: no call.failed, no
    # second abort ("Abort already called!") logged by grpc.
    started, finished = threading.Event(), threading.Event()

    class Late:
        async def Async(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            over = asyncio.Event()
            context.add_done_callback(lambda _call: over.set())
            try:
                started.set()
                with contextlib.suppress(asyncio.CancelledError):  # grpc cancels it when the client leaves
                    await over.wait()
                await abort_with_async(context, UsageError("refused", code="E_USAGE"))
            finally:
                finished.set()

    server = GrpcServer(pki.identity("parent"), "127.0.0.1:0", [Service("test.Failing", _failing_service(Late()))])
    server.start()
    try:
        with grpc_client.open_channel(server.address, pki.identity("gov")) as channel:
            future = channel.unary_unary("/test.Failing/Async", request_serializer=bytes,
                                         response_deserializer=bytes).future(b"x", timeout=DEADLINE_S)
            assert started.wait(DEADLINE_S)
            future.cancel()
            assert finished.wait(DEADLINE_S)
    finally:
        server.stop()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_an_unforeseen_failure_is_internal_with_its_code_and_a_known_error_keeps_its_own(pki: Pki) -> None:
    class Failing:
        def Plain(self, request: bytes, context: object) -> bytes:
            raise ValueError("Value out of range: 4294967296 (an internal detail)")

        async def Async(self, request: bytes, context: object) -> bytes:
            raise KeyError("internal")

        def Stream(self, request: bytes, context: object) -> Iterator[bytes]:
            yield b"first"
            raise NotFoundError("no such thing")

    server = GrpcServer(pki.identity("parent"), "127.0.0.1:0",
                        [Service("test.Failing", _failing_service(Failing()))])
    server.start()
    try:
        with grpc_client.open_channel(server.address, pki.identity("gov")) as channel:
            for method in ("Plain", "Async"):
                call = channel.unary_unary(f"/test.Failing/{method}", request_serializer=bytes,
                                           response_deserializer=bytes)
                with pytest.raises(grpc.RpcError) as err:
                    call(b"x", timeout=DEADLINE_S)
                assert err.value.code() == grpc.StatusCode.INTERNAL
                assert dict(err.value.trailing_metadata() or ())[CODE_KEY] == "E_INTERNAL"
                assert "4294967296" not in (err.value.details() or "")
            got: list[bytes] = []
            with pytest.raises(grpc.RpcError) as err:
                for message in channel.unary_stream("/test.Failing/Stream", request_serializer=bytes,
                                                    response_deserializer=bytes)(b"x", timeout=DEADLINE_S):
                    got.append(message)
            assert got == [b"first"] and err.value.code() == grpc.StatusCode.NOT_FOUND
            assert dict(err.value.trailing_metadata() or ())[CODE_KEY] == "E_NOT_FOUND"
    finally:
        server.stop()
