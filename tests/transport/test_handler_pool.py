"""The gRPC server's handler pool: results and errors, the busy count, bounded threads, and exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pytest

from node.transport.handler_pool import HandlerPool

DEADLINE_S = 30


def test_work_runs_and_its_result_or_error_reaches_the_future() -> None:
    pool = HandlerPool(max_workers=2, thread_name_prefix="t")
    assert pool.submit(lambda a, b=0: a + b, 2, b=3).result(DEADLINE_S) == 5
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda: 1 // 0).result(DEADLINE_S)
    pool.shutdown()


def test_busy_counts_work_until_it_finishes_and_threads_stay_within_the_limit() -> None:
    pool = HandlerPool(max_workers=2, thread_name_prefix="t")
    release = threading.Event()
    started = threading.Semaphore(0)

    def hold() -> None:
        started.release()
        assert release.wait(DEADLINE_S)

    futures = [pool.submit(hold) for _ in range(3)]
    assert started.acquire(timeout=DEADLINE_S) and started.acquire(timeout=DEADLINE_S)
    assert pool.busy() == 3  # two running, one queued: no third thread
    assert not started.acquire(timeout=0.2)
    assert len([t for t in threading.enumerate() if t.name.startswith("t_")]) == 2
    release.set()
    for f in futures:
        f.result(DEADLINE_S)
    assert pool.busy() == 0
    pool.shutdown()


def test_shutdown_can_cancel_queued_work() -> None:
    pool = HandlerPool(max_workers=1, thread_name_prefix="t")
    started, release = threading.Event(), threading.Event()

    def hold() -> bool:
        started.set()
        return release.wait(DEADLINE_S)

    running = pool.submit(hold)
    assert started.wait(DEADLINE_S)
    queued = pool.submit(lambda: "never")
    pool.shutdown(wait=False, cancel_futures=True)
    release.set()
    assert running.result(DEADLINE_S) is True
    assert queued.cancelled()
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)


def test_a_handler_that_never_returns_does_not_keep_the_process_alive() -> None:
    # What SIGTERM needs: a ThreadPoolExecutor here would join the stuck thread at exit, forever.
    script = textwrap.dedent("""
        import threading
        from node.transport.handler_pool import HandlerPool
        pool = HandlerPool(max_workers=2, thread_name_prefix="t")
        pool.submit(threading.Event().wait)
        pool.shutdown(wait=False)
        print("exiting")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=DEADLINE_S,
                          check=False)
    assert (done.returncode, done.stdout.strip()) == (0, "exiting")
