"""Calls whose handler fails in a way nobody foresaw: ``INTERNAL`` / ``E_INTERNAL``, logged.

Every handler answers the errors it knows (a :class:`~node.errors.NodeError` becomes its status
and code, ``peers.abort_with``). Anything else escaping a handler — a bug, a driver's own
exception — would reach the client as grpc's ``UNKNOWN`` carrying the exception's text, with no
``credit-error-code``. This interceptor gives such calls the answer docs/protocol.md promises for
a bug (``INTERNAL``, code ``E_INTERNAL``, nothing of the exception's text) and logs the traceback
here, where an operator can read it. A ``NodeError`` that escapes is answered as the handlers
would have answered it.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc

from node.errors import NodeError
from node.transport.peers import abort_with, abort_with_async, end_with

__all__ = ["UnforeseenFailures"]

log = logging.getLogger(__name__)

_INTERNAL = NodeError("the node failed to answer this call; the failure is logged there", code="E_INTERNAL")
_PASS = (grpc.aio.AbortError,)  # a handler's own abort: already answered
_KINDS = (("unary_unary", grpc.unary_unary_rpc_method_handler),
          ("unary_stream", grpc.unary_stream_rpc_method_handler),
          ("stream_unary", grpc.stream_unary_rpc_method_handler),
          ("stream_stream", grpc.stream_stream_rpc_method_handler))


class UnforeseenFailures(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc ships no stubs
    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        for kind, make in _KINDS:
            behaviour = getattr(handler, kind, None)
            if behaviour is not None:
                return make(_guarded(behaviour, method), request_deserializer=handler.request_deserializer,
                            response_serializer=handler.response_serializer)
        return handler


def _answer(context: Any, exc: Exception, method: str) -> NodeError:
    if isinstance(exc, NodeError):
        return exc
    log.error("call.failed", exc_info=exc, extra={"method": method, "code": "E_INTERNAL"})
    return _INTERNAL


def _status(error: NodeError) -> grpc.StatusCode | None:
    return grpc.StatusCode.INTERNAL if error is _INTERNAL else None


def _guarded(behaviour: Callable[..., Any], method: str) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behaviour):
        async def agen(request: Any, context: Any) -> AsyncIterator[Any]:
            try:
                async for response in behaviour(request, context):
                    yield response
            except _PASS:
                raise
            except Exception as exc:
                error = _answer(context, exc, method)
                await abort_with_async(context, error, _status(error))
        return agen
    if inspect.iscoroutinefunction(behaviour):
        async def coro(request: Any, context: Any) -> Any:
            try:
                return await behaviour(request, context)
            except _PASS:
                raise
            except Exception as exc:
                error = _answer(context, exc, method)
                await abort_with_async(context, error, _status(error))
        return coro
    if inspect.isgeneratorfunction(behaviour):
        def gen(request: Any, context: Any) -> Iterator[Any]:
            try:
                yield from behaviour(request, context)
            except _PASS:
                raise
            except Exception as exc:
                error = _answer(context, exc, method)
                end_with(context, error, _status(error))
        return gen

    def plain(request: Any, context: Any) -> Any:
        try:
            return behaviour(request, context)
        except _PASS:
            raise
        except Exception as exc:
            error = _answer(context, exc, method)
            abort_with(context, error, _status(error))
    return plain
