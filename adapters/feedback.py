"""The feedback table a department may ask for: its pulled rows' refusals, in its own database.

Written only when ``feedback_table`` is configured (the source is otherwise only read). Each
pulled row's refusals replace what was written for that row before, so a corrected row that is
accepted clears its lines, and the department sees in its own system what is left to fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
)

from adapters.table_pages import source_errors
from node.errors import Problem
from node.preparing import RowOutcome

__all__ = ["FeedbackTable"]

# Row keys per DELETE: a few statements per page, each within every database's parameter limit.
_KEYS_PER_DELETE = 500


class FeedbackTable:
    """``schema.name`` (or ``name``) in the department's database, answering for ``source_table``."""

    def __init__(self, spec: str, *, source_table: str, adapter: str) -> None:
        self._table = _feedback_table(spec)
        self._source_table = source_table
        self._adapter = adapter

    def create(self, engine: Engine) -> None:
        """Create the table if it is missing (nothing else of the source is ever written)."""
        # A login that may only SELECT fails here: named by the setting that asked for the table.
        with source_errors(self._adapter, "creating the feedback table in", field="feedback_table"), \
                engine.begin() as conn:
            self._table.create(conn, checkfirst=True)

    def write(self, engine: Engine, keys: Sequence[tuple[str, str]], outcomes: Sequence[RowOutcome]) -> None:
        """Replace the feedback of these rows ((key, watermark) each) by their outcomes' refusals."""
        fb = self._table.c
        # Each refused row with its own watermark: the version of the row that was refused.
        refused = [{"source_table": self._source_table, "source_key": key[:255], "row_watermark": watermark[:64],
                    "field": p.field, "code": p.code, "reason": p.message, "reported_at": datetime.now()}
                   for (key, watermark), o in zip(keys, outcomes, strict=True) for p in _refusals(o)]
        names = [key[:255] for key, _watermark in keys]
        with source_errors(self._adapter, "writing the feedback table in", field="feedback_table"), \
                engine.begin() as conn:
            for start in range(0, len(names), _KEYS_PER_DELETE):
                conn.execute(delete(self._table).where(fb.source_table == self._source_table,
                                                       fb.source_key.in_(names[start:start + _KEYS_PER_DELETE])))
            if refused:
                conn.execute(insert(self._table), refused)


def _refusals(outcome: RowOutcome) -> list[Problem]:
    return [p for p in outcome.problems if not p.warning] if outcome.outcome == "rejected" else []


def _feedback_table(spec: str) -> Table:
    schema, _dot, name = spec.rpartition(".")
    return Table(
        name, MetaData(),
        Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
        Column("source_table", String(128), nullable=False),
        Column("source_key", String(255), nullable=False),  # the pulled row's key columns, '|'-joined
        Column("row_watermark", String(64), nullable=False),  # the watermark of the version refused
        Column("field", String(64), nullable=False),
        Column("code", String(64), nullable=False),
        Column("reason", Text, nullable=False),
        Column("reported_at", DateTime, nullable=False),
        Index(None, "source_table", "source_key"),
        schema=schema or None,
        # Whatever the database's default (latin1, gbk on legacy systems): keys, values and
        # reasons are any Chinese text, rare characters included.
        mysql_charset="utf8mb4", mariadb_charset="utf8mb4",
    )


