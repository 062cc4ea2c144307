"""Plain (blocking) handlers run on a thread against a copy of their call, never the call itself.

grpc.aio runs a plain handler in its thread pool and hands it the live call context. When the
call ends first (the client's deadline passes, it cancels, it disconnects) grpc frees the call;
the handler still running on its thread then reads or answers through a freed object, and the
node died of it (a segfault in cygrpc: ``VerifyList`` of 10,000 codes with a 5 ms deadline, the
first call). So each plain handler becomes a coroutine: on the loop it copies what a handler
reads of its call (peer, certificate, metadata, deadline), runs the handler on the loop's
executor against that copy, and only then, back on the loop and if the call still stands,
applies what the handler set (trailing metadata, status) or aborts as it asked. A call that ended
meanwhile just drops the handler's answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc

__all__ = ["Aborted", "CallCopy", "on_thread"]


class Aborted(Exception):
    """A handler on a thread aborted its call copy; the call is aborted on the loop."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class CallCopy:
    """What a plain handler may use of ``grpc.ServicerContext``, read once on the loop."""

    def __init__(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self._peer: str = context.peer()
        self._auth: Mapping[str, Sequence[bytes]] = context.auth_context()
        self._metadata = tuple(context.invocation_metadata() or ())
        remaining = context.time_remaining()
        self._deadline = None if remaining is None else time.monotonic() + remaining
        self._trailing: tuple[tuple[str, str | bytes], ...] | None = None
        self._code: grpc.StatusCode | None = None
        self._details: str | None = None

    def peer(self) -> str:
        return self._peer

    def auth_context(self) -> Mapping[str, Sequence[bytes]]:
        return self._auth

    def invocation_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self._metadata

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def set_trailing_metadata(self, metadata: Sequence[tuple[str, str | bytes]]) -> None:
        self._trailing = tuple(metadata)

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        raise Aborted(code, details)

    def apply(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """On the loop: what the handler set, onto the live call."""
        if self._trailing is not None:
            context.set_trailing_metadata(self._trailing)
        if self._code is not None:
            context.set_code(self._code)
        if self._details is not None:
            context.set_details(self._details)


def on_thread(handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """``handler`` (plain, unary) as a coroutine handler that runs it on the loop's executor."""

    async def threaded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        copy = CallCopy(context)
        try:
            response = await asyncio.get_running_loop().run_in_executor(None, handler, request, copy)
        except Aborted as abort:
            copy.apply(context)
            await context.abort(abort.code, abort.details)
        copy.apply(context)
        return response

    threaded.__name__ = getattr(handler, "__name__", "threaded")
    return threaded
