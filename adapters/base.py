"""What every department front-end adapter is: a ``Source`` the node polls, and the thread that polls it.

A source reads whatever its department system has ready (files in a drop folder, new rows of a
published table) and hands it to the node's ingest as batches (``Sink``); the node validates,
signs and stores, and the source sends each refusal back in the form the department reported in.
``SourceRunner`` is the runtime extension (``start``/``stop``) that polls one source on its own
thread, so ``credit-node start`` runs every configured adapter next to the gRPC server.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Protocol

from node.catalog import Item
from node.errors import NodeError
from node.preparing import PreparedBatch, RowOutcome
from node.tabular import SourceRow

__all__ = ["Sink", "Source", "SourceRunner"]


class Sink(Protocol):
    """The node side of an adapter: a batch prepared, then committed, one outcome per row out.

    Two steps so that a source can prepare its next batch (pure CPU, any thread) while the
    previous one commits (``node.pipeline.ahead``).
    """

    def prepare(self, item: Item, rows: Sequence[SourceRow], *, source: str, batch_id: str) -> PreparedBatch:
        """Validate ``rows`` and build their record bodies; touches no store."""
        ...

    def commit(self, item: Item, batch: PreparedBatch, *, source: str, batch_id: str,
               meta: Mapping[str, str] | None = None) -> list[RowOutcome]:
        """Sign and store ``batch``; ``meta`` is written to the store in the same transaction."""
        ...


class Source(Protocol):
    """A department system the node reads from."""

    name: str
    interval_s: float  # how long to wait after a poll that found nothing

    def poll(self) -> int:
        """Take in what is ready now (or the next bounded part of it); rows handled, 0 = idle."""
        ...

    def close(self) -> None:
        """Release connections; the next poll opens them again."""
        ...


class SourceRunner:
    """Polls one source on a daemon thread until stopped; a failed poll is retried with backoff.

    A poll that handled rows is followed at once by the next (a large backlog drains without
    waiting an interval per page); an idle poll waits ``interval_s``. Errors never kill the
    thread: they are logged with their code and retried after a growing pause, because the usual
    causes (the department database restarting, a full disk) go away on their own.
    """

    def __init__(self, source: Source, *, max_backoff_s: float = 300.0,
                 logger: logging.Logger | None = None) -> None:
        self.source = source
        self.name = f"adapter {source.name}"
        self._interval = max(source.interval_s, 0.01)
        self._max_backoff = max(max_backoff_s, self._interval)
        self._log = logger or logging.getLogger(__name__)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failures = 0  # consecutive failed polls (for status and tests)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"adapter {self.source.name}", daemon=True)
        self._thread.start()
        self._log.info("adapter.started", extra={"adapter": self.source.name})

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ask the thread to stop after its current batch and wait for it (batches are atomic)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self.source.close()
        self._log.info("adapter.stopped", extra={"adapter": self.source.name})

    def run_once(self) -> int:
        """One poll on the caller's thread (``credit-node adapters run --once``, tests)."""
        return self.source.poll()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                handled = self.source.poll()
                self.failures = 0
            except NodeError as exc:
                handled = 0
                self.failures += 1
                self._log.warning("adapter.poll_failed", extra={"adapter": self.source.name, "code": exc.code,
                                                                "field": exc.field, "error": exc.message,
                                                                "failures": self.failures})
            except Exception:  # an adapter bug must not stop the node's other work
                handled = 0
                self.failures += 1
                self._log.exception("adapter.poll_crashed", extra={"adapter": self.source.name})
            if handled and not self.failures:
                continue
            pause = self._interval if not self.failures else min(
                self._interval * 2 ** min(self.failures, 16), self._max_backoff)
            self._stop.wait(pause)
