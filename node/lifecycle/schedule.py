"""The lifecycle schedule: while a node runs, enforce objection deadlines and sweep the archive.

Every ``lifecycle.schedule_every_s`` seconds (default one hour; 0 = never, operators run the
commands themselves) one *round* does what ``credit-node objection tick`` and
``credit-node disclosure sweep`` do: close the objection cases whose answer arrived, withdraw the
records whose source unit missed its deadline (seed 003 篇5 第三十一条), then archive the records
past their disclosure window. Both steps are idempotent, so the schedule, the commands and another
node process may run them at any time. The end of each round is kept in the store's meta
(``lifecycle.last_round_ms``): after a restart the next round is due one interval after the last
one — at once if that is past —, so a node restarted more often than the interval still runs its
rounds. A node that never ran one waits one interval, so a node just set up (a demo, a test)
does not change its records at once.

The sweep runs in the first round of each (Beijing) day only (``lifecycle.last_sweep_day`` in
meta): windows close by the day, so a second sweep the same day finds nothing to archive, yet it
reads every record past the shortest window, bodies and all (a city of a million records spent
a minute and a half of CPU on it, every hour). A record that arrives already past its window is
hidden at read time meanwhile (``access.window_state``) and archived the next day.

A failing step is logged and the other still runs; the next round tries again. ``run_once`` is a
round on the caller's thread (tests call it with a frozen clock).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from node.errors import NodeError
from node.lifecycle.calendar import WorkingCalendar
from node.lifecycle.disclosure import SweepReport
from node.lifecycle.objection_service import TickReport
from node.runtime import ThreadExtension

if TYPE_CHECKING:
    from node.config import LifecycleConfig
    from node.lifecycle.desk import Desk

__all__ = ["LifecycleSchedule", "Round", "schedule_for"]

log = logging.getLogger(__name__)


class _Ticks(Protocol):
    def tick(self) -> TickReport: ...

    def today(self) -> dt.date: ...


class _State(Protocol):
    def get(self, key: str, default: str | None = None) -> str | None: ...

    def put(self, key: str, value: str) -> None: ...


LAST_ROUND_KEY = "lifecycle.last_round_ms"
LAST_SWEEP_KEY = "lifecycle.last_sweep_day"
# How far ahead the calendar must be right: the longest deadline, a case's 30 days extended by
# 15 working days (seed 001 附件2 三), with the long holidays between (about 55 days).
CALENDAR_HORIZON = dt.timedelta(days=60)


class _Sweeps(Protocol):
    def run(self, today: dt.date | None = None, *, dry_run: bool = False, batch: int = ...) -> SweepReport: ...


@dataclass
class Round:
    """What one round did; ``errors`` names a step that failed (``objection tick: E_…``)."""

    today: dt.date
    tick: TickReport | None = None
    sweep: SweepReport | None = None
    swept_already: bool = False  # the day's sweep was done by an earlier round
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"today": self.today.isoformat(), "tick": self.tick.as_dict() if self.tick else None,
                "sweep": self.sweep.as_dict(limit=0) if self.sweep else None, "swept_already": self.swept_already,
                "errors": self.errors}


class LifecycleSchedule(ThreadExtension):
    """Run the objection tick and the disclosure sweep every ``every_s`` seconds (a node extension)."""

    name = "lifecycle schedule"

    def __init__(self, *, objections: _Ticks, sweep: _Sweeps, every_s: float,
                 on_round: Callable[[Round], None] | None = None, state: _State | None = None,
                 clock: Callable[[], float] = time.time, calendar: WorkingCalendar | None = None) -> None:
        self._objections = objections
        self._calendar = calendar
        self._warned: set[tuple[str, int]] = set()
        self._sweep = sweep
        self._every_s = every_s
        self._on_round = on_round
        self._state = state
        self._clock = clock
        self._swept_on: dt.date | None = None
        super().__init__()

    def first_delay_s(self) -> float:
        """Seconds until the first round: one interval after the last round kept, else one interval."""
        last = self._state.get(LAST_ROUND_KEY) if self._state is not None else None
        if not last or not last.isdigit():
            return self._every_s
        return min(self._every_s, max(0.0, int(last) / 1000 + self._every_s - self._clock()))

    @property
    def every_s(self) -> float:
        return self._every_s

    def run_once(self) -> Round:
        """One round: the tick first (a withdrawn record is not swept meanwhile), then the sweep."""
        today = self._objections.today()
        done = Round(today)
        self._check_calendar(today)
        try:
            done.tick = self._objections.tick()
        except Exception as exc:  # a failing step (a bug too) must not end the schedule
            done.errors.append(_failure("objection tick", exc))
        if self._swept(today):
            done.swept_already = True
        else:
            try:
                done.sweep = self._sweep.run(today)
            except Exception as exc:
                done.errors.append(_failure("disclosure sweep", exc))
            else:
                self._keep_swept(today)
        if done.tick is not None and (done.sweep is not None or done.swept_already):
            log.info("lifecycle.round", extra={
                "today": today.isoformat(), "answered": len(done.tick.answered), "overdue": len(done.tick.overdue),
                "examined": done.sweep.examined if done.sweep else 0,
                "archived": len(done.sweep.moved) if done.sweep else 0, "swept_already": done.swept_already})
        return done

    def _swept(self, today: dt.date) -> bool:
        if self._swept_on == today:
            return True
        if self._state is None:
            return False
        try:
            return self._state.get(LAST_SWEEP_KEY) == today.isoformat()
        except NodeError:  # cannot tell: sweep (it is idempotent)
            return False

    def _keep_swept(self, today: dt.date) -> None:
        self._swept_on = today
        if self._state is not None:
            try:
                self._state.put(LAST_SWEEP_KEY, today.isoformat())
            except NodeError as exc:  # a restart the same day merely sweeps once more
                log.warning("lifecycle.state_not_kept", extra={"code": exc.code, "reason": exc.message})

    def _check_calendar(self, today: dt.date) -> None:
        """Warn (once a year and kind) when deadlines soon to be counted fall in a year whose
        calendar is missing (weekends only) or provisional (statutory holidays only)."""
        if self._calendar is None:
            return
        until = today + CALENDAR_HORIZON
        for kind, years in (("missing", self._calendar.uncovered_years(today, until)),
                            ("provisional", self._calendar.provisional_years(today, until))):
            for year in years:
                if (kind, year) not in self._warned:
                    self._warned.add((kind, year))
                    log.warning("lifecycle.calendar_" + kind, extra={
                        "year": year, "reason": f"the working-day calendar for {year} is {kind}: deadlines "
                        "counted in it may be off by the State Council's holiday arrangement (调休)"})

    def _run(self) -> None:
        delay = self.first_delay_s()
        while not self._stop.wait(delay):
            done = self.run_once()
            if self._state is not None and not done.errors:
                try:
                    self._state.put(LAST_ROUND_KEY, str(int(self._clock() * 1000)))
                except NodeError as exc:  # the next start merely waits a full interval
                    log.warning("lifecycle.state_not_kept", extra={"code": exc.code, "reason": exc.message})
            if self._on_round is not None:
                self._on_round(done)
            delay = self._every_s


def _failure(step: str, exc: Exception) -> str:
    if isinstance(exc, NodeError):
        log.warning("lifecycle.step_failed", extra={"step": step, "code": exc.code, "reason": exc.message})
        return f"{step}: {exc.code}"
    log.exception("lifecycle.step_failed", extra={"step": step})
    return f"{step}: {type(exc).__name__}"


def schedule_for(desk: Desk, settings: LifecycleConfig, state: _State | None = None) -> list[LifecycleSchedule]:
    """The schedule of a node's desk, or none when ``lifecycle.schedule_every_s`` is 0."""
    if settings.schedule_every_s <= 0:
        return []
    return [LifecycleSchedule(objections=desk.objections, sweep=desk.sweep, every_s=settings.schedule_every_s,
                              state=state, calendar=desk.calendar)]
