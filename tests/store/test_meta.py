"""node/store/meta.py: facts about the store, changed with what says so or not at all."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, Engine

from node.store import migrate
from node.store._sql import write_transaction
from node.store.meta import Meta, put_value


class Failed(Exception):
    pass


def test_a_drop_and_what_runs_with_it_commit_together(engine: Engine) -> None:
    migrate(engine)
    meta = Meta(engine)
    with write_transaction(engine) as conn:
        put_value(conn, "adapter.x.position", '{"watermark": "2026-01-01"}')

    def fails(_conn: Connection, _was: str | None) -> None:
        raise Failed

    with pytest.raises(Failed):
        meta.drop("adapter.x.position", also=fails)
    assert meta.get("adapter.x.position") == '{"watermark": "2026-01-01"}'  # not forgotten without its record
    seen: list[str | None] = []
    assert meta.drop("adapter.x.position", also=lambda _c, was: seen.append(was)) == '{"watermark": "2026-01-01"}'
    assert seen == ['{"watermark": "2026-01-01"}'] and meta.get("adapter.x.position") is None
