"""What the node logs of calls that end badly without any fault of its own, against a real node."""

from __future__ import annotations

import logging

import grpc
import pytest

from node.records import pb, rpc
from node.tls import grpc_channel_credentials

from .conftest import DEADLINE_S, Running

CLIENT_LIMIT = 4 * 1024 * 1024  # grpc's default receive limit, which grpc-js clients keep unless told


def test_an_answer_the_client_refuses_for_its_size_is_not_logged_as_a_node_failure(
        shared: Running, caplog: pytest.LogCaptureFixture) -> None:
    # A client with grpc's default 4 MB receive limit resets the stream on reading the length of a
    # larger answer, while the server is still sending it (held back by the client's small window,
    # as grpc-js's is). grpc then fails the answer's last batch, and unless it has already seen
    # the reset it logged "ExecuteBatchError raised in core" at ERROR with a traceback: in some
    # calls out of ten, every time a client asks for too much.
    options = [("grpc.max_receive_message_length", CLIENT_LIMIT), ("grpc.max_send_message_length", 64 << 20),
               ("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 65535)]
    payload = b"x" * (2 * CLIENT_LIMIT)
    with caplog.at_level(logging.INFO):
        for _ in range(20):
            with (grpc.secure_channel(shared.address, grpc_channel_credentials(shared.pki.identity("gov")),
                                      options=options) as channel,
                  pytest.raises(grpc.RpcError) as err):
                rpc.AdminStub(channel).Echo(pb.EchoRequest(payload=payload), timeout=DEADLINE_S)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # The server is stopped at the end of the module: every call's end has been logged by then,
        # but not necessarily now; one more answered call on the loop lets the last ones through.
        with shared.channel("gov") as channel:
            assert rpc.AdminStub(channel).Echo(pb.EchoRequest(payload=b"ok"), timeout=DEADLINE_S).payload == b"ok"
    failures = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert [r.getMessage() for r in failures] == []
