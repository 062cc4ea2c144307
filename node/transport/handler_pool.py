"""The gRPC server's pool of handler threads: daemon threads, and a count of the work they run.

It is the server loop's default executor: plain handlers run here (``node.transport.threaded``)
and coroutine handlers hand it their blocking work. ``concurrent.futures.ThreadPoolExecutor``
would do, but for two things the server's stop needs (docs/decisions/grpc-asyncio-server.md):

- :meth:`HandlerPool.busy`: how much work is queued or running, so a stop can let the event loop
  run until cancelled handlers have left;
- daemon threads. ThreadPoolExecutor joins its threads when the interpreter exits, so a handler
  that never returns (a call whose cancellation did not reach its thread) kept the node alive
  after SIGTERM. Here, once the server has drained for its grace period and waited for the
  pool, what is still running is abandoned as a crash would abandon it: its transaction is not
  committed, and the idempotent inbox takes the sender's retry.
"""

from __future__ import annotations

import queue
import sys
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["HandlerPool"]

T = TypeVar("T")

_Work = tuple["Future[Any]", Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class HandlerPool(ThreadPoolExecutor):
    """A ThreadPoolExecutor by type only: asyncio takes no other kind as a loop's default executor.
    None of its machinery is used (its ``__init__`` is not called); every method it needs is here."""

    def __init__(self, *, max_workers: int, thread_name_prefix: str) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._max = max_workers
        self._prefix = thread_name_prefix
        self._work: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._idle = 0  # threads waiting for work and not yet promised any
        self._busy = 0  # work submitted and not finished
        self._closed = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        done: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the handler pool is shut down")
            self._busy += 1
            if self._idle:
                self._idle -= 1  # that thread takes this work
            elif len(self._workers) < self._max:
                thread = threading.Thread(target=self._run, name=f"{self._prefix}_{len(self._workers)}", daemon=True)
                self._workers.append(thread)
                thread.start()
            self._work.put((done, fn, args, kwargs))
        return done

    def busy(self) -> int:
        """Work submitted and not finished (queued or running)."""
        with self._lock:
            return self._busy

    def stacks(self) -> list[str]:
        """Where each of the pool's threads is now: ``name: file:line function`` (for a stuck stop)."""
        frames = sys._current_frames()
        with self._lock:
            threads = list(self._workers)
        out = []
        for thread in threads:
            frame = frames.get(thread.ident or -1)
            if frame is not None:
                where = traceback.extract_stack(frame, limit=1)[-1]
                out.append(f"{thread.name}: {where.filename}:{where.lineno} {where.name}")
        return out

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
            threads = list(self._workers)
        if cancel_futures:
            self._cancel_queued()
        for _ in threads:
            self._work.put(None)  # one stop mark per thread; running work finishes first
        if wait:
            for thread in threads:
                thread.join()

    def _run(self) -> None:
        while (work := self._work.get()) is not None:
            done, fn, args, kwargs = work
            del work
            if done.set_running_or_notify_cancel():
                try:
                    done.set_result(fn(*args, **kwargs))
                except BaseException as exc:  # handed to whoever waits on the future
                    done.set_exception(exc)
            del done, fn, args, kwargs  # nothing of this call outlives it
            with self._lock:
                self._busy -= 1
                self._idle += 1

    def _cancel_queued(self) -> None:
        while True:
            try:
                work = self._work.get_nowait()
            except queue.Empty:
                return
            if work is not None:
                work[0].cancel()
                with self._lock:
                    self._busy -= 1
