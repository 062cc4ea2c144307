"""Group commit of the query log: every entry committed exactly once, in one chain, errors shared."""

from __future__ import annotations

import asyncio
import threading

import pytest
from sqlalchemy import Engine

from node.errors import StoreError
from node.querylog import QueryRecorder
from node.store import QueryLog, QueryLogEntry, Store


def entry(i: int) -> QueryLogEntry:
    return QueryLogEntry(caller=f"gov:330100:u{i}", role="gov", purpose="审查", subject="91350100M000100Y43",
                         items=[], result_count=i, detail={"n": i})


class Counting(QueryLog):
    """The real log, noting how many entries each commit carried."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.commits: list[int] = []

    def record(self, *entries: QueryLogEntry) -> list[int]:
        self.commits.append(len(entries))
        return super().record(*entries)


class Flaky(QueryLog):
    """The real log, failing every commit while ``failing`` is set (it starts set)."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.failing = threading.Event()
        self.failing.set()

    def record(self, *entries: QueryLogEntry) -> list[int]:
        if self.failing.is_set():
            raise StoreError("disk full")
        return super().record(*entries)


def test_concurrent_lookups_share_commits_and_each_entry_is_written_once(engine: Engine) -> None:
    store = Store(engine)
    log = Counting(engine)
    recorder = QueryRecorder(log, linger_s=0.01)
    start = threading.Barrier(24)

    def lookup(i: int) -> None:
        with recorder.expecting():
            start.wait()
            recorder.record(entry(i))

    threads = [threading.Thread(target=lookup, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    written = list(store.queries.iter())
    assert sorted(e.result_count for e in written) == list(range(24))
    assert [e.seq for e in written] == list(range(1, 25))
    assert sum(log.commits) == 24 and len(log.commits) < 24  # shared commits
    assert store.queries.verify() == []


def test_a_failed_commit_fails_every_lookup_in_it_and_the_next_one_leads(engine: Engine) -> None:
    log = Flaky(engine)
    recorder = QueryRecorder(log, linger_s=0)
    with pytest.raises(StoreError):
        recorder.record(entry(1))
    log.failing.clear()
    recorder.record(entry(2))  # leadership was released: the next entry commits
    assert [e.result_count for e in Store(engine).queries.iter()] == [2]


def test_a_lone_lookup_does_not_wait_for_the_linger(engine: Engine) -> None:
    import time

    recorder = QueryRecorder(QueryLog(engine), linger_s=5.0)
    started = time.monotonic()
    with recorder.expecting():
        recorder.record(entry(1))  # it is the only lookup under way: nothing to wait for
    assert time.monotonic() - started < 4.0


# --- record_async: lookups answered on the server's event loop ------------------------------------------
def test_lookups_on_the_event_loop_share_commits_and_each_entry_is_written_once(engine: Engine) -> None:
    store = Store(engine)
    log = Counting(engine)
    recorder = QueryRecorder(log, loop_linger_s=0.005)

    async def lookups() -> None:
        await asyncio.gather(*(recorder.record_async(entry(i)) for i in range(40)))

    asyncio.run(lookups())
    written = list(store.queries.iter())
    assert sorted(e.result_count for e in written) == list(range(40))
    assert sum(log.commits) == 40 and len(log.commits) < 40
    assert store.queries.verify() == []


def test_a_failed_commit_on_the_loop_fails_its_lookups_and_the_next_entry_commits(engine: Engine) -> None:
    log = Flaky(engine)
    recorder = QueryRecorder(log, loop_linger_s=0)

    async def run() -> list[BaseException | None]:
        outcomes = await asyncio.gather(recorder.record_async(entry(1)), recorder.record_async(entry(2)),
                                        return_exceptions=True)
        log.failing.clear()
        await recorder.record_async(entry(3))
        return list(outcomes)

    outcomes = asyncio.run(run())
    assert all(isinstance(o, StoreError) for o in outcomes)
    assert [e.result_count for e in Store(engine).queries.iter()] == [3]


def test_commits_from_the_loop_and_from_threads_extend_one_unbroken_chain(engine: Engine) -> None:
    store = Store(engine)
    recorder = QueryRecorder(QueryLog(engine), linger_s=0.001, loop_linger_s=0.001)

    def in_threads() -> None:
        for i in range(100, 130):
            recorder.record(entry(i))

    async def on_loop() -> None:
        for i in range(30):
            await recorder.record_async(entry(i))

    thread = threading.Thread(target=in_threads)
    thread.start()
    asyncio.run(on_loop())
    thread.join(30)
    written = list(store.queries.iter())
    assert sorted(e.result_count for e in written) == [*range(30), *range(100, 130)]
    assert [e.seq for e in written] == list(range(1, 61))
    assert store.queries.verify() == []
