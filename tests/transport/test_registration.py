"""Requests that cannot be decoded, sent by a raw client to a real node: answered as bad requests."""

from __future__ import annotations

import logging
from typing import Any

import grpc
import pytest

from node.records import pb
from node.transport.peers import CODE_KEY

from .conftest import DEADLINE_S, Running

GARBAGE = b"\xff\xff\xff\xff"  # a field tag no message has, with a length running past the end


@pytest.mark.parametrize("method", ["/credit.v1.Query/Lookup", "/credit.v1.Query/VerifyList",
                                    "/credit.v1.Lifecycle/FileObjection", "/credit.v1.Admin/Status",
                                    "/credit.v1.Admin/Echo", "/credit.v1.Federation/Pull"])
def test_a_request_that_is_no_message_is_a_bad_request_with_its_code(shared: Running, method: str,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    with shared.channel("gov") as channel, caplog.at_level(logging.ERROR):
        call = channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as err:
            call(GARBAGE, timeout=DEADLINE_S)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(err.value.trailing_metadata() or ())[CODE_KEY] == "E_BAD_REQUEST"
    assert "DecodeError" not in (err.value.details() or "") and "not a valid credit.v1." in (err.value.details() or "")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # nothing for the operator to chase


def test_a_bad_message_in_a_submit_stream_ends_the_stream_as_a_bad_request(shared: Running) -> None:
    with shared.channel("child") as channel:
        submit = channel.stream_stream("/credit.v1.Exchange/Submit", request_serializer=lambda b: b,
                                       response_deserializer=pb.SubmitResponse.FromString)
        with pytest.raises(grpc.RpcError) as err:
            list(submit(iter([GARBAGE]), timeout=DEADLINE_S))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(err.value.trailing_metadata() or ())[CODE_KEY] == "E_BAD_REQUEST"


def test_a_good_request_still_reaches_its_handler(shared: Running) -> None:
    with shared.channel("gov") as channel:
        echo = channel.unary_unary("/credit.v1.Admin/Echo", request_serializer=pb.EchoRequest.SerializeToString,
                                   response_deserializer=pb.EchoResponse.FromString)
        assert echo(pb.EchoRequest(payload=b"ping"), timeout=DEADLINE_S).payload == b"ping"


@pytest.mark.parametrize(("method", "message"), [
    ("/grpc.health.v1.Health/Check", "grpc.health.v1.HealthCheckRequest"),
    ("/grpc.health.v1.Health/Watch", "grpc.health.v1.HealthCheckRequest"),
    ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
     "grpc.reflection.v1alpha.ServerReflectionRequest"),
])
def test_a_health_or_reflection_request_that_is_no_message_is_a_bad_request_with_its_code(
        shared: Running, method: str, message: str, caplog: pytest.LogCaptureFixture) -> None:
    # Any client with a certificate may call these: garbage was answered UNKNOWN with protobuf's
    # own words ("Unexpected <class 'DecodeError'>") and left a traceback in the node's log.
    with shared.channel("gov") as channel, caplog.at_level(logging.ERROR):
        if "Reflection" in method:
            call: Any = channel.stream_stream(method, request_serializer=lambda b: b,
                                              response_deserializer=lambda b: b)
            answer = lambda: list(call(iter([GARBAGE]), timeout=DEADLINE_S))  # noqa: E731
        elif method.endswith("Watch"):
            call = channel.unary_stream(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
            answer = lambda: list(call(GARBAGE, timeout=DEADLINE_S))  # noqa: E731
        else:
            call = channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
            answer = lambda: call(GARBAGE, timeout=DEADLINE_S)  # noqa: E731
        with pytest.raises(grpc.RpcError) as err:
            answer()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(err.value.trailing_metadata() or ())[CODE_KEY] == "E_BAD_REQUEST"
    details = err.value.details() or ""
    assert "DecodeError" not in details and f"not a valid {message} message" in details
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_health_and_reflection_still_answer_good_requests(shared: Running) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with shared.channel("gov") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=DEADLINE_S).status == \
            health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as unknown:
            health.Check(health_pb2.HealthCheckRequest(service="credit.v1.Nope"), timeout=DEADLINE_S)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND  # as the health protocol says
        watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=DEADLINE_S)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        asks = [reflection_pb2.ServerReflectionRequest(file_containing_symbol="credit.v1.Exchange"),
                reflection_pb2.ServerReflectionRequest(file_containing_symbol="nope.Nope")]
        answers = list(reflect.ServerReflectionInfo(iter(asks), timeout=DEADLINE_S))
    assert answers[0].file_descriptor_response.file_descriptor_proto
    assert answers[1].error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_a_revoked_certificate_is_refused_by_health_and_reflection_too(shared: Running) -> None:
    # The TLS handshake lets a revoked certificate in (grpc's Python API takes no CRL): every
    # service must refuse it, these two included, or it learns the node's state and schema.
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with shared.channel("revoked") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        calls = [lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=DEADLINE_S),
                 lambda: next(health.Watch(health_pb2.HealthCheckRequest(), timeout=DEADLINE_S)),
                 lambda: list(reflect.ServerReflectionInfo(
                     iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=DEADLINE_S))]
        for call in calls:
            with pytest.raises(grpc.RpcError) as refused:
                call()
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert dict(refused.value.trailing_metadata() or ())[CODE_KEY] == "E_UNAUTHENTICATED"
