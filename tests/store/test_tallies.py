"""Refusal tallies: counted from the rejections as the assessment counts them, held as snapshots."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine

from node.rejection import RejectionRow
from node.store.rejections import RejectionStore
from node.store.tallies import Tally, TallyStore
from node.values import CHINA

UNIT = "11330102MB0000019G"
OTHER = "11330102MB0000027B"
DEPT, WEST, EAST = "dept:330102:scjgj", "district:330102", "district:330106"


def at(day: str, hour: int = 10) -> int:
    return int(dt.datetime.combine(dt.date.fromisoformat(day), dt.time(hour), CHINA).timestamp() * 1000)


def refused(key: str, day: str, *, unit: str = UNIT, batch: str = "b", hour: int = 10) -> RejectionRow:
    return RejectionRow(batch_id=batch, source="penalties.csv", source_unit=unit, item="admin_penalty", row=2,
                        record_key=key, field="CF_WSH", code="E_FIELD_REQUIRED", message="required",
                        created_at_ms=at(day, hour))


def test_a_fact_counts_once_on_the_beijing_day_of_its_latest_refusal(engine: Engine) -> None:
    rejections = RejectionStore(engine)
    rejections.add([refused("k1", "2026-01-20"), refused("k2", "2026-01-20")], now_ms=at("2026-01-20"))
    # The same two bad rows again the next day (one problem each twice): still two facts, now that day's.
    rejections.add([refused("k1", "2026-01-21", batch="c"), refused("k1", "2026-01-21", batch="c"),
                    refused("k2", "2026-01-21", batch="c")], now_ms=at("2026-01-21"))
    rejections.add([refused("k3", "2026-01-22", hour=1, unit=OTHER)], now_ms=at("2026-01-22", 1))  # 01:00 Beijing
    # Closed (corrected later) still counts: it was refused.
    assert rejections.close_for([("admin_penalty", UNIT, "k2", "rid")]) == 1
    assert TallyStore(engine).own(DEPT) == [
        Tally(DEPT, UNIT, "admin_penalty", "2026-01-21", 2),
        Tally(DEPT, OTHER, "admin_penalty", "2026-01-22", 1),
    ]


def test_a_childs_snapshot_replaces_what_it_sent_before_instead_of_adding(engine: Engine) -> None:
    store = TallyStore(engine)
    first = [Tally(DEPT, UNIT, "admin_penalty", "2026-01-20", 3), Tally(DEPT, UNIT, "admin_penalty", "2026-01-21", 1)]
    assert store.replace(WEST, first, now_ms=1) == {}
    assert store.replace(WEST, first, now_ms=2) == {}  # sent twice: counted once
    assert store.refused(dt.date(2026, 1, 1)) == [(UNIT, "admin_penalty", 4)]
    # A fact refused on the 20th was refused again on the 21st: the 20th went down, nothing adds up.
    store.replace(WEST, [Tally(DEPT, UNIT, "admin_penalty", "2026-01-20", 2),
                         Tally(DEPT, UNIT, "admin_penalty", "2026-01-21", 2)], now_ms=3)
    assert store.refused(dt.date(2026, 1, 1)) == [(UNIT, "admin_penalty", 4)]
    assert store.refused(dt.date(2026, 1, 21)) == [(UNIT, "admin_penalty", 2)]
    assert store.refused(dt.date(2026, 1, 1), until=dt.date(2026, 1, 20)) == [(UNIT, "admin_penalty", 2)]
    assert store.refused(dt.date(2026, 1, 1), source_unit=OTHER) == []
    store.replace(WEST, [], now_ms=4)  # everything corrected and forgotten below: nothing left here
    assert store.held() == []


def test_an_origin_held_from_one_child_is_not_taken_from_another(engine: Engine) -> None:
    store = TallyStore(engine)
    store.replace(WEST, [Tally(DEPT, UNIT, "admin_penalty", "2026-01-20", 3)], now_ms=1)
    taken = store.replace(EAST, [Tally(DEPT, UNIT, "admin_penalty", "2026-01-20", 5),
                                 Tally("dept:330106:scjgj", OTHER, "admin_penalty", "2026-01-20", 1)], now_ms=2)
    assert taken == {DEPT: WEST}
    assert store.held() == [Tally(DEPT, UNIT, "admin_penalty", "2026-01-20", 3),
                            Tally("dept:330106:scjgj", OTHER, "admin_penalty", "2026-01-20", 1)]
