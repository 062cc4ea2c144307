"""A department's published 行政处罚 table, as a real PostgreSQL or MariaDB table (tests, scripts/bench).

Columns are the catalogue codes in lower case (what an unquoted ``CREATE TABLE`` gives), typed as
department systems type them: the decision date a DATE, amounts NUMERIC, the rest text. ``id`` is
the primary key and ``updated_at`` the watermark (second precision, so many rows share a value).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Engine,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    insert,
    text,
)

from node.catalog import Item
from node.sampledata import penalty_rows

BASE_TIME = dt.datetime(2026, 11, 1, 8, 0, 0)


def penalty_table(item: Item, name: str = "cf_penalties", *, extra: Iterable[Column[Any]] = ()) -> Table:
    cols: list[Column[Any]] = [Column("id", BigInteger, primary_key=True, autoincrement=False),
                               Column("updated_at", DateTime, nullable=False, index=True)]
    for f in item.fields:
        if f.code == item.decision_date_field:
            cols.append(Column(f.code.lower(), Date))
        elif f.type == "decimal":
            cols.append(Column(f.code.lower(), Numeric(18, 6)))
        elif f.type == "text":
            cols.append(Column(f.code.lower(), Text))
        else:
            cols.append(Column(f.code.lower(), String(255)))
    return Table(name, MetaData(), *cols, *extra)


def as_db_row(item: Item, i: int, row: dict[str, str], updated_at: dt.datetime) -> dict[str, Any]:
    out: dict[str, Any] = {"id": i, "updated_at": updated_at}
    for f in item.fields:
        v: Any = row.get(f.code) or None
        if v is not None and f.code == item.decision_date_field:
            try:
                v = dt.date.fromisoformat(v)
            except ValueError:
                v = None  # a date the column cannot hold arrives as a missing date
        elif v is not None and f.type == "decimal":
            v = Decimal(v)
        out[f.code.lower()] = v
    return out


def penalty_db_rows(item: Item, n: int, *, unit: str, start: int = 1, bad_every: int = 0, seed: int = 3,
                    same_time_every: int = 7) -> Iterator[dict[str, Any]]:
    """``n`` rows with ids ``start``…; ``same_time_every`` consecutive rows share one updated_at."""
    for k, row in enumerate(penalty_rows(n, source_unit=unit, seed=seed, bad_every=bad_every, start_no=start)):
        i = start + k
        yield as_db_row(item, i, row, BASE_TIME + dt.timedelta(seconds=i // same_time_every))


def create_and_fill(engine: Engine, table: Table, rows: Iterable[dict[str, Any]], *, chunk: int = 5000) -> int:
    table.drop(engine, checkfirst=True)
    table.create(engine)
    return insert_rows(engine, table, rows, chunk=chunk)


def insert_rows(engine: Engine, table: Table, rows: Iterable[dict[str, Any]], *, chunk: int = 5000) -> int:
    n = 0
    buf: list[dict[str, Any]] = []
    with engine.begin() as conn:
        for r in rows:
            buf.append(r)
            if len(buf) >= chunk:
                conn.execute(insert(table), buf)
                n += len(buf)
                buf = []
        if buf:
            conn.execute(insert(table), buf)
            n += len(buf)
    return n


def fill_postgres_fast(engine: Engine, table: Table, item: Item, n: int, *, unit: str, templates: int = 1000) -> None:
    """``n`` valid rows in seconds: ``templates`` generated rows repeated with unique decision numbers.

    The natural key is (决定书文号, subject), so a unique 文号 per row makes every row its own record.
    """
    tmpl = Table(f"{table.name}_tmpl", MetaData(), *[Column(c.name, c.type) for c in table.columns])
    create_and_fill(engine, tmpl, penalty_db_rows(item, templates, unit=unit, start=0))
    table.drop(engine, checkfirst=True)
    table.create(engine)
    cols = [c.name for c in table.columns if c.name not in ("id", "updated_at", "cf_wsh")]
    select_cols = ", ".join(f"t.{c}" for c in cols)
    with engine.begin() as conn:
        conn.execute(text(
            f"INSERT INTO {table.name} (id, updated_at, cf_wsh, {', '.join(cols)}) "
            f"SELECT g.i, TIMESTAMP '2026-11-01 08:00:00' + (g.i / 50) * INTERVAL '1 second', "
            f"'杭上市监罚〔2026〕' || g.i || '号', {select_cols} "
            f"FROM generate_series(1, :n) AS g(i) JOIN {tmpl.name} t ON t.id = g.i % :k"
        ), {"n": n, "k": templates})
        conn.execute(text(f"ANALYZE {table.name}"))
    tmpl.drop(engine)
