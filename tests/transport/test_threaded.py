"""Plain handlers on a real mTLS server: they answer through a copy of their call, so one still
running after its call ended cannot touch what grpc freed."""

from __future__ import annotations

import threading
from typing import Any

import grpc
import pytest

from node.errors import NotFoundError
from node.transport import grpc_client
from node.transport.grpc_server import GrpcServer, Service
from node.transport.peers import CODE_KEY, abort_with
from node.transport.unforeseen import guarded

from .conftest import DEADLINE_S
from .nodes import Pki

WAIT_S = 30.0
CHURN = 200


class Slow:
    """``Late`` outlives its call, then does everything a handler does with its context."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.finished = threading.Event()
        self.seen: dict[str, Any] = {}

    def Late(self, request: bytes, context: Any) -> bytes:
        try:
            assert self.release.wait(WAIT_S)
            self.seen = {"peer": context.peer(), "auth": bool(context.auth_context()),
                         "remaining": context.time_remaining()}
            context.set_trailing_metadata((("late", "yes"),))
            if request == b"abort":
                abort_with(context, NotFoundError("gone meanwhile"))
            return b"too late"
        finally:
            self.finished.set()

    def Answer(self, request: bytes, context: Any) -> bytes:
        if request == b"missing":
            abort_with(context, NotFoundError("no such thing"))
        context.set_trailing_metadata((("who", context.peer()),))
        return b"ok:" + request


def _register(servicer: Slow) -> Service:
    def register(server: grpc.aio.Server) -> None:
        wrapped: Any = guarded(servicer, "test.Slow")  # as every service registers its servicer
        handlers = {name: grpc.unary_unary_rpc_method_handler(getattr(wrapped, name), request_deserializer=bytes,
                                                               response_serializer=bytes)
                    for name in ("Late", "Answer")}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Slow", handlers),))
    return Service("test.Slow", register)


@pytest.mark.parametrize("ending", [b"answer", b"abort"])
def test_a_plain_handler_that_outlives_its_deadline_leaves_the_server_serving(pki: Pki, ending: bytes) -> None:
    slow = Slow()
    server = GrpcServer(pki.identity("parent"), "127.0.0.1:0", [_register(slow)], grace_s=1.0)
    server.start()
    try:
        with grpc_client.open_channel(server.address, pki.identity("gov")) as channel:
            late = channel.unary_unary("/test.Slow/Late", request_serializer=bytes, response_deserializer=bytes)
            with pytest.raises(grpc.RpcError) as err:
                late(ending, timeout=0.2)
            assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            answer = channel.unary_unary("/test.Slow/Answer", request_serializer=bytes, response_deserializer=bytes)
            for i in range(CHURN):  # calls that take the memory grpc freed with the late one's
                assert answer(b"%d" % i, timeout=DEADLINE_S) == b"ok:%d" % i
            slow.release.set()  # the handler goes on only now: its call is over for certain
            assert slow.finished.wait(WAIT_S)
            assert slow.seen["peer"].startswith("ipv4:127.0.0.1") and slow.seen["auth"]
            assert slow.seen["remaining"] == 0.0
            # The same process, still serving (a plain handler on the freed call crashed it).
            assert answer(b"again", timeout=DEADLINE_S) == b"ok:again"
    finally:
        server.stop()


def test_what_a_plain_handler_sets_reaches_the_client(pki: Pki) -> None:
    server = GrpcServer(pki.identity("parent"), "127.0.0.1:0", [_register(Slow())])
    server.start()
    try:
        with grpc_client.open_channel(server.address, pki.identity("gov")) as channel:
            answer = channel.unary_unary("/test.Slow/Answer", request_serializer=bytes, response_deserializer=bytes)
            response, call = answer.with_call(b"x", timeout=DEADLINE_S)
            assert response == b"ok:x" and dict(call.trailing_metadata())["who"].startswith("ipv4:127.0.0.1")
            with pytest.raises(grpc.RpcError) as err:
                answer(b"missing", timeout=DEADLINE_S)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND and "no such thing" in (err.value.details() or "")
            assert dict(err.value.trailing_metadata() or ())[CODE_KEY] == "E_NOT_FOUND"
    finally:
        server.stop()
