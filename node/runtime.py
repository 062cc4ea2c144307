"""The long-running node: a set of extensions started together and stopped in reverse order.

An *extension* is anything with ``start()`` and ``stop()`` (the gRPC server, the forwarder, the
adapters …). Which extensions a node runs is decided in one place, ``node.app.build_runtime``;
the runtime only owns their lifecycle (as a nameko container does for its extensions):

- ``start`` starts them in order; if one fails, those already started are stopped again (in
  reverse) and the error is raised, so a node never runs half-started;
- ``stop`` stops them in reverse order (the server stops taking records before the forwarder
  stops sending them), each once, and goes on when one fails;
- ``run`` starts, waits until SIGTERM or SIGINT (or :meth:`request_stop`), then stops: in-flight
  calls are drained by the server's own ``stop``.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, Protocol, TypeVar

from node.errors import NodeError

__all__ = ["Extension", "Runtime", "ThreadExtension"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Extension(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


class ThreadExtension:
    """An extension whose work is one loop in its own daemon thread, ended by ``_stop``.

    Subclasses set ``name``, call ``super().__init__()`` and implement ``_run``; the loop waits on
    ``self._stop`` (never a bare sleep), so ``stop`` ends it promptly.
    """

    name = "thread extension"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        raise NotImplementedError


def _name(ext: Extension) -> str:
    return str(getattr(ext, "name", type(ext).__name__))


class Runtime:
    def __init__(self, node: Any, extensions: Sequence[Extension]) -> None:
        self.node = node
        self.extensions = tuple(extensions)
        self._started: list[Extension] = []
        self._stop_requested = threading.Event()
        self._lock = threading.Lock()

    def extension(self, kind: type[T]) -> T:
        """The (first) extension of type ``kind``: e.g. the gRPC server, to learn its address."""
        for ext in self.extensions:
            if isinstance(ext, kind):
                return ext
        raise LookupError(f"no {kind.__name__} extension in this runtime")

    def start(self) -> None:
        with self._lock:
            for ext in self.extensions:
                if ext in self._started:
                    continue
                try:
                    ext.start()
                except NodeError as exc:  # explained to the operator by the error itself: no traceback
                    log.error("runtime.start_failed", extra={"extension": _name(ext), "error": str(exc)})
                    self._stop_started()
                    raise
                except BaseException:
                    log.exception("runtime.start_failed", extra={"extension": _name(ext)})
                    self._stop_started()
                    raise
                self._started.append(ext)
                log.info("runtime.extension_started", extra={"extension": _name(ext)})

    def stop(self) -> None:
        with self._lock:
            self._stop_started()

    def _stop_started(self) -> None:
        while self._started:
            ext = self._started.pop()
            try:
                ext.stop()
            except Exception:  # one extension failing to stop must not keep the others running
                log.exception("runtime.stop_failed", extra={"extension": _name(ext)})
            else:
                log.info("runtime.extension_stopped", extra={"extension": _name(ext)})

    def request_stop(self) -> None:
        """Make :meth:`run` (or :meth:`wait`) return and stop; safe from any thread."""
        self._stop_requested.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a stop is requested; True if it was."""
        return self._stop_requested.wait(timeout)

    def run(self, *, on_started: Callable[[Runtime], None] | None = None) -> None:
        """Start, call ``on_started``, serve until SIGTERM/SIGINT, stop. Call from the main thread."""
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("runtime.signal", extra={"signal": signal.Signals(signum).name})
            self.request_stop()

        for sig in previous:
            signal.signal(sig, on_signal)
        try:
            self.start()
            try:
                if on_started is not None:
                    on_started(self)
                while not self._stop_requested.wait(1.0):  # a timed wait lets signal handlers run
                    pass
            finally:
                self.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
