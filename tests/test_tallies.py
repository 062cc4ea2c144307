"""Refusal tallies between a child and its parent: what the child sends, what the parent keeps."""

from __future__ import annotations

import datetime as dt
import pathlib
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import Engine

from node import tallies
from node.config import ChildConfig
from node.errors import NotAuthorizedError
from node.rejection import RejectionRow
from node.store import migrate, open_engine
from node.store.rejections import RejectionStore
from node.store.tallies import Tally, TallyStore, beijing_day
from node.tallies import accept, snapshot
from node.transport.wire import fpb

UNIT, DIRECT = "11330102MB0000019G", "11330102MB0000027B"
CITY, WEST, EAST, DEPT = "city:330100", "district:330102", "district:330106", "dept:330102:scjgj"
MS = 1_768_880_000_000  # 2026-01-20 11:33 Beijing


@pytest.fixture
def second(tmp_path: pathlib.Path) -> Engine:
    """Another node's store (SQLite)."""
    engine = open_engine(f"sqlite:///{tmp_path / 'second.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


def node(engine: Engine, node_id: str, *children: ChildConfig) -> Any:
    """What ``snapshot`` and ``accept`` read of a node: its id, children and store."""
    return SimpleNamespace(config=SimpleNamespace(id=node_id, children=children),
                           store=SimpleNamespace(engine=engine))


def test_a_district_sends_its_own_refusals_and_those_it_holds_from_below(engine: Engine) -> None:
    RejectionStore(engine).add([RejectionRow("b", "push", DIRECT, "admin_penalty", 0, "k", "", "E_X", "m", MS)])
    TallyStore(engine).replace(DEPT, [Tally(DEPT, UNIT, "admin_penalty", "2026-01-19", 3)], now_ms=MS)
    sent = snapshot(node(engine, WEST), now_ms=MS)
    assert [(t.origin, t.source_unit, t.item, [(c.day, c.refused) for c in t.days]) for t in sent.tallies] == [
        (DEPT, UNIT, "admin_penalty", [("2026-01-19", 3)]),
        (WEST, DIRECT, "admin_penalty", [("2026-01-20", 1)]),
    ]


def test_a_parent_keeps_only_what_the_child_may_report(engine: Engine, second: Engine,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    RejectionStore(engine).add([RejectionRow("b", "push", DIRECT, "admin_penalty", 0, "k", "", "E_X", "m", MS)])
    TallyStore(engine).replace(DEPT, [Tally(DEPT, UNIT, "admin_penalty", "2026-01-19", 3),
                                      Tally(DEPT, UNIT, "admin_license", "2026-01-19", 2)], now_ms=MS)
    city = node(second, CITY, ChildConfig(WEST, units=(UNIT,), items=("admin_penalty",)), ChildConfig(EAST))
    caplog.set_level("WARNING", logger="node.tallies")
    # The district's own unit DIRECT is not one the city lets it report for; admin_license neither.
    assert accept(city, WEST, snapshot(node(engine, WEST), now_ms=MS), now_ms=MS) == (1, 2)
    assert f"may not report for source unit {DIRECT}" in caplog.text and "may not report admin_license" in caplog.text
    assert TallyStore(second).held() == [Tally(DEPT, UNIT, "admin_penalty", "2026-01-19", 3)]

    def tally(origin: str) -> fpb.RefusalTally:
        return fpb.RefusalTally(origin=origin, source_unit=UNIT, item="admin_penalty",
                                days=[fpb.RefusalCount(day="2026-01-19", refused=5)])

    # Another child may not speak for the city, for its sibling, nor for a node whose way up is the sibling.
    claims = fpb.RefusalSnapshot(tallies=[tally(CITY), tally(WEST), tally(DEPT), tally("dept:330106:scjgj")])
    assert accept(city, EAST, claims, now_ms=MS) == (1, 3)
    assert TallyStore(second).held() == [Tally(DEPT, UNIT, "admin_penalty", "2026-01-19", 3),
                                         Tally("dept:330106:scjgj", UNIT, "admin_penalty", "2026-01-19", 5)]
    with pytest.raises(NotAuthorizedError):
        accept(city, "district:330999", claims)


def _day(days_before: int) -> str:
    return (dt.date.fromisoformat(beijing_day(MS)) - dt.timedelta(days=days_before)).isoformat()


def test_a_snapshot_covers_its_window_and_the_parent_keeps_earlier_days(engine: Engine, second: Engine) -> None:
    old, recent = _day(tallies.TALLY_DAYS + 30), _day(3)
    TallyStore(engine).replace(DEPT, [Tally(DEPT, UNIT, "admin_penalty", old, 4),
                                      Tally(DEPT, UNIT, "admin_penalty", recent, 2)], now_ms=MS)
    sent = snapshot(node(engine, WEST), now_ms=MS)
    assert sent.since == _day(tallies.TALLY_DAYS)
    assert [(c.day, c.refused) for t in sent.tallies for c in t.days] == [(recent, 2)]
    # The city holds both days from the district's earlier snapshot; the new one replaces its own days only.
    city = node(second, CITY, ChildConfig(WEST))
    TallyStore(second).replace(WEST, [Tally(DEPT, UNIT, "admin_penalty", old, 4),
                                      Tally(DEPT, UNIT, "admin_penalty", recent, 9)], now_ms=MS)
    assert accept(city, WEST, sent, now_ms=MS) == (1, 0)
    assert TallyStore(second).held() == [Tally(DEPT, UNIT, "admin_penalty", old, 4),
                                         Tally(DEPT, UNIT, "admin_penalty", recent, 2)]


def test_a_snapshot_too_big_for_one_request_sends_its_newest_days(engine: Engine, monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    units = [f"11330102MB{n:07d}X" for n in range(40)]
    TallyStore(engine).replace(DEPT, [Tally(DEPT, u, "admin_penalty", _day(d), 1) for u in units for d in range(300)],
                               now_ms=MS)
    monkeypatch.setattr(tallies, "TALLY_BYTES", 64 << 10)
    caplog.set_level("WARNING", logger="node.tallies")
    sent = snapshot(node(engine, WEST), now_ms=MS)
    days = sorted({c.day for t in sent.tallies for c in t.days})
    assert len(sent.SerializeToString()) <= 64 << 10
    assert days[-1] == _day(0) and days[0] == sent.since > _day(300)  # the newest days, without a gap
    assert len(days) == (dt.date.fromisoformat(days[-1]) - dt.date.fromisoformat(days[0])).days + 1
    assert f"refusal tallies from {sent.since} on only" in caplog.text


def test_a_parent_ignores_days_before_the_snapshots_first_day_and_a_first_day_that_is_no_date(
        engine: Engine) -> None:
    city = node(engine, CITY, ChildConfig(WEST))
    counts = [fpb.RefusalCount(day=_day(10), refused=1), fpb.RefusalCount(day=_day(1), refused=2)]
    sent = fpb.RefusalSnapshot(tallies=[fpb.RefusalTally(origin=DEPT, source_unit=UNIT, item="admin_penalty",
                                                         days=counts)], since=_day(5))
    assert accept(city, WEST, sent, now_ms=MS) == (1, 1)
    assert TallyStore(engine).held() == [Tally(DEPT, UNIT, "admin_penalty", _day(1), 2)]
    sent.since = "last year"
    assert accept(city, WEST, sent, now_ms=MS) == (0, 1)
    assert TallyStore(engine).held() == [Tally(DEPT, UNIT, "admin_penalty", _day(1), 2)]
