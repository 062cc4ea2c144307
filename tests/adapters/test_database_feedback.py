"""The feedback table when the node dies between committing a batch and writing its feedback."""

from __future__ import annotations

from typing import Any

import pytest
from conftest_values import UNIT
from source_tables import create_and_fill, penalty_db_rows, penalty_table
from sqlalchemy import create_engine, text
from test_database import drain, pull_for

from adapters.feedback import FeedbackTable
from node.app import Node


class Killed(BaseException):
    """The process dying where it is: no handler of the pull runs."""


def test_a_node_killed_before_the_first_batchs_feedback_writes_it_on_the_next_run(
        dept: Node, pg_source_url: str, monkeypatch: pytest.MonkeyPatch):
    # The feedback position was first recorded with the first batch's feedback: a node killed
    # before that took the committed position for "feedback newly configured" and never answered
    # for the rows of that batch.
    item = dept.catalog.item("admin_penalty")
    src = create_engine(pg_source_url)
    spoiled = {10: {"cf_wsh": None}, 55: {"cf_wsh": None}}  # in the first batch (40 rows) and the second
    create_and_fill(src, penalty_table(item), ({**r, **spoiled.get(r["id"], {})}
                                               for r in penalty_db_rows(item, 60, unit=UNIT)))
    write = FeedbackTable.write

    def killed_at_first_write(self: FeedbackTable, *args: Any, **kw: Any) -> None:
        raise Killed

    monkeypatch.setattr(FeedbackTable, "write", killed_at_first_write)
    first = pull_for(dept, pg_source_url, feedback_table="credit_feedback")
    with pytest.raises(Killed):
        first.poll()
    assert first.position is not None  # the batch and its position were committed
    first.close()
    monkeypatch.setattr(FeedbackTable, "write", write)

    again = pull_for(dept, pg_source_url, feedback_table="credit_feedback")
    drain(again)
    with src.connect() as conn:
        keys = conn.execute(text("SELECT source_key FROM credit_feedback ORDER BY source_key")).scalars().all()
    assert keys == ["10", "55"]
    again.close()
    src.dispose()


def test_a_feedback_table_a_select_only_login_cannot_create_is_named_by_its_setting(
        dept: Node, mariadb_source_url: str):
    from test_database import _readonly_url

    from node.errors import TransportError

    item = dept.catalog.item("admin_penalty")
    src = create_engine(mariadb_source_url)
    create_and_fill(src, penalty_table(item), penalty_db_rows(item, 5, unit=UNIT))
    ro_url, drop = _readonly_url(mariadb_source_url)
    try:
        pull = pull_for(dept, ro_url, feedback_table="credit_feedback", name="database:ro")
        with pytest.raises(TransportError) as failed:
            pull.poll()
        pull.close()
        # Only the database's message said which table; the operator was not told which setting.
        assert failed.value.field == "feedback_table"
        assert "feedback table" in str(failed.value) and "CREATE command denied" in str(failed.value)
    finally:
        with src.connect() as conn:
            for stmt in drop.split("; "):
                conn.execute(text(stmt))
            conn.commit()
        src.dispose()
