"""Retry timing for everything that talks to a peer: bounded, exponential, jittered (tenacity).

Two kinds of retry, on purpose (the dramatiq model: bounded retries, then a dead letter):

- **a delivery** (an outbox row) is tried at most ``max_attempts`` times, ``delay(attempt)`` apart,
  then it goes to the dead letters for an operator (``credit-node outbox replay``);
- **a connection** is retried for as long as the node runs (``reconnecting``): while the peer is
  down, nothing is claimed and no delivery spends an attempt, so an outage of any length ends
  without dead letters.

Waits go through ``threading.Event.wait`` so that stopping a node interrupts them at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from node.errors import NodeError

__all__ = ["Backoff", "retryable"]

T = TypeVar("T")


def retryable(exc: BaseException) -> bool:
    """Whether trying again could help: a node error says so itself; anything else does not."""
    return isinstance(exc, NodeError) and exc.retryable


@dataclass(frozen=True)
class Backoff:
    min_s: float = 0.5
    max_s: float = 60.0
    max_attempts: int = 12

    def _wait(self) -> tenacity.wait.wait_base:
        return tenacity.wait_exponential_jitter(multiplier=self.min_s, max=self.max_s, jitter=self.min_s)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = max(1, attempt)
        return float(self._wait()(state))

    def exhausted(self, attempt: int) -> bool:
        return attempt >= self.max_attempts

    def reconnecting(self, fn: Callable[[], T], stop: threading.Event,
                     on_retry: Callable[[BaseException, float], None] | None = None) -> T | None:
        """Call ``fn`` until it succeeds or ``stop`` is set (then None); retryable errors only.

        A non-retryable error propagates: it is a configuration problem, not an outage.
        """
        def before_sleep(state: tenacity.RetryCallState) -> None:
            if on_retry is not None and state.outcome is not None and state.next_action is not None:
                exc = state.outcome.exception()
                if exc is not None:
                    on_retry(exc, state.next_action.sleep)

        def sleep(seconds: float) -> None:
            stop.wait(seconds)  # returns early when the node stops

        retrying = tenacity.Retrying(
            wait=self._wait(), stop=tenacity.stop_when_event_set(stop), sleep=sleep,
            retry=tenacity.retry_if_exception(retryable), before_sleep=before_sleep, reraise=True,
        )
        try:
            return retrying(fn)
        except NodeError as exc:
            if stop.is_set() and exc.retryable:
                return None
            raise
