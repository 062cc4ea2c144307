"""Small SQL helpers shared by the store modules: transactions, bulk writes, errors.

SQLAlchemy's exceptions never leave ``node.store`` (DESIGN §2.10): they become ``StoreError``
with a code saying whether trying again can help.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import chain
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Engine, Table, exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine.default import DefaultDialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

from node.errors import NodeError, StoreError

T = TypeVar("T")

# Well under SQLite's 32,766 and PostgreSQL's 65,535 bound parameters per statement.
IN_CHUNK = 500
SQLITE_MAX_VARIABLES = 32_766  # SQLITE_MAX_VARIABLE_NUMBER since SQLite 3.32


def insert_for(conn: Connection, table: Table) -> sqlite.Insert | postgresql.Insert:
    """The dialect's INSERT, which knows ``ON CONFLICT`` (both spell it the same way)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def is_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that writes. On SQLite it holds the write lock from its first statement.

    pysqlite would otherwise BEGIN a deferred transaction lazily; reading first and writing later
    then fails at once with SQLITE_BUSY when another writer committed in between (a stale
    snapshot cannot be upgraded), whereas BEGIN IMMEDIATE waits with the busy timeout and makes
    everything read inside the transaction exact: no one else can write until we commit.
    """
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        yield conn


def execute_many(
    conn: Connection, stmt: ClauseElement, columns: Sequence[str], rows: Sequence[tuple[Any, ...]], *,
    sql: str | None = None,
) -> None:
    """Run ``stmt`` once per row of values for ``columns``, at the driver level.

    This is the hot path's bulk write. SQLAlchemy's own executemany processes every parameter
    of every row in Python, which costs more than SQLite spends storing it; here the statement
    is compiled once with positional parameters (``?`` for sqlite3, ``%s`` for psycopg) and the
    tuples go to the driver as they are, so values must already be str, int, bytes or None.
    """
    if not rows:
        return
    if sql is None:  # a caller that runs the statement often passes it compiled (positional_sql)
        sql = positional_sql(conn, stmt, columns)
    head, values_kw, one_row = sql.rpartition(" VALUES ")
    if conn.dialect.name != "sqlite" or not values_kw or not (one_row.startswith("(") and one_row.endswith(")")):
        conn.exec_driver_sql(sql, list(rows))
        return
    # SQLite: one multi-row INSERT per ~2,000 rows instead of one step per row. sqlite3 lets the
    # GIL go at every step, and taking it back can wait for another thread's whole switch
    # interval; one step per statement also spares SQLite its per-row reset and re-bind.
    per_statement = max(1, SQLITE_MAX_VARIABLES // len(columns))
    dbapi = conn.dialect.loaded_dbapi
    cursor: Any = conn.connection.cursor()
    try:
        for start in range(0, len(rows), per_statement):
            part = rows[start : start + per_statement]
            cursor.execute(f"{head} VALUES {', '.join([one_row] * len(part))}", list(chain.from_iterable(part)))
    except dbapi.Error as error:
        raise exc.DBAPIError.instance(sql, None, error, dbapi.Error) from error
    finally:
        cursor.close()


def positional_sql(conn: Connection, stmt: ClauseElement, columns: Sequence[str]) -> str:
    """``stmt`` as the driver's SQL with one positional parameter per column, in ``columns`` order."""
    dialect_class = cast(type[DefaultDialect], type(conn.dialect))
    dialect = dialect_class(paramstyle="qmark" if conn.dialect.name == "sqlite" else "format")
    compiled = cast(SQLCompiler, stmt.compile(dialect=dialect, column_keys=list(columns)))
    if list(compiled.positiontup or ()) != list(columns):
        raise ValueError(f"statement parameters {compiled.positiontup} are not the columns {list(columns)}")
    return str(compiled)


def insert_new_returning(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    unique: Sequence[str],
    returning: Sequence[str],
) -> list[tuple[Any, ...]]:
    """PostgreSQL: insert ``rows`` skipping those that clash on ``unique``; returns what was inserted.

    psycopg's pipelined ``executemany(…, returning=True)`` of one
    ``INSERT … ON CONFLICT DO NOTHING RETURNING`` per row: about twice as fast here as one
    multi-row VALUES statement, whose 30,000 parameters psycopg and the server handle slowly.
    SQLAlchemy cannot ask for the rows of an executemany, so this goes to the DBAPI cursor of
    the same connection (same transaction) and turns driver errors into SQLAlchemy's, as any
    other statement's would be.
    """
    prep = conn.dialect.identifier_preparer
    sql = (
        f"INSERT INTO {prep.format_table(table)} ({', '.join(prep.quote(c) for c in columns)})"
        f" VALUES ({', '.join(['%s'] * len(columns))})"
        f" ON CONFLICT ({', '.join(prep.quote(c) for c in unique)}) DO NOTHING"
        f" RETURNING {', '.join(prep.quote(c) for c in returning)}"
    )
    out: list[tuple[Any, ...]] = []
    if not rows:
        return out
    dbapi = conn.dialect.loaded_dbapi
    cursor: Any = conn.connection.cursor()
    try:
        cursor.executemany(sql, list(rows), returning=True)
        while True:
            out.extend(tuple(r) for r in cursor.fetchall())
            if not cursor.nextset():
                break
    except dbapi.Error as error:
        raise exc.DBAPIError.instance(sql, None, error, dbapi.Error) from error
    finally:
        cursor.close()
    return out


def select_in(conn: Connection, table: Table, columns: Sequence[str], key: str, values: Sequence[Any], *,
              equal: Mapping[str, Any] | None = None, size: int = IN_CHUNK) -> Iterator[tuple[Any, ...]]:
    """Rows of ``SELECT columns FROM table WHERE key IN values [AND column = value …]``, chunked.

    The hot path's lookups by a whole batch's keys, at the driver level: for an expanding IN,
    SQLAlchemy renders a bind name and runs the column type's bind processor for every value,
    which cost a receiving node more than the lookups themselves. Values go to the driver as
    they are (str, int, bytes), and rows come back as it gives them.
    """
    prep = conn.dialect.identifier_preparer
    mark = "?" if conn.dialect.name == "sqlite" else "%s"
    also = equal or {}
    head = f"SELECT {', '.join(prep.quote(c) for c in columns)} FROM {prep.format_table(table)} WHERE "
    tail = "".join(f" AND {prep.quote(c)} = {mark}" for c in also)
    for chunk in chunks(values, size):
        sql = f"{head}{prep.quote(key)} IN ({', '.join([mark] * len(chunk))}){tail}"
        yield from conn.exec_driver_sql(sql, (*chunk, *also.values()))


def chunks(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _first_line(error: BaseException) -> str:
    cause = getattr(error, "orig", None) or error
    text = str(cause).strip()
    return text.splitlines()[0] if text else type(cause).__name__


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Run a block, turning database errors into ``StoreError`` named after ``what``.

    Constraint and data errors are not retryable (the same statement fails again); anything
    else (locks, deadlocks, lost connections, a full disk) may succeed on a later attempt.
    """
    try:
        yield
    except NodeError:
        raise
    except (exc.IntegrityError, exc.DataError, exc.ProgrammingError) as error:
        wrapped = StoreError(f"{what}: {_first_line(error)}", code="E_STORE_CONSTRAINT")
        wrapped.retryable = False
        wrapped.exit_code = 1  # not unavailable: the operation ran and failed
        raise wrapped from error
    except exc.SQLAlchemyError as error:
        raise StoreError(f"{what}: {_first_line(error)}") from error
