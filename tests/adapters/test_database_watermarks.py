"""Watermark values a database pull cannot place in its order, against the real PostgreSQL and MariaDB."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from conftest_values import UNIT
from source_tables import BASE_TIME, create_and_fill, penalty_db_rows, penalty_table
from sqlalchemy import create_engine, text, update
from test_database import Recorder, drain, pull_for, records

from node.app import Node


def test_a_watermark_date_no_program_can_read_is_counted_not_read_and_the_pull_goes_on(
        dept: Node, pg_source_url: str, caplog: pytest.LogCaptureFixture):
    # 'infinity' was read as its text, became the position, and the next page compared the
    # timestamp column with text: every poll failed from then on, and a restart did not help.
    item = dept.catalog.item("admin_penalty")
    src = create_engine(pg_source_url)
    table = penalty_table(item)
    create_and_fill(src, table, penalty_db_rows(item, 8, unit=UNIT, same_time_every=1))
    with src.begin() as conn:
        conn.execute(text("UPDATE cf_penalties SET updated_at = 'infinity' WHERE id = 3"))
        conn.execute(text("UPDATE cf_penalties SET updated_at = '-infinity' WHERE id = 4"))
        conn.execute(text("UPDATE cf_penalties SET updated_at = '10000-01-01' WHERE id = 6"))
    rec = Recorder(dept)
    pull = pull_for(dept, pg_source_url, rec, batch_rows=2, page_rows=3)
    with caplog.at_level(logging.WARNING, logger="adapters.database"):
        assert drain(pull) == 5
    assert sorted(o.row for o in rec.outcomes) == [1, 2, 5, 7, 8]
    [warned] = [r for r in caplog.records if r.getMessage() == "adapter.rows_not_pulled"]
    assert warned.rows == 3  # type: ignore[attr-defined]
    # The department corrects one of them, and changes another row: both come, nothing else.
    later = BASE_TIME + dt.timedelta(days=1)
    with src.begin() as conn:
        conn.execute(update(table).where(table.c.id.in_([3, 7])).values(updated_at=later))
    rec.outcomes.clear()
    assert drain(pull) == 2
    assert sorted((o.row, o.outcome) for o in rec.outcomes) == [(3, "accepted"), (7, "duplicate")]
    assert records(dept) == 6
    pull.close()
    src.dispose()


@pytest.mark.parametrize(("values", "warned"), [
    (["2026-1-9 08:00:00", "2026-1-10 08:00:00"], True),  # '2026-1-10' sorts before '2026-1-9'
    (["2026-01-09 08:00:00", "2026-01-10 08:00:00"], False),
])
def test_a_text_watermark_of_varying_width_is_warned_of_at_start(
        dept: Node, mariadb_source_url: str, caplog: pytest.LogCaptureFixture, values: list[str], warned: bool):
    item = dept.catalog.item("admin_penalty")
    src = create_engine(mariadb_source_url)
    create_and_fill(src, penalty_table(item), penalty_db_rows(item, 4, unit=UNIT))
    with src.begin() as conn:
        conn.execute(text("ALTER TABLE cf_penalties ADD COLUMN gxsj VARCHAR(30)"))
        conn.execute(text("UPDATE cf_penalties SET gxsj = IF(id % 2 = 1, :a, :b)"), {"a": values[0], "b": values[1]})
    pull = pull_for(dept, mariadb_source_url, watermark="gxsj")
    with caplog.at_level(logging.WARNING, logger="adapters.database"):
        assert drain(pull) == 4
    found = [r for r in caplog.records if r.getMessage() == "adapter.watermark_not_fixed_width"]
    assert bool(found) is warned
    if warned:
        assert found[0].widths == [17, 18] and "CAST(gxsj AS DATETIME)" in found[0].reason  # type: ignore[attr-defined]
    pull.close()
    src.dispose()


def test_a_mariadb_zero_date_watermark_is_counted_not_read_until_corrected(
        dept: Node, mariadb_source_url: str, caplog: pytest.LogCaptureFixture):
    # Without NO_ZERO_DATE a department's system writes '0000-00-00 00:00:00' for "unknown". In a
    # NOT NULL column MariaDB counts it as NULL, so each start warned those rows were never read,
    # while the pull read them (as text) all the same; one written later was then never read.
    item = dept.catalog.item("admin_penalty")
    src = create_engine(mariadb_source_url)
    table = penalty_table(item)
    create_and_fill(src, table, penalty_db_rows(item, 8, unit=UNIT, same_time_every=1))
    with src.begin() as conn:
        conn.execute(text("SET SESSION sql_mode = ''"))
        conn.execute(text("UPDATE cf_penalties SET updated_at = '0000-00-00 00:00:00' WHERE id IN (3, 4)"))
    rec = Recorder(dept)
    pull = pull_for(dept, mariadb_source_url, rec, batch_rows=2, page_rows=3)
    with caplog.at_level(logging.WARNING, logger="adapters.database"):
        assert drain(pull) == 6
    assert sorted(o.row for o in rec.outcomes) == [1, 2, 5, 6, 7, 8]
    [warned] = [r for r in caplog.records if r.getMessage() == "adapter.rows_not_pulled"]
    assert warned.rows == 2  # type: ignore[attr-defined]
    with src.begin() as conn:
        conn.execute(update(table).where(table.c.id == 3).values(updated_at=BASE_TIME + dt.timedelta(days=1)))
    rec.outcomes.clear()
    assert drain(pull) == 1
    assert [(o.row, o.outcome) for o in rec.outcomes] == [(3, "accepted")]
    assert records(dept) == 7
    pull.close()
    src.dispose()


def test_a_mariadb_row_changed_in_the_second_of_the_last_pull_is_not_missed(
        dept: Node, mariadb_source_url: str, monkeypatch: pytest.MonkeyPatch):
    # Second-precision update times: the pull read up to (08:00:00, id 10), then, within that
    # second, the department corrected row 5. Its (08:00:00, 5) lay behind the position: never read.
    from adapters import table_pages

    bounded = table_pages._bounded
    clock = {"now": 1_796_000_000}  # the source's clock, frozen for the node's sessions

    def frozen(backend: str, timeout_s: float) -> dict[str, object]:
        args = bounded(backend, timeout_s)
        args["init_command"] = f"{args['init_command']}, timestamp = {clock['now']}"
        return args

    monkeypatch.setattr(table_pages, "_bounded", frozen)
    item = dept.catalog.item("admin_penalty")
    src = create_engine(mariadb_source_url)
    table = penalty_table(item)
    rows = list(penalty_db_rows(item, 10, unit=UNIT, same_time_every=100))
    create_and_fill(src, table, rows)
    with src.begin() as conn:
        conn.execute(text("SET time_zone = '+08:00'"))
        conn.execute(text("UPDATE cf_penalties SET updated_at = FROM_UNIXTIME(:now)"), clock)
    rec = Recorder(dept)
    pull = pull_for(dept, mariadb_source_url, rec)
    drain(pull)
    with src.begin() as conn:
        conn.execute(update(table).where(table.c.id == 5).values(cf_nr="更正后的处罚内容"))
    pull.close()
    clock["now"] += 1
    drain(pull)
    pull.close()
    src.dispose()
    assert sorted(o.row for o in rec.outcomes) == list(range(1, 11))
    assert "更正后的处罚内容" in _stored_texts(dept, rows[4]["cf_wsh"])


def _stored_texts(node: Node, wsh: str) -> list[str]:
    """CF_NR of every stored revision of the record with this 文号."""
    from node.records import decode_body, fields_dict

    found = [fields_dict(decode_body(r.body)) for r in node.store.records.iter_revisions()]
    return [f["CF_NR"] for f in found if f["CF_WSH"] == wsh]
