"""The gRPC client boundary: failures become node errors with stable codes."""

from __future__ import annotations

import socket

import pytest

from node.errors import PeerUnavailableError
from node.transport.grpc_client import open_channel, wait_ready

from .nodes import Pki


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
