"""The lifecycle schedule: a round enforces objection deadlines and archives what is past its window.

Rounds are run with ``run_once`` under a frozen clock on real stores (SQLite and PostgreSQL); one
test starts the schedule's thread and waits for its first round on an event.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine

from node.catalog import Catalog
from node.config import LifecycleConfig
from node.errors import StoreError
from node.identity import LoadedIdentity
from node.lifecycle.calendar import WorkingCalendar
from node.lifecycle.disclosure import Sweep
from node.lifecycle.objection_service import ObjectionService, TickReport
from node.lifecycle.objections import OVERDUE
from node.lifecycle.schedule import LAST_ROUND_KEY, LAST_SWEEP_KEY, LifecycleSchedule, Round, schedule_for
from node.sampledata import penalty_rows
from node.tabular import SourceRow
from tests.lifecycle.kit import DEPT, UNIT, Clock, Kit, make_kit, objection_service


@dataclass
class World:
    kit: Kit
    desk: ObjectionService
    sweep: Sweep
    old: list[str]  # decided 2024-06-01, ordinary: disclosed until 2025-06-01
    recent: list[str]  # decided 2025-09-01: disclosed until 2026-09-01

    def schedule(self, every_s: float = 3600.0, **kw: object) -> LifecycleSchedule:
        return LifecycleSchedule(objections=self.desk, sweep=self.sweep, every_s=every_s, **kw)  # type: ignore[arg-type]


def _penalties(kit: Kit, n: int, start_no: int, decided: str, valid_to: str) -> list[str]:
    rows = [SourceRow(i + 2, {**r, "CF_JDRQ": decided, "CF_YXQ": valid_to})
            for i, r in enumerate(penalty_rows(n, source_unit=UNIT, seed=start_no, start_no=start_no))]
    out = kit.ingest.ingest_batch(kit.item, rows, source="test.csv", batch_id=f"b{start_no}")
    assert all(o.outcome == "accepted" for o in out), [o.problems for o in out]
    return [o.record_id for o in out]


@pytest.fixture
def world(engine: Engine, ids: dict[str, LoadedIdentity], catalog: Catalog, clock: Clock) -> World:
    kit = make_kit(engine, DEPT, parent=None, ids=ids, catalog=catalog, clock=clock)
    old = _penalties(kit, 2, 1, "2024-06-01", "2025-06-01")
    recent = _penalties(kit, 3, 11, "2025-09-01", "2026-09-01")
    sweep = Sweep(store=kit.store, catalog=catalog, reviser=kit.reviser, node_id=DEPT, today=clock.today)
    return World(kit, objection_service(kit), sweep, old, recent)


def _file(world: World, record_id: str) -> str:
    subject = world.kit.head(record_id).subject_code
    return world.desk.file(record_id, by=subject, reason="处罚决定已撤销").case_id


def test_a_round_withdraws_records_whose_source_is_late_and_archives_what_is_past_its_window(world: World) -> None:
    kit = world.kit
    case_id = _file(world, world.recent[0])  # filed Monday 2026-03-02; the source answers by 2026-03-16
    schedule = world.schedule()

    on_time = schedule.run_once()  # the same day: nothing is late; the old penalties are past their window
    assert on_time.errors == [] and on_time.today == dt.date(2026, 3, 2)
    assert on_time.tick is not None and on_time.tick.overdue == []
    assert on_time.sweep is not None and sorted(r for r, _v, _i in on_time.sweep.moved) == sorted(world.old)
    assert [kit.head(r).status for r in world.old] == ["expired", "expired"]
    assert kit.head(world.recent[0]).status == "disputed"

    kit.clock.set_day(dt.date(2026, 3, 16))  # the due day itself is not late
    assert world.schedule().run_once().tick == TickReport([], [])

    kit.clock.set_day(dt.date(2026, 3, 17))
    late = schedule.run_once()
    assert late.tick == TickReport([], [case_id])
    assert kit.head(world.recent[0]).status == "withheld"  # no longer disclosed to society
    assert world.desk.cases.get(case_id).state == OVERDUE
    assert [c.case_id for c in world.desk.listing(overdue_only=True)] == [case_id]
    assert late.sweep is not None and late.sweep.moved == []
    assert [kit.head(r).status for r in world.recent[1:]] == ["active", "active"]

    again = schedule.run_once()  # idempotent: nothing moves twice; the day's sweep is done
    assert again.tick == TickReport([], []) and again.sweep is None and again.swept_already
    assert again.as_dict()["errors"] == []
    assert world.schedule().run_once().sweep.moved == []  # type: ignore[union-attr]  # sweeping again moves nothing


def test_a_failing_step_is_reported_and_the_other_step_still_runs(world: World) -> None:
    class BrokenSweep:
        def run(self, today: dt.date | None = None, **_kw: object) -> object:
            raise StoreError("database unavailable")

    class BrokenTick:
        def tick(self) -> TickReport:
            raise RuntimeError("a bug")

        def today(self) -> dt.date:
            return dt.date(2026, 3, 2)

    no_sweep = LifecycleSchedule(objections=world.desk, sweep=BrokenSweep(), every_s=60)  # type: ignore[arg-type]
    done = no_sweep.run_once()
    assert done.errors == ["disclosure sweep: E_STORE"] and done.tick == TickReport([], []) and done.sweep is None

    no_tick = LifecycleSchedule(objections=BrokenTick(), sweep=world.sweep, every_s=60)
    done = no_tick.run_once()
    assert done.errors == ["objection tick: RuntimeError"] and done.tick is None
    assert done.sweep is not None and sorted(r for r, _v, _i in done.sweep.moved) == sorted(world.old)


def test_the_running_schedule_does_a_round_every_interval_and_stops_promptly(world: World) -> None:
    case_id = _file(world, world.recent[0])
    world.kit.clock.set_day(dt.date(2026, 3, 20))  # past the due day before the schedule starts
    rounds: list[Round] = []
    first = threading.Event()

    def seen(done: Round) -> None:
        rounds.append(done)
        first.set()

    schedule = world.schedule(every_s=0.01, on_round=seen)
    schedule.start()
    try:
        assert first.wait(30), "no round within 30 s"
    finally:
        schedule.stop()
    assert rounds[0].tick == TickReport([], [case_id]) and rounds[0].errors == []
    assert world.kit.head(world.recent[0]).status == "withheld"
    assert [world.kit.head(r).status for r in world.old] == ["expired", "expired"]
    assert all(r.tick == TickReport([], []) for r in rounds[1:])  # later rounds find nothing new

    idle = world.schedule(every_s=3600, on_round=seen)  # stop does not wait for the interval
    idle.start()
    began = time.monotonic()
    idle.stop()
    assert time.monotonic() - began < 5


def test_the_first_round_is_due_one_interval_after_the_last_one_kept(world: World) -> None:
    meta = world.kit.store.meta
    now = 1_800_000_000.0
    schedule = world.schedule(every_s=3600, state=meta, clock=lambda: now)
    assert schedule.first_delay_s() == 3600  # never ran: a node just set up waits one interval
    meta.put(LAST_ROUND_KEY, str(int((now - 600) * 1000)))
    assert schedule.first_delay_s() == pytest.approx(3000)
    meta.put(LAST_ROUND_KEY, str(int((now - 7200) * 1000)))
    assert schedule.first_delay_s() == 0  # overdue after a restart: at once
    meta.put(LAST_ROUND_KEY, "not a time")
    assert schedule.first_delay_s() == 3600


def test_a_restarted_node_runs_an_overdue_round_at_once_and_keeps_when_it_ran(world: World) -> None:
    meta = world.kit.store.meta
    now = 1_800_000_000.0
    meta.put(LAST_ROUND_KEY, str(int((now - 7200) * 1000)))  # the last round, two hours before the restart
    ran = threading.Event()
    schedule = world.schedule(every_s=3600, state=meta, clock=lambda: now, on_round=lambda _r: ran.set())
    schedule.start()
    try:
        assert ran.wait(30), "the overdue round did not run at start"
    finally:
        schedule.stop()
    assert meta.get(LAST_ROUND_KEY) == str(int(now * 1000))
    assert [world.kit.head(r).status for r in world.old] == ["expired", "expired"]


def test_the_schedule_is_made_from_the_configuration() -> None:
    @dataclass
    class Desk:
        objections: object
        sweep: object
        calendar: object

    desk = Desk(object(), object(), WorkingCalendar())
    [made] = schedule_for(desk, LifecycleConfig())  # type: ignore[arg-type]
    assert made.every_s == 3600.0 and made.name == "lifecycle schedule"
    assert schedule_for(desk, LifecycleConfig(schedule_every_s=0)) == []  # type: ignore[arg-type]


def test_a_round_warns_once_when_deadlines_fall_in_a_provisional_or_missing_calendar_year(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    calendar = WorkingCalendar.from_data([
        {"year": 2026, "provisional": True, "holidays": [{"from": "2026-01-01", "to": "2026-01-01"}]}])
    schedule = world.schedule(calendar=calendar)
    world.kit.clock.set_day(dt.date(2026, 12, 1))  # deadlines now reach into 2027, which has no file
    with caplog.at_level(logging.WARNING, logger="node.lifecycle.schedule"):
        schedule.run_once()
        schedule.run_once()
    warned = sorted((r.getMessage(), r.year) for r in caplog.records if r.getMessage().startswith("lifecycle.calendar"))
    assert warned == [("lifecycle.calendar_missing", 2027), ("lifecycle.calendar_provisional", 2026)]


def test_the_warning_reaches_as_far_as_an_extended_case_limit(world: World, caplog: pytest.LogCaptureFixture) -> None:
    # A case filed on 2026-11-05 may run 30 days and 15 working days more (seed 001 附件2 三):
    # into January 2027, whose calendar is missing here.
    calendar = WorkingCalendar.from_data([{"year": 2026, "provisional": False}])
    world.kit.clock.set_day(dt.date(2026, 11, 5))
    with caplog.at_level(logging.WARNING, logger="node.lifecycle.schedule"):
        world.schedule(calendar=calendar).run_once()
    assert [(r.getMessage(), r.year) for r in caplog.records  # type: ignore[attr-defined]
            if r.getMessage().startswith("lifecycle.calendar")] == [("lifecycle.calendar_missing", 2027)]


def test_a_confirmed_calendar_gives_no_warning(world: World, caplog: pytest.LogCaptureFixture) -> None:
    calendar = WorkingCalendar.from_data([{"year": 2026, "provisional": False}])
    with caplog.at_level(logging.WARNING, logger="node.lifecycle.schedule"):
        world.schedule(calendar=calendar).run_once()
    assert [r for r in caplog.records if r.getMessage().startswith("lifecycle.calendar")] == []


def test_the_sweep_runs_once_a_day_whatever_the_interval_and_a_restart_remembers_it(world: World) -> None:
    meta = world.kit.store.meta
    first = world.schedule(state=meta).run_once()
    assert first.sweep is not None and sorted(r for r, _v, _i in first.sweep.moved) == sorted(world.old)
    assert meta.get(LAST_SWEEP_KEY) == "2026-03-02"
    restarted = world.schedule(state=meta)  # the same day, after a restart: not swept again
    later = restarted.run_once()
    assert later.sweep is None and later.swept_already and later.tick == TickReport([], [])
    world.kit.clock.set_day(dt.date(2026, 3, 3))
    next_day = restarted.run_once()
    assert next_day.sweep is not None and not next_day.swept_already
    assert meta.get(LAST_SWEEP_KEY) == "2026-03-03"
