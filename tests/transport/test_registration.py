"""Requests that cannot be decoded, sent by a raw client to a real node: answered as bad requests."""

from __future__ import annotations

import logging

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
