"""The runtime's lifecycle: start in order, stop in reverse, never half-started, signals stop it."""

from __future__ import annotations

import os
import signal

import pytest

from node.runtime import Runtime


class Ext:
    def __init__(self, name: str, log: list[str], *, fail_start: bool = False, fail_stop: bool = False) -> None:
        self.name = name
        self._log = log
        self._fail_start = fail_start
        self._fail_stop = fail_stop

    def start(self) -> None:
        if self._fail_start:
            raise RuntimeError(f"{self.name} cannot start")
        self._log.append(f"start {self.name}")

    def stop(self) -> None:
        self._log.append(f"stop {self.name}")
        if self._fail_stop:
            raise RuntimeError(f"{self.name} cannot stop")


def test_extensions_start_in_order_and_stop_in_reverse_once() -> None:
    log: list[str] = []
    runtime = Runtime(None, [Ext("a", log), Ext("b", log)])
    runtime.start()
    runtime.start()  # idempotent
    runtime.stop()
    runtime.stop()
    assert log == ["start a", "start b", "stop b", "stop a"]


def test_a_failed_start_stops_what_was_started_and_raises() -> None:
    log: list[str] = []
    runtime = Runtime(None, [Ext("a", log), Ext("b", log, fail_start=True), Ext("c", log)])
    with pytest.raises(RuntimeError, match="b cannot start"):
        runtime.start()
    assert log == ["start a", "stop a"]


def test_one_extension_failing_to_stop_does_not_keep_the_others_running() -> None:
    log: list[str] = []
    runtime = Runtime(None, [Ext("a", log), Ext("b", log, fail_stop=True)])
    runtime.start()
    runtime.stop()
    assert log == ["start a", "start b", "stop b", "stop a"]


def test_extension_lookup_by_type() -> None:
    a = Ext("a", [])
    runtime = Runtime(None, [a])
    assert runtime.extension(Ext) is a
    with pytest.raises(LookupError):
        runtime.extension(int)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_run_serves_until_a_signal_then_stops(signum: int) -> None:
    log: list[str] = []
    runtime = Runtime(None, [Ext("a", log)])
    before = signal.getsignal(signum)
    runtime.run(on_started=lambda _rt: os.kill(os.getpid(), signum))
    assert log == ["start a", "stop a"]
    assert signal.getsignal(signum) is before  # handlers restored


def test_request_stop_from_another_caller_ends_run() -> None:
    log: list[str] = []
    runtime = Runtime(None, [Ext("a", log)])
    runtime.run(on_started=lambda rt: rt.request_stop())
    assert log == ["start a", "stop a"]
    assert runtime.wait(0)
