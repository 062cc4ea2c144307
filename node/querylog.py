"""Writing the query log on the lookup path: log first, then disclose, with group commit.

Every non-public lookup is appended to the hash-chained query log (DESIGN §4; seed 001 附件1 七:
"如实记录…查询主体、查询日期、查询用途、查询范围…并永久保存") *before* its answer leaves the node:
if the log cannot be written, nothing is disclosed. One transaction per lookup would cap a node
at the rate its database commits, so concurrent lookups share commits: the first caller to find
no write in progress becomes the leader and writes every entry queued so far in one transaction;
the others wait for the commit that carries their entry, or are handed the lead of the next one.
No background thread: nothing to start or stop, and an idle node holds no lock.

Lookups answered on the gRPC server's event loop (``node.transport.query_service``) use
:meth:`QueryRecorder.record_async` instead: the same idea without locks, since everything but the
commit runs on the loop. The first entry starts a writer; the commit runs in the loop's
executor while the loop goes on answering, and every entry queued meanwhile rides the next one.
The two paths' commits are separate transactions on the same hash chain, which the store
serialises (``QueryLog.record`` appends inside one write transaction).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from node.store import QueryLog, QueryLogEntry

__all__ = ["QueryRecorder"]

MAX_BATCH = 1000  # entries per commit: bounds one transaction's size under a flood
MAX_LINGER_STEPS = 10  # record_async waits at most this many loop_linger_s for more entries


@dataclass
class _Pending:
    entry: QueryLogEntry
    done: bool = False
    error: BaseException | None = None
    # Set when the entry is committed (done) or when its writer is to lead the next commit: each
    # waiter has its own event, so a commit wakes exactly its own writers and one successor.
    wake: threading.Event = field(default_factory=threading.Event)


class QueryRecorder:
    """Group commit of query-log entries; ``expecting()`` around a lookup lets a commit wait for it.

    A commit costs about the same for one entry as for twenty, so the leader lingers (at most
    ``linger_s``) while lookups that are under way (inside ``expecting()``) have not queued their
    entry yet: under load one commit then carries every concurrent lookup instead of two or three.
    """

    def __init__(self, log: QueryLog, *, linger_s: float = 0.002, loop_linger_s: float = 0.001) -> None:
        self._log = log
        self._linger_s = linger_s
        self._loop_linger_s = loop_linger_s
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)  # the lingering leader: an entry came or a lookup left
        self._queue: list[_Pending] = []
        self._writing = False  # a leader exists (committing or lingering)
        self._lingering = False
        self._expected = 0  # lookups under way that may still queue an entry
        # record_async's queue and writer: touched only on the event loop's thread.
        self._loop_queue: list[tuple[QueryLogEntry, asyncio.Future[None]]] = []
        self._loop_writer: asyncio.Task[None] | None = None  # held: the loop keeps only weak references

    @contextmanager
    def expecting(self) -> Iterator[None]:
        with self._lock:
            self._expected += 1
        try:
            yield
        finally:
            with self._lock:
                self._expected -= 1
                if self._lingering:
                    self._arrived.notify()

    def record(self, entry: QueryLogEntry) -> None:
        """Return once ``entry`` is committed; re-raise the store's error if it could not be."""
        mine = _Pending(entry)
        with self._lock:
            self._queue.append(mine)
            leading = not self._writing
            self._writing = True
            if not leading and self._lingering:
                self._arrived.notify()
        if not leading:
            mine.wake.wait()
            if mine.done:
                return self._outcome(mine)
        while True:  # we lead until our own entry is committed
            self._write(self._take())
            with self._lock:
                if not mine.done:
                    continue  # more than MAX_BATCH were queued ahead of us
                successor = self._queue[0] if self._queue else None
                self._writing = successor is not None
            if successor is not None:
                successor.wake.set()  # not done: it leads the next commit
            return self._outcome(mine)

    async def record_async(self, *entries: QueryLogEntry) -> None:
        """On an event loop: return once ``entries`` are committed, without blocking the loop."""
        loop = asyncio.get_running_loop()
        waits = []
        for entry in entries:
            done: asyncio.Future[None] = loop.create_future()
            self._loop_queue.append((entry, done))
            waits.append(done)
        if self._loop_writer is None:
            self._loop_writer = loop.create_task(self._write_from_loop(loop))
        await asyncio.gather(*waits)  # one error for all: gather retrieves the others' too

    async def _write_from_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            while self._loop_queue:
                await self._gather_loop_entries()
                batch, self._loop_queue = self._loop_queue[:MAX_BATCH], self._loop_queue[MAX_BATCH:]
                try:
                    await loop.run_in_executor(None, self._log.record, *(entry for entry, _ in batch))
                except Exception as exc:  # every writer of this batch must learn of it
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                else:
                    for _, done in batch:
                        if not done.done():  # a cancelled call no longer waits; its entry is written
                            done.set_result(None)
        finally:
            self._loop_writer = None

    async def _gather_loop_entries(self) -> None:
        """Linger while lookups keep arriving: a commit costs about the same for 1 entry as for 50.

        The loop cannot know how many calls are on their way, so it waits ``loop_linger_s`` at a
        time for as long as each wait brought more entries (up to ``MAX_LINGER_STEPS``). An idle
        node's lookup waits once; under load one commit carries most calls in flight.
        """
        for _ in range(MAX_LINGER_STEPS):
            before = len(self._loop_queue)
            await asyncio.sleep(self._loop_linger_s)
            if len(self._loop_queue) == before or len(self._loop_queue) >= MAX_BATCH:
                return

    def _take(self) -> list[_Pending]:
        with self._lock:
            deadline = time.monotonic() + self._linger_s
            self._lingering = True
            while len(self._queue) < min(self._expected, MAX_BATCH):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._arrived.wait(left)
            self._lingering = False
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        return batch

    def _write(self, batch: list[_Pending]) -> None:
        error: BaseException | None = None
        try:
            self._log.record(*(p.entry for p in batch))
        except BaseException as exc:  # every writer of this batch must learn of it, whatever it is
            error = exc
        for p in batch:
            p.done, p.error = True, error
            p.wake.set()

    @staticmethod
    def _outcome(p: _Pending) -> None:
        if p.error is not None:
            raise p.error
