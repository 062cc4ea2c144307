"""The gRPC client boundary: failures become node errors with stable codes."""

from __future__ import annotations

import socket
from collections.abc import Callable

import grpc
import pytest

from node.errors import MessageTooLargeError, NotAuthorizedError, PeerUnavailableError
from node.records import pb, rpc
from node.transport import grpc_client, grpc_server
from node.transport.grpc_client import open_channel, wait_ready

from .conftest import DEADLINE_S, Running
from .nodes import UNIT, Pki


def test_waiting_for_a_peer_that_is_down_raises_peer_unavailable(pki: Pki) -> None:
    with socket.socket() as s:  # a port nobody listens on: bound, then released
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    identity = pki.identity("child")
    channel = open_channel(f"127.0.0.1:{port}", identity, server_name="localhost")
    try:
        with pytest.raises(PeerUnavailableError) as err:
            wait_ready(channel, 0.5)
        assert err.value.code == "E_PEER_UNAVAILABLE"
    finally:
        channel.close()


def test_a_message_over_the_peers_size_limit_is_a_transport_error_naming_the_limit(
        serve: Callable[..., Running], monkeypatch: pytest.MonkeyPatch) -> None:
    # grpc's own RESOURCE_EXHAUSTED, without the node's code: no right is missing, and a caller told
    # E_NOT_AUTHORIZED (exit 3) would go looking for one. A node taking 64 KB stands for 64 MB.
    limit = 64 * 1024
    options = tuple((k, limit if k == "grpc.max_receive_message_length" else v) for k, v in grpc_server._SERVER_OPTIONS)
    monkeypatch.setattr(grpc_server, "_SERVER_OPTIONS", options)
    running = serve()
    with running.channel("gov") as channel, pytest.raises(MessageTooLargeError) as err:
        grpc_client.echo(channel, b"x" * (limit + 1), timeout=DEADLINE_S)
    assert (err.value.code, err.value.retryable, err.value.exit_code) == ("E_MESSAGE_TOO_LARGE", False, 4)
    assert "over the peer's receive limit of 65,536 bytes" in err.value.message


def test_the_nodes_own_rate_limit_stays_a_refusal(serve: Callable[..., Running]) -> None:
    running = serve(abuse={"rate_per_s": 0.001, "burst": 1, "block_after": 100})
    request = pb.LookupRequest(subject_code=UNIT, context=pb.CallerContext(purpose="行政许可审查"))
    with running.channel("gov") as channel:
        stub = rpc.QueryStub(channel)
        stub.Lookup(request, timeout=DEADLINE_S)
        with pytest.raises(grpc.RpcError) as call:
            stub.Lookup(request, timeout=DEADLINE_S)
    assert call.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    error = grpc_client.error_from_rpc(call.value)
    assert isinstance(error, NotAuthorizedError) and (error.code, error.exit_code) == ("E_RATE_LIMITED", 3)
