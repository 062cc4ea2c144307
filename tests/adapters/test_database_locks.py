"""What a pull holds on a department's MariaDB table while the node works on the rows it read."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from conftest_values import UNIT
from source_tables import create_and_fill, penalty_db_rows, penalty_table
from sqlalchemy import Engine, create_engine, text
from test_database import Recorder, drain, pull_for

from node.app import Node


class WriterDuringCommit(Recorder):
    """The department's own statement, run while the node stores the first batch the pull read."""

    def __init__(self, node: Node, department: Engine, statement: str) -> None:
        super().__init__(node)
        self.department, self.statement = department, statement
        self.failure: str | None = "not run"

    def commit(self, item: Any, batch: Any, *, source: str, batch_id: str,
               meta: Mapping[str, str] | None = None) -> list[Any]:
        if self.failure == "not run":
            self.failure = None
            try:
                with self.department.connect() as conn:
                    conn.execute(text("SET SESSION lock_wait_timeout = 2"))
                    conn.execute(text(self.statement))
            except Exception as exc:  # the lock wait timed out: what the department's writer would see
                self.failure = str(exc).splitlines()[0]
        return super().commit(item, batch, source=source, batch_id=batch_id, meta=meta)


@pytest.mark.parametrize(("engine", "statement"), [
    # MyISAM (MySQL 5.x-era systems) keeps a table lock until every row of a SELECT is sent: the
    # page was streamed while the node validated and signed it, and the department's UPDATE waited.
    ("MyISAM", "UPDATE cf_penalties SET cf_nr = 'x' WHERE id = 1"),
    # InnoDB: the open read transaction kept the table's metadata lock, so the department's ALTER
    # waited, and every statement queued behind that ALTER.
    ("InnoDB", "ALTER TABLE cf_penalties ADD COLUMN remark VARCHAR(10)"),
])
def test_a_pull_holds_no_lock_on_a_mariadb_table_while_the_node_works_on_its_rows(
        dept: Node, mariadb_source_url: str, engine: str, statement: str):
    item = dept.catalog.item("admin_penalty")
    src = create_engine(mariadb_source_url)
    create_and_fill(src, penalty_table(item), penalty_db_rows(item, 300, unit=UNIT))
    with src.begin() as conn:
        conn.execute(text(f"ALTER TABLE cf_penalties ENGINE = {engine}, MODIFY cf_nr MEDIUMTEXT"))
        # 30 MB in the page, far more than the sockets buffer: the server is still sending it.
        conn.execute(text("UPDATE cf_penalties SET cf_nr = REPEAT('罚', 33000)"))
    department = create_engine(mariadb_source_url, isolation_level="AUTOCOMMIT")
    rec = WriterDuringCommit(dept, department, statement)
    pull = pull_for(dept, mariadb_source_url, rec, batch_rows=20, page_rows=300)
    assert drain(pull) == 300
    assert rec.failure is None
    assert sorted(o.row for o in rec.outcomes) == list(range(1, 301))
    pull.close()
    department.dispose()
    src.dispose()
