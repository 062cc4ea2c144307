"""Writing the query log on the lookup path: log first, then disclose, with group commit.

Every non-public lookup is appended to the hash-chained query log (DESIGN §4; seed 001 附件1 七:
"如实记录…查询主体、查询日期、查询用途、查询范围…并永久保存") *before* its answer leaves the node:
if the log cannot be written, nothing is disclosed. One transaction per lookup would cap a node
at the rate its database commits, so concurrent lookups share commits: the first caller to find
no write in progress becomes the leader and writes every entry queued so far in one transaction;
the others wait for the commit that carries their entry (or lead the next one). No background
thread: nothing to start or stop, and an idle node holds no lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from node.store import QueryLog, QueryLogEntry

__all__ = ["QueryRecorder"]

MAX_BATCH = 1000  # entries per commit: bounds one transaction's size under a flood


@dataclass
class _Pending:
    entry: QueryLogEntry
    done: bool = False
    error: BaseException | None = None


class QueryRecorder:
    def __init__(self, log: QueryLog) -> None:
        self._log = log
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._writing = False

    def record(self, entry: QueryLogEntry) -> None:
        """Return once ``entry`` is committed; re-raise the store's error if it could not be."""
        mine = _Pending(entry)
        with self._cond:
            self._queue.append(mine)
        while True:
            with self._cond:
                while not mine.done and self._writing:
                    self._cond.wait()
                if mine.done:
                    break
                self._writing = True  # we lead: take what is queued (ours included, unless > MAX_BATCH ahead)
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            self._write(batch)
        self._outcome(mine)

    def _write(self, batch: list[_Pending]) -> None:
        error: BaseException | None = None
        try:
            self._log.record(*(p.entry for p in batch))
        except BaseException as exc:  # every waiter of this batch must learn of it, whatever it is
            error = exc
        with self._cond:
            for p in batch:
                p.done, p.error = True, error
            self._writing = False
            self._cond.notify_all()

    @staticmethod
    def _outcome(p: _Pending) -> None:
        if p.error is not None:
            raise p.error
