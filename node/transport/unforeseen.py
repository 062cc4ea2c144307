"""Calls whose handler fails in a way nobody foresaw: ``INTERNAL`` / ``E_INTERNAL``, logged.

Every handler answers the errors it knows (a :class:`~node.errors.NodeError` becomes its status
and code, ``peers.abort_with``). Anything else escaping a handler — a bug, a driver's own
exception — would reach the client as grpc's ``UNKNOWN`` carrying the exception's text, with no
``credit-error-code``. The wrapper gives such calls the answer docs/protocol.md promises for
a bug (``INTERNAL``, code ``E_INTERNAL``, nothing of the exception's text) and logs the traceback
here, where an operator can read it. A ``NodeError`` that escapes is answered as the handlers
would have answered it. A method the servicer leaves to its generated base (which raises
``NotImplementedError``: a client built from a newer .proto, such as ``Health.List`` on an older
health servicer) is answered ``UNIMPLEMENTED`` / ``E_UNIMPLEMENTED``, as grpc answers a method it
does not know, and is not logged as a failure. Each service registers its servicer through :func:`guarded`, which also
moves plain handlers off the live call (``node.transport.threaded``).

Once a handler is done, grpc sends its answer itself; when the client has gone by then (it reset
the stream on reading the length of an answer over its receive limit, it was killed) grpc fails
that last batch and, unless it has already learned of the client's leaving, logs
"ExecuteBatchError raised in core" at ERROR with a traceback. :func:`quiet_undelivered` makes that
line what it is: a client that left, at DEBUG.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from typing import Any, TypeVar, cast

import grpc

from node.errors import NodeError, UnimplementedError
from node.transport.peers import abort_with, abort_with_async, end_with
from node.transport.threaded import Aborted, on_thread

__all__ = ["guarded", "quiet_undelivered"]

T = TypeVar("T")

log = logging.getLogger(__name__)

_INTERNAL = NodeError("the node failed to answer this call; the failure is logged there", code="E_INTERNAL")
# A handler's own abort: already answered. And grpc's own failure to send on a call that is over
# (``ExecuteBatchError``, an ``InternalError``: the client cancelled or its deadline passed while
# the handler decided): nothing can be answered any more, and grpc itself drops it quietly when
# the client has left. Taken for a bug, it logged call.failed and a second abort that grpc logged
# as "Abort already called!".
_PASS = (grpc.aio.AbortError, grpc.aio.InternalError, Aborted)


_GRPC_LOGGER = "grpc._cython.cygrpc"  # grpc.aio's server logs there
_UNDELIVERED = "ExecuteBatchError raised in core by servicer method"


class _Undelivered(logging.Filter):
    """grpc's line for an answer it could not send after the handler ended, made ``call.undelivered``
    at DEBUG with the method and no traceback: the client left (its stream reset, its connection
    gone), which grpc itself drops quietly when it learns it first. Every other line passes as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if not text.startswith(_UNDELIVERED):
            return True
        record.method = text[len(_UNDELIVERED):].strip(" []")
        record.msg, record.args = "call.undelivered", ()
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        record.exc_info, record.exc_text = None, None
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def quiet_undelivered() -> None:
    """Install the filter on grpc's server logger, once for the process (servers share the logger)."""
    logger = logging.getLogger(_GRPC_LOGGER)
    if not any(isinstance(f, _Undelivered) for f in logger.filters):
        logger.addFilter(_Undelivered())


def guarded(servicer: T, service: str, *, unwrapped: Collection[str] = ()) -> T:
    """``servicer`` as its service's ``add_…Servicer_to_server`` should see it: every RPC method
    (capitalised, as protoc names them) but ``unwrapped`` wrapped once, here, at registration;
    nothing per call but the wrapper's own frame (a server interceptor cost each call tens of
    microseconds)."""
    return cast(T, _Guarded(servicer, service, frozenset(unwrapped)))


class _Guarded:
    def __init__(self, servicer: object, service: str, unwrapped: frozenset[str]) -> None:
        self._servicer = servicer
        self._service = service
        self._unwrapped = unwrapped

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._servicer, name)
        if name[:1].isupper() and callable(value) and name not in self._unwrapped:
            return _guarded(value, f"/{self._service}/{name}")
        return value


def _answer(exc: Exception, method: str) -> NodeError:
    if isinstance(exc, NodeError):
        return exc
    if type(exc) is NotImplementedError:
        log.info("call.unimplemented", extra={"method": method, "code": UnimplementedError.code})
        return UnimplementedError(f"{method} is not implemented by this node")
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
                error = _answer(exc, method)
                await abort_with_async(context, error, _status(error))
        return agen
    if inspect.iscoroutinefunction(behaviour):
        async def coro(request: Any, context: Any) -> Any:
            try:
                return await behaviour(request, context)
            except _PASS:
                raise
            except Exception as exc:
                error = _answer(exc, method)
                await abort_with_async(context, error, _status(error))
        return coro
    if inspect.isgeneratorfunction(behaviour):
        def gen(request: Any, context: Any) -> Iterator[Any]:
            try:
                yield from behaviour(request, context)
            except _PASS:
                raise
            except Exception as exc:
                error = _answer(exc, method)
                end_with(context, error, _status(error))
        return gen

    def plain(request: Any, context: Any) -> Any:
        try:
            return behaviour(request, context)
        except _PASS:
            raise
        except Exception as exc:
            error = _answer(exc, method)
            abort_with(context, error, _status(error))
    return on_thread(plain)  # never on the live call from a thread: node/transport/threaded.py
