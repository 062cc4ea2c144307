"""What reconciliation reads of a store: a day's revisions cost that day, not the whole store."""

from __future__ import annotations

import pathlib
import sqlite3
from collections.abc import Callable

from sqlalchemy import Engine, event

from node.store import RecordRow
from node.store.digests import HeldDigests, Scope
from node.store.engine import migrate, open_engine
from node.store.records import RecordStore

from .conftest import make_row


class _Steps:
    """SQLite virtual-machine steps taken on every connection of an engine (a measure of rows visited)."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0
        engine.dispose()  # connections made from now on are counted
        event.listen(engine, "connect", self._connected)

    def _connected(self, dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.set_progress_handler(self._step, 1)

    def _step(self) -> int:
        self.count += 1
        return 0

    def of(self, read: Callable[[], object]) -> int:
        before = self.count
        read()
        return self.count - before


def test_the_revisions_of_one_differing_day_are_read_without_visiting_every_day(tmp_path: pathlib.Path) -> None:
    """A parent restored from a backup an hour old differs on a day or two of years of history: the
    detail round must read those days, or on a large store each request outlasts its deadline."""
    engine = open_engine(f"sqlite:///{tmp_path / 'node.db'}")
    try:
        migrate(engine)
        days = [f"2024-{m:02d}-{d:02d}" for m in range(1, 13) for d in range(1, 29)]
        rows: list[RecordRow] = [make_row(f"admin_penalty-{i:024x}", decision_date=days[i % len(days)])
                                 for i in range(len(days) * 10)]
        RecordStore(engine).append(rows)
        digests = HeldDigests(engine)
        scope = Scope(items=("admin_penalty",), not_from="city:330100")
        steps = _Steps(engine)
        one_day = steps.of(lambda: digests.held(scope, [("admin_penalty", days[7])]))
        every_day = steps.of(lambda: digests.buckets(scope))
        assert len(digests.held(scope, [("admin_penalty", days[7])])) == 10
        assert one_day * 20 < every_day, (one_day, every_day)
    finally:
        engine.dispose()
