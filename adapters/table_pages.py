"""A department's table read in keyset pages: the read half of a database pull.

Rows come in (watermark, key…) order, page after page (``WHERE wm >= :wm AND (wm > :wm OR …)
ORDER BY wm, key LIMIT n``), streamed through a server-side cursor in batches (on MySQL/MariaDB, one
batch per page, read whole: no lock is held while the node works), so memory stays flat however big
the table is. A ``PageReader`` is picklable, so the node's prepare worker
(``node.pipeline``) can do the reading; ``adapters.database`` decides where to start and commits.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Date,
    DateTime,
    Engine,
    Table,
    and_,
    create_engine,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.exc import DataError as DBAPIDataError

from node.errors import ConfigError, NodeError, TransportError
from node.tabular import SourceRow

__all__ = ["PageReader", "Position", "decode_position", "encode_position", "engine_for", "in_memory",
           "placed", "rows_after", "source_errors"]

Position = tuple[Any, ...]  # (watermark, key columns…) of the last row taken in


def encode_position(values: Position) -> str:
    """JSON with each value's type, so a datetime comes back a datetime (and binds as one)."""
    out: list[list[Any]] = []
    for v in values:
        if isinstance(v, bool) or v is None:
            raise ConfigError(f"a watermark or key value cannot be {v!r}")
        if isinstance(v, datetime):
            out.append(["datetime", v.isoformat()])
        elif isinstance(v, date):
            out.append(["date", v.isoformat()])
        elif isinstance(v, Decimal):
            out.append(["decimal", str(v)])
        elif isinstance(v, bytes | bytearray | memoryview):  # BINARY/bytea keys: hex, bound as bytes again
            out.append(["bytes", bytes(v).hex()])
        elif isinstance(v, int | float | str):
            out.append([type(v).__name__, v])
        else:
            out.append(["str", str(v)])
    return json.dumps(out, ensure_ascii=False)


def decode_position(text: str) -> Position:
    parse: dict[str, Callable[[Any], Any]] = {
        "datetime": datetime.fromisoformat, "date": date.fromisoformat, "decimal": Decimal, "int": int,
        "float": float, "str": str, "bytes": bytes.fromhex}
    return tuple(parse[kind](value) for kind, value in json.loads(text))


@dataclass(frozen=True)
class PageReader:
    """One keyset page of the source, read in batches (a ``node.pipeline.BatchReader``).

    Picklable — the reflected table crosses to the prepare worker — so the page can be read there.
    Each batch comes with (row count, feedback keys, position of its last row).
    """

    item: str
    source: str
    batch_id: str
    adapter: str
    url: str
    table: Table
    columns: tuple[str, ...]  # one per field code, then the order columns
    order_width: int
    codes: tuple[str, ...]
    after: Position | None
    upto: Position | None
    page_rows: int
    pages: int  # at most this many pages, each a keyset query after the last row of the one before
    batch_rows: int
    with_keys: bool
    timeout_s: float  # the adapter's (node.config.DatabaseAdapterConfig)

    def batches(self, connections: dict[str, Any]) -> Iterator[tuple[Sequence[SourceRow], Any]]:
        engine = connections.get(self.url)
        if engine is None:
            engine = connections[self.url] = engine_for(self.url, self.adapter, self.timeout_s)
        columns = [self.table.c[name] for name in self.columns]
        order = columns[-self.order_width:]
        # Rows without a place in the keyset order are never read (``placed``); the adapter counts
        # them once and warns (adapters.database).
        # On MySQL/MariaDB a statement still sending rows keeps a MyISAM/Aria table locked against
        # the department's writers, and an open transaction keeps any table's metadata lock (an
        # ALTER waits, and every statement queues behind it): there each page is one batch, taken
        # off the server whole and its transaction ended before the node works on it.
        whole = engine.dialect.name in ("mysql", "mariadb")
        page_rows = min(self.page_rows, self.batch_rows) if whole else self.page_rows
        stmt = select(*columns).where(*placed(order, engine.dialect.name), *_settled(order, engine.dialect.name)) \
            .order_by(*order).limit(page_rows)
        if self.upto is not None:
            stmt = stmt.where(~rows_after(order, self.upto))
        after = self.after
        lenient = False
        # Page after page without waiting for the node to commit the last one: the worker would
        # otherwise sit idle at every page boundary.
        for _page in range(-(-self.pages * self.page_rows // page_rows)):
            taken = 0
            while True:  # a page; read once more, from where it stopped, if the driver cannot read a date
                page = stmt if after is None else stmt.where(rows_after(order, after))
                again = False
                with source_errors(self.adapter, "reading"), engine.connect() as conn:
                    if lenient:
                        _lenient_dates(conn.connection.driver_connection)
                    try:
                        if whole:
                            fetched = conn.execute(page).all()
                            conn.rollback()
                            parts: Iterator[Sequence[Any]] = iter([fetched] if fetched else [])
                            del fetched
                        else:
                            parts = conn.execution_options(stream_results=True, yield_per=self.batch_rows) \
                                .execute(page).partitions(self.batch_rows)
                        for part in parts:
                            rows, keys = self._rows(part)
                            after = tuple(part[-1][-self.order_width:])
                            taken += len(part)
                            del part
                            yield rows, (len(rows), keys, after)
                            del rows, keys  # not alive while the next batch is read
                    except DBAPIDataError as exc:
                        # PostgreSQL 'infinity' or a year past 9999: such dates are then read as their
                        # text, which the row check refuses. Only then: the lenient loaders run in
                        # Python, several times slower than the driver's own.
                        if lenient or not _from_psycopg(exc):
                            raise
                        lenient = again = True
                if not again:
                    break
            if taken < page_rows:
                return  # the source has nothing more (for now)

    def _rows(self, part: Sequence[Any]) -> tuple[list[SourceRow], list[tuple[str, str]]]:
        # The hot loop of a pull: dict(zip(…)) builds each row in C (validation skips the NULLs).
        codes, width = self.codes, self.order_width - 1
        rows: list[SourceRow] = []
        # A row's number is its integer primary key, or a stable number made from its key columns,
        # so feedback about a row whose natural key could not be read finds the same row when it
        # comes again corrected (node.store.rejections.row_key). Only a key the store's row column
        # holds as itself: 0 means "no row", and an unsigned id past 2**63 overflowed the store.
        for r in part:
            key = r[-1] if width == 1 else None
            number = key if type(key) is int and 0 < key < _ROW_LIMIT else _row_number(r[-width:])
            rows.append(SourceRow(number, dict(zip(codes, r, strict=False))))
        keys = [("|".join(_key_text(v) for v in r[-width:]), _key_text(r[-width - 1])) for r in part] \
            if self.with_keys else []
        return rows, keys


def engine_for(url: str, adapter: str, timeout_s: float) -> Engine:
    """An engine for a department's database that never waits on it for ever.

    A source that stops answering (a firewall dropping packets, a half-open connection) must fail
    the poll, to be retried, rather than hang the pull: connecting and each statement are bounded
    by ``timeout_s``, and on PostgreSQL TCP keepalives find a dead peer while a statement waits.
    """
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    try:
        parsed = make_url(url)
    except ValueError:  # a port that is not a number; the message would quote the url's text
        raise ConfigError(f"adapter {adapter}: url cannot be read (is its port a number?)", field="url") from None
    except ArgumentError as exc:
        raise ConfigError(f"adapter {adapter}: url is not usable: {exc}", field="url") from None
    if parsed.host and "@" in parsed.host:
        # The password held an '@': what follows it was taken for the host, and the driver's
        # "cannot resolve host" error put that part of the password in the log at every poll.
        raise ConfigError(f"adapter {adapter}: url: the user name or password holds '@', which must be written "
                          "%40 (percent-encoded) there", field="url")
    backend = parsed.get_backend_name()
    if backend in ("mysql", "mariadb") and (charset := parsed.query.get("charset")):
        from pymysql.charset import charset_by_name  # type: ignore[import-untyped]  # PyMySQL ships no types

        if not isinstance(charset, str) or charset_by_name(charset) is None:
            # PyMySQL fails on it with an AttributeError at every connection, a crash each poll.
            raise ConfigError(f"adapter {adapter}: url: charset {charset!r} is not a MySQL/MariaDB character set "
                              "(utf8mb4, gbk, latin1 …)", field="url")
        if charset.lower() in ("utf8", "utf8mb3"):
            # 3-byte UTF-8 has no form for characters outside the BMP (rare name characters such as
            # 𠀀): the server sent '?' for them, and the name was stored that way. utf8mb4 reads
            # every column a utf8 connection could, and those characters too.
            url = parsed.update_query_dict({"charset": "utf8mb4"}).render_as_string(hide_password=False)
    args = _bounded(backend, timeout_s)
    if "options" in parsed.query:  # the operator's own server options win
        args.pop("options", None)
    try:
        return create_engine(url, pool_pre_ping=True, connect_args=args)
    except (ArgumentError, ImportError) as exc:
        raise ConfigError(f"adapter {adapter}: url is not usable: {exc}", field="url") from None


def _bounded(backend: str, timeout_s: float) -> dict[str, Any]:
    """The driver's own connection arguments for ``timeout_s`` (drivers not named here get none)."""
    seconds = max(1, math.ceil(timeout_s))
    if backend == "postgresql":  # libpq parameters, via psycopg
        return {"connect_timeout": seconds, "options": f"-c statement_timeout={seconds * 1000}",
                "keepalives": 1, "keepalives_idle": seconds, "keepalives_interval": max(1, seconds // 3),
                "keepalives_count": 3}
    if backend in ("mysql", "mariadb"):  # PyMySQL: every socket read and write is bounded
        # TIMESTAMP values come in the session's zone: in the server's (often UTC), an 07:00 decision
        # in Beijing would read as the day before. DATETIME columns are not converted.
        return {"connect_timeout": seconds, "read_timeout": seconds, "write_timeout": seconds,
                "init_command": "SET time_zone = '+08:00'"}
    if backend == "sqlite":
        return {"timeout": timeout_s}  # waiting for another writer's lock
    return {}


def _from_psycopg(exc: DBAPIDataError) -> bool:
    return type(getattr(exc, "orig", None)).__module__.startswith("psycopg")


def _lenient_dates(dbapi_connection: Any) -> None:
    """On this psycopg connection, a date the driver cannot turn into a Python one ('infinity', a
    year past 9999) comes as its text, which the row's date check refuses with its value; raised by
    the driver, it failed the whole page, and every later pull at the same place."""
    from psycopg import DataError
    from psycopg.types.datetime import DateLoader, TimestampLoader, TimestamptzLoader

    for name, base in (("date", DateLoader), ("timestamp", TimestampLoader), ("timestamptz", TimestamptzLoader)):
        def load(self: Any, data: Any, _base: Any = base) -> Any:
            try:
                return _base.load(self, data)
            except DataError:
                return bytes(data).decode("ascii", "replace")

        dbapi_connection.adapters.register_loader(name, type(f"Lenient{base.__name__}", (base,), {"load": load}))


def in_memory(url: str) -> bool:
    """An in-memory SQLite source exists only in this process: a worker could not see it."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return False  # _engine names the bad url
    return parsed.get_backend_name() == "sqlite" and (
        parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory")


def _key_text(value: Any) -> str:
    """A key or watermark value as the department reads it (bytes as hex, not a Python repr)."""
    return bytes(value).hex() if isinstance(value, bytes | bytearray | memoryview) else str(value)


_ROW_LIMIT = 2**63  # the store keeps row numbers as a signed 64-bit BIGINT


def _row_number(key: Sequence[Any]) -> int:
    """A positive 56-bit number standing for a row whose key is not one integer."""
    return int.from_bytes(hashlib.sha256("\x1f".join(map(_key_text, key)).encode()).digest()[:7], "big")


# PostgreSQL dates past what Python holds (±infinity, years before 1 or after 9999), kept a day
# clear of the ends so a TIMESTAMPTZ shifted to the session's zone still fits.
_FIRST_PLACED, _LAST_PLACED = datetime(1, 1, 2), datetime(9999, 12, 30)
_FIRST_DATE = datetime(1, 1, 1)  # MySQL/MariaDB: what sorts before it is a zero date


def placed(order: Sequence[Column[Any]], dialect: str) -> list[ColumnElement[bool]]:
    """The conditions for a row to have a place in the (watermark, key…) order.

    NULL compares with nothing and sorts first on one database, last on another: such rows are
    never read, on every database alike; on MySQL/MariaDB neither is the zero date. On PostgreSQL
    neither is a date or time the driver cannot turn into a Python one: read as its text
    ('infinity'), it became the position, and the next page compared the column with text and
    failed, at every poll from then on.
    """
    conditions: list[ColumnElement[bool]] = [c.is_not(None) for c in order]
    dates = [c for c in order if isinstance(c.type, Date | DateTime)]
    if dialect == "postgresql":
        conditions += [c.between(_FIRST_PLACED, _LAST_PLACED) for c in dates]
    elif dialect in ("mysql", "mariadb"):
        # The zero date ('0000-00-00', written where NO_ZERO_DATE is off) is NULL to MariaDB's IS NULL
        # in a NOT NULL column, so it was counted as never read, yet read (as text) all the same.
        conditions += [c >= _FIRST_DATE for c in dates]
    return conditions


def _settled(order: Sequence[Column[Any]], dialect: str) -> list[ColumnElement[bool]]:
    """On MySQL/MariaDB, rows whose update time lies in the source's current second wait for the next page.

    Update times there are mostly whole seconds: read up to (08:00:00, id 10), a row 5 changed
    later in that same second got (08:00:00, 5), behind the position, and was never read. NOW()
    is the statement's own start, in the session's zone (+08:00, as TIMESTAMPs are read), so what
    the page leaves out is written no earlier than it; later times (a mistyped year) are read as ever.
    """
    watermark = order[0]
    if dialect not in ("mysql", "mariadb") or not isinstance(watermark.type, DateTime):
        return []
    return [or_(watermark < func.now(), watermark >= literal_column("NOW() + INTERVAL 1 SECOND"))]


def rows_after(order: Sequence[Column[Any]], position: Position) -> ColumnElement[bool]:
    """Rows after ``position`` in (watermark, key…) order, written so an index on the columns is used.

    ``wm >= :wm AND (wm > :wm OR (k1 > :k1) OR (k1 = :k1 AND k2 > :k2) …)``: the leading range
    is sargable on every database, which a row-value comparison is not everywhere (MariaDB).
    """
    if len(position) != len(order):
        raise ConfigError("the stored pull position does not match the configured watermark and key columns; "
                          "give the adapter a new name to start over", field="key")
    later = [and_(*(order[j] == position[j] for j in range(i)), order[i] > position[i]) for i in range(len(order))]
    return and_(order[0] >= position[0], or_(*later))


@contextmanager
def source_errors(name: str, what: str, *, field: str = "") -> Iterator[None]:
    """Database errors of the department's system become a retryable, named TransportError
    (``field``: the setting to look at when it persists, e.g. ``url`` for a failed login)."""
    try:
        yield
    except NodeError:
        raise
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise TransportError(f"adapter {name}: {what} the source failed: {first}", code="E_ADAPTER_SOURCE",
                             field=field) from exc
