"""A database pull's settings that cannot work, refused at its first poll with the setting named.

Against the real PostgreSQL and MariaDB: what a column can hold is the server's to say.
"""

from __future__ import annotations

import pytest
from conftest_values import UNIT
from source_tables import create_and_fill, penalty_db_rows, penalty_table
from sqlalchemy import create_engine, text
from test_database import Recorder, pull_for

from node.app import Node
from node.errors import ConfigError, TransportError

_VALUES = {"FLOAT": "id * 0.1", "REAL": "id * 0.1", "DOUBLE": "id * 0.1", "JSON": "'{}'", "BOOLEAN": "true",
           "DATE": "CURRENT_DATE", "TIME": "CURRENT_TIME"}


@pytest.mark.parametrize(("server", "column_type", "setting"), [
    ("mariadb", "FLOAT", "watermark"),  # read back, 0.3 no longer equals the stored 0.30000001
    ("postgresql", "REAL", "watermark"),
    ("mariadb", "DOUBLE", "key"),
    ("postgresql", "JSON", "watermark"),  # no ordering at all: every poll failed, retried for ever
    ("postgresql", "BOOLEAN", "watermark"),  # cannot grow; refused only once a batch was read
    ("mariadb", "DATE", "watermark"),  # a second change on the day it was read was never pulled
    ("postgresql", "DATE", "watermark"),
    ("postgresql", "TIME", "watermark"),  # starts again every day: tomorrow's 07:00 change lay behind 08:00
])
def test_a_column_that_cannot_hold_the_position_is_refused_naming_the_setting(
        dept: Node, server: str, column_type: str, setting: str, request: pytest.FixtureRequest):
    url: str = request.getfixturevalue("mariadb_source_url" if server == "mariadb" else "pg_source_url")
    item = dept.catalog.item("admin_penalty")
    src = create_engine(url)
    create_and_fill(src, penalty_table(item), penalty_db_rows(item, 6, unit=UNIT))
    with src.begin() as conn:
        conn.execute(text(f"ALTER TABLE cf_penalties ADD COLUMN ver {column_type}"))
        conn.execute(text(f"UPDATE cf_penalties SET ver = {_VALUES[column_type]}"))
    rec = Recorder(dept)
    where = {"watermark": "ver"} if setting == "watermark" else {"key": ["ver"]}
    pull = pull_for(dept, url, rec, batch_rows=2, page_rows=3, **where)
    with pytest.raises(ConfigError) as refused:
        pull.poll()
    assert refused.value.field == setting
    assert "'ver'" in refused.value.message and column_type in refused.value.message
    assert rec.outcomes == []  # refused before a row was read, not after
    pull.close()
    src.dispose()


@pytest.mark.parametrize("url", [
    "mysql+pymysql://root:Zq7xK9wrong@127.0.0.1:3306/test",  # a refused login
    "mysql+pymysql://root:Zq7xK9wrong@127.0.0.1:1/test",  # nothing listening
    "postgresql+psycopg://postgres:Zq7xK9wrong@127.0.0.1:5432/no_such_database",
])
def test_a_source_it_cannot_log_in_to_is_retried_and_named_by_url_without_the_password(dept: Node, url: str):
    pull = pull_for(dept, url, timeout_s=5)
    with pytest.raises(TransportError) as failed:
        pull.poll()
    assert failed.value.code == "E_ADAPTER_SOURCE" and failed.value.retryable
    assert failed.value.field == "url" and "connecting to the source failed" in failed.value.message
    assert "Zq7xK9" not in str(failed.value)
    pull.close()
