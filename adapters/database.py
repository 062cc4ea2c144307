"""Pulling from a table or view a department publishes: incremental, resumable, bounded in memory.

Rows are read in the order of (watermark, key…) — the watermark is a column that grows whenever a
row is added or changed (an update time or an increasing id), the key (the primary key by
default) breaks ties, so rows sharing a watermark value are neither skipped nor read twice. Each
batch is committed by the node together with the position of its last row (``meta``), in ONE
transaction: after a crash the pull resumes exactly after the last committed row — no gap, no
repeat. Pages are keyset queries (``WHERE (wm, key) > last ORDER BY wm, key LIMIT n``, read by
``adapters.table_pages``) streamed through a server-side cursor, so memory stays flat.

The source is only read, unless ``feedback_table`` is configured: then the refusals of every
pulled row are written there (created if missing), replacing the earlier feedback of that row, so
the department sees in its own database what to fix until a corrected version is accepted.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import (
    Column,
    Engine,
    MetaData,
    Table,
    and_,
    func,
    select,
)
from sqlalchemy import types as sqltypes
from sqlalchemy.exc import NoSuchTableError

from adapters.base import Sink
from adapters.feedback import FeedbackTable
from adapters.table_pages import (
    PageReader,
    Position,
    decode_position,
    encode_position,
    engine_for,
    in_memory,
    placed,
    source_errors,
)
from node.access import today_in_china
from node.catalog import Catalog, Item
from node.config import DatabaseAdapterConfig
from node.errors import ConfigError, TransportError, UsageError
from node.pipeline import PrepareWorker, ahead
from node.preparing import PreparedBatch
from node.tabular import SourceRow
from node.values import CHINA

__all__ = ["DatabasePull", "State", "decode_position", "encode_position"]

# Rows one poll takes in at most (whole pages, at least one): a backlog is drained poll after poll,
# and a stopping node waits for no more than one poll.
POLL_ROWS = 100_000


class State(Protocol):
    """Where the pull keeps its position between runs: the node's own store (``meta``)."""

    def get(self, key: str, default: str | None = None) -> str | None: ...

    def put(self, key: str, value: str) -> None: ...


@dataclass(frozen=True)
class _Plan:
    """The reflected source: the columns read (fields first, then the order columns) and their codes."""

    table: Table
    order: tuple[Column[Any], ...]  # watermark, then the key columns
    columns: tuple[Column[Any], ...]  # one per field code, then the order columns
    codes: tuple[str, ...]  # field codes of the leading columns


class DatabasePull:
    """One published table or view (a ``Source``)."""

    def __init__(self, cfg: DatabaseAdapterConfig, *, catalog: Catalog, sink: Sink, state: State, name: str,
                 workers: Callable[[], PrepareWorker] | None = None, logger: logging.Logger | None = None,
                 setting: str = "") -> None:
        self.name = name
        # Where the adapter stands in node.yaml ("adapters[2]"): a setting that cannot work is
        # named by its whole dotted path, as the configuration's own checks name theirs.
        self._setting = setting
        self.interval_s = cfg.interval_s
        self._cfg = cfg
        self._item: Item = catalog.item(cfg.item)
        self._sink = sink
        self._state = state
        self._log = logger or logging.getLogger(__name__)
        self._engine: Engine | None = None
        self._plan: _Plan | None = None
        self._feedback: FeedbackTable | None = None
        self._codes_read: tuple[str, ...] | None = None  # the fields the last shape read had columns for
        # With ``workers``, pages are read and prepared in a worker process (what ``sink.prepare``
        # would do there), so reading, validation and this process's signing and storing run on
        # two cores; without, on a thread of this process.
        self._workers = workers
        self._worker: PrepareWorker | None = None
        self.position_key = f"adapter.{name}.position"
        self.feedback_key = f"adapter.{name}.feedback_position"

    # --- Source ------------------------------------------------------------------------------
    def poll(self) -> int:
        """Take in new or changed rows, up to ``POLL_ROWS``; returns how many (0 = nothing new)."""
        try:
            plan = self._prepare()
            if self._feedback is not None:
                self._catch_up_feedback(plan)
            after = self._position(self.position_key)
            return self._pull(plan, after, upto=None, page_rows=self._cfg.page_rows, commit_position=True)
        except (ConfigError, TransportError) as exc:
            if self._setting and exc.field and not exc.field.startswith(f"{self._setting}."):
                exc.field = f"{self._setting}.{exc.field}"
            if isinstance(exc, ConfigError):
                raise
            # The source failed; its shape may have changed too (a column dropped, a view or table
            # replaced): the next poll reads the shape again instead of repeating the same failing
            # query until the node restarts.
            self._plan = self._feedback = None
            raise

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @property
    def position(self) -> Position | None:
        return self._position(self.position_key)

    # --- pulling ------------------------------------------------------------------------------
    def _pull(self, plan: _Plan, after: Position | None, *, upto: Position | None, page_rows: int,
              commit_position: bool) -> int:
        reader = PageReader(
            item=self._item.code, source=self._cfg.table, batch_id=uuid.uuid4().hex, adapter=self.name,
            url=self._cfg.url, table=plan.table, columns=tuple(c.key for c in plan.columns),
            order_width=len(plan.order), codes=plan.codes, after=after, upto=upto, page_rows=page_rows,
            pages=max(1, POLL_ROWS // page_rows), batch_rows=self._cfg.batch_rows,
            with_keys=self._feedback is not None, timeout_s=self._cfg.timeout_s)
        taken = 0
        for prepared, (size, keys, last) in self._prepared(reader):
            meta = {self.position_key: encode_position(last)} if commit_position else None
            outcomes = self._sink.commit(self._item, prepared, source=reader.source, batch_id=reader.batch_id,
                                         meta=meta)
            if self._feedback is not None:
                self._feedback.write(self._source(), keys, outcomes)
                self._state.put(self.feedback_key, encode_position(last))
            taken += size
            if commit_position and last and _ahead_of_today(last[0]):
                # Rows changed before that date are behind the position until it passes: said at
                # once, not discovered when corrections stop arriving (docs/adapters.md).
                self._log.warning("adapter.watermark_in_future", extra={
                    "adapter": self.name, "watermark": str(last[0]), "position": encode_position(last),
                    "remedy": f"correct the row, then: credit-node adapters reset {self.name}"})
            self._log.info("adapter.batch", extra={
                "adapter": self.name, "rows": size, "batch": reader.batch_id,
                "rejected": sum(1 for o in outcomes if o.outcome == "rejected")})
            del prepared, outcomes, keys  # freed before the next batch arrives, not after
        return taken

    def _prepared(self, reader: PageReader) -> Iterator[tuple[PreparedBatch, Any]]:
        """The reader's batches, prepared ahead of the one committing: in the worker, or on a thread."""
        if self._workers is not None and self._worker is None and not in_memory(self._cfg.url):
            self._worker = self._workers()
        if self._worker is not None:
            return self._worker.run(reader)

        def prepare(batch: tuple[Sequence[SourceRow], Any]) -> tuple[PreparedBatch, Any]:
            rows, extra = batch
            return self._sink.prepare(self._item, rows, source=reader.source, batch_id=reader.batch_id), extra

        return ahead(reader.batches({reader.url: self._source()}), prepare)

    def _position(self, key: str) -> Position | None:
        text = self._state.get(key)
        return decode_position(text) if text else None

    # --- the source and its shape ----------------------------------------------------------------
    def _source(self) -> Engine:
        if self._engine is None:
            self._engine = engine_for(self._cfg.url, self.name, self._cfg.timeout_s)
        return self._engine

    def _prepare(self) -> _Plan:
        if self._plan is not None:
            return self._plan
        cfg = self._cfg
        schema, _dot, name = cfg.table.rpartition(".")
        # Connecting apart: an unreachable server or a refused login is the url's to fix, and is
        # named so; what fails after it is the table's.
        with source_errors(self.name, "connecting to", field="url"):
            connection = self._source().connect()
        with source_errors(self.name, "reading the shape of"), connection as conn:
            try:
                table = Table(name, MetaData(), autoload_with=conn, schema=schema or None)
            except NoSuchTableError:
                raise ConfigError(f"adapter {self.name}: no table or view {cfg.table!r} in the source",
                                  field="table") from None
        by_lower = {c.name.lower(): c for c in table.columns}

        def column(col_name: str, what: str) -> Column[Any]:
            found = by_lower.get(col_name.lower())
            if found is None:
                raise ConfigError(f"adapter {self.name}: {cfg.table} has no column {col_name!r} ({what})",
                                  field=what)
            return found

        key_names = cfg.key or tuple(c.name for c in table.primary_key.columns)
        if not key_names:
            raise ConfigError(f"adapter {self.name}: {cfg.table} has no primary key; name the tie-breaker "
                              "columns under key:", field="key")
        order = (column(cfg.watermark, "watermark"), *(column(k, "key") for k in key_names))
        for setting, ordering in zip(("watermark", *("key" for _k in key_names)), order, strict=True):
            if (why := _unfit_for_position(ordering, watermark=setting == "watermark")) is not None:
                raise ConfigError(f"adapter {self.name}: {setting}: column {ordering.name!r} of {cfg.table} is {why}; "
                                  "use an update time, an integer or a DECIMAL column (or a view that casts to one)",
                                  field=setting)
        for code in cfg.columns:
            if not self._item.has_field(code):
                raise ConfigError(f"adapter {self.name}: {code} is not a field of {self._item.code}",
                                  field=f"columns.{code}")
        fields: list[tuple[str, Column[Any]]] = []
        for f in self._item.fields:
            mapped = cfg.columns.get(f.code)
            col = column(mapped, f"columns.{f.code}") if mapped else by_lower.get(f.code.lower())
            if col is not None:
                fields.append((f.code, col))
            elif f.required:
                raise ConfigError(f"adapter {self.name}: {cfg.table} has no column for the required field "
                                  f"{f.code} ({f.name}); map it under columns:", field=f"columns.{f.code}")
        codes = tuple(f for f, _c in fields)
        if self._codes_read is not None and (lost := [c for c in self._codes_read if c not in codes]):
            self._log.warning("adapter.fields_not_read", extra={
                "adapter": self.name, "fields": lost,
                "reason": f"{cfg.table} no longer has their columns: these optional fields are read as empty"})
        self._codes_read = codes
        self._plan = _Plan(table, order, (*(c for _f, c in fields), *order), codes)
        self._warn_unplaced(table, order)
        if cfg.feedback_table:
            self._feedback = FeedbackTable(cfg.feedback_table, source_table=cfg.table, adapter=self.name)
            self._feedback.create(self._source())
        return self._plan

    def _warn_unplaced(self, table: Table, order: tuple[Column[Any], ...]) -> None:
        """Rows with NULL in the watermark or a key are never read (table_pages): say how many,
        once per start, so the department learns of them instead of losing them unseen."""
        engine = self._source()
        with source_errors(self.name, "counting rows without a position in"), engine.connect() as conn:
            n = conn.execute(select(func.count()).select_from(table).where(~and_(*placed(order, engine.dialect.name))))
            count = int(n.scalar_one())
        if count:
            self._log.warning("adapter.rows_not_pulled", extra={
                "adapter": self.name, "rows": count, "columns": [c.name for c in order],
                "reason": "NULL in the watermark or a key column, or a date there no program can read (infinity, "
                          "0000-00-00, a year before 1 or after 9999): such rows are never read; correct them"})
        watermark = order[0]
        if not isinstance(watermark.type, sqltypes.String):
            return
        with source_errors(self.name, "measuring the watermark in"), engine.connect() as conn:
            shortest, longest = conn.execute(select(func.min(func.length(watermark)),
                                                    func.max(func.length(watermark)))).one()
        if shortest is not None and shortest != longest:
            # Text is ordered as text: a row written after the position can sort before it and is
            # then never read. Said at every start; the pull itself cannot tell which rows it misses.
            self._log.warning("adapter.watermark_not_fixed_width", extra={
                "adapter": self.name, "watermark": watermark.name, "widths": [shortest, longest],
                "reason": "the watermark is text of varying width: as text, '2026-1-10' sorts before '2026-1-9' and "
                          "'AJ-10' before 'AJ-9', so rows written after others may never be read; use a date/time "
                          "or number column, or a view that casts to one (CAST(gxsj AS DATETIME))"})

    # --- feedback to the source ------------------------------------------------------------------
    def _catch_up_feedback(self, plan: _Plan) -> None:
        """Re-send feedback for rows committed before a crash let us write it (idempotent)."""
        done = self._state.get(self.feedback_key)
        position = self._state.get(self.position_key)
        if not position:
            # Nothing pulled yet (or the position was reset): feedback is owed from the first row.
            # Recorded now, so a node killed after its first batch committed and before that
            # batch's feedback was written is not taken for one whose feedback was newly configured.
            if done != "":
                self._state.put(self.feedback_key, "")
            return
        if done == position:
            return
        if done is None:  # feedback newly configured: answer from here on
            self._state.put(self.feedback_key, position or "")
            return
        upto = decode_position(position)
        while self._state.get(self.feedback_key) != position:
            done = self._state.get(self.feedback_key)
            if not self._pull(plan, decode_position(done) if done else None, upto=upto,
                              page_rows=self._cfg.page_rows, commit_position=False):
                self._state.put(self.feedback_key, position)


def _unfit_for_position(col: Column[Any], *, watermark: bool) -> str | None:
    """Why a column cannot hold the pull's position, or None."""
    if watermark and isinstance(col.type, sqltypes.Date) and not isinstance(col.type, sqltypes.DateTime):
        # A row changed again on the day it was read keeps its watermark and lies behind the
        # position (same day, key not after the last one taken): that change was never read.
        return ("a DATE, which does not grow when a row changes again on the day it was read: such changes "
                "would never be pulled")
    if isinstance(col.type, sqltypes.Float):
        # The value read back is not the one stored (a FLOAT 0.3 reads as 0.3, is stored as
        # 0.30000001): ``wm > :wm`` then holds for the last row taken, which came again every poll.
        return (f"{col.type.__visit_name__.upper()}, an approximate number: the position read from it does not "
                "compare equal to the stored value, so rows would be read again and again")
    if isinstance(col.type, sqltypes.Time | sqltypes.Interval):
        # A time of day starts again every day: a change made the next day at an earlier hour
        # sorts before the position and would never be read.
        return f"{col.type.__visit_name__.upper()}, which does not grow from one day to the next"
    if isinstance(col.type, sqltypes.Boolean):
        return f"{col.type.__visit_name__.upper()}, which cannot grow with every change"
    if isinstance(col.type, sqltypes.JSON | sqltypes.ARRAY):
        return f"{col.type.__visit_name__.upper()}, which the database cannot order rows by"
    return None


def _ahead_of_today(watermark: object) -> bool:
    """A date or time watermark later than tomorrow in Beijing (a sequence number never is)."""
    if isinstance(watermark, datetime):
        watermark = watermark.astimezone(CHINA).date() if watermark.tzinfo else watermark.date()
    return isinstance(watermark, date) and watermark > today_in_china() + timedelta(days=1)


def reset_position(node: Any, name: str) -> Any:
    """Forget the position of the database pull ``name`` of ``node`` (its next poll reads the whole
    table again); the position it had, kept in the audit log too."""
    from node.config import adapter_name
    from node.store import AuditEvent

    if name not in {adapter_name(a) for a in node.config.adapters if a.kind == "database"}:
        raise UsageError(f"no database adapter {name!r} in this node's configuration", field="name")
    def logged(conn: Any, was: str | None) -> None:
        node.store.audit.append(conn, [AuditEvent(actor="operator", action="adapter.reset", subject=name,
                                                  detail={"position_was": was})])

    was = node.store.meta.drop(f"adapter.{name}.position", also=logged)
    return json.loads(was) if was else None
