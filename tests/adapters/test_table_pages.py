"""Reading a department's table in keyset pages (the read half of a pull), without a database."""

from __future__ import annotations

import datetime as dt
import pickle

import pytest
from sqlalchemy import Column, DateTime, Integer, MetaData, Table, Text, select

from adapters.table_pages import (
    PageReader,
    decode_position,
    encode_position,
    engine_for,
    in_memory,
    rows_after,
)
from node.errors import ConfigError


def test_position_round_trips_every_type():
    values = (dt.datetime(2026, 1, 2, 3, 4, 5, 678901), 7, "k")
    assert decode_position(encode_position(values)) == values
    aware = (dt.datetime(2026, 1, 2, tzinfo=dt.UTC), dt.date(2026, 1, 3))
    assert decode_position(encode_position(aware)) == aware


def test_in_memory_sqlite_is_told_apart_from_a_file_and_a_server():
    assert in_memory("sqlite://") and in_memory("sqlite:///:memory:")
    assert in_memory("sqlite:///file:x?mode=memory&uri=true")
    assert not in_memory("sqlite:////var/lib/dept/src.db")
    assert not in_memory("postgresql+psycopg://u@127.0.0.1/src")


def test_rows_after_a_position_is_a_sargable_range_and_checks_its_width():
    t = Table("cf", MetaData(), Column("id", Integer, primary_key=True), Column("updated_at", DateTime))
    where = str(select(t.c.id).where(rows_after((t.c.updated_at, t.c.id), (dt.datetime(2026, 1, 1), 5))))
    assert "cf.updated_at >= " in where and "cf.updated_at > " in where and "cf.id > " in where
    with pytest.raises(ConfigError, match="does not match"):
        rows_after((t.c.updated_at, t.c.id), (dt.datetime(2026, 1, 1),))


def test_a_page_reader_crosses_to_the_worker_pickled():
    t = Table("cf", MetaData(), Column("id", Integer, primary_key=True), Column("cf_wsh", Text),
              Column("updated_at", DateTime))
    reader = PageReader(item="admin_penalty", source="cf", batch_id="b", adapter="a", url="sqlite://", table=t,
                        columns=("cf_wsh", "updated_at", "id"), order_width=2, codes=("CF_WSH",), after=None,
                        upto=None, page_rows=10, pages=2, batch_rows=5, with_keys=False, timeout_s=30)
    again = pickle.loads(pickle.dumps(reader))
    assert again.columns == reader.columns and again.table.c.keys() == ["id", "cf_wsh", "updated_at"]


@pytest.mark.parametrize("url", [
    "mysql+pymysql://credit:Zq7@xK9@127.0.0.1:3306/dept",  # an '@' in the password, not written %40
    "postgresql://credit:Zq7@xK9@127.0.0.1:5432/dept",
    "postgresql://credit:Zq7xK9@127.0.0.1:54x2/dept",  # a port that is not a number
    "mysql+pymysql://credit:Zq7xK9@127.0.0.1:3306/dept?charset=utf8mb5",  # no such character set
])
def test_an_unusable_url_is_refused_naming_the_setting_and_never_its_password(url: str):
    with pytest.raises(ConfigError) as refused:
        engine_for(url, "database:cf", 2)
    assert refused.value.field == "url"
    assert "Zq7" not in refused.value.message and "xK9" not in refused.value.message


def test_a_password_with_an_at_sign_written_percent_encoded_is_read_whole():
    engine = engine_for("mysql+pymysql://credit:Zq7%40xK9@127.0.0.1:3306/dept?charset=gbk", "database:cf", 2)
    assert (engine.url.password, engine.url.host) == ("Zq7@xK9", "127.0.0.1")
    engine.dispose()
