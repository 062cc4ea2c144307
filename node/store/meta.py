"""Key/value facts about the store itself (owner node id, catalogue version, log chain heads)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, Engine, delete, select

from node.store._sql import insert_for, translated, write_transaction
from node.store.tables import meta

__all__ = ["Meta", "get_value", "put_value"]


def get_value(conn: Connection, key: str) -> str | None:
    return conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar_one_or_none()


def put_value(conn: Connection, key: str, value: str) -> None:
    stmt = insert_for(conn, meta).values(key=key, value=value)
    conn.execute(stmt.on_conflict_do_update(index_elements=[meta.c.key], set_={"value": value}))


class Meta:
    """``meta`` outside a caller's transaction: each call is its own transaction."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get(self, key: str, default: str | None = None) -> str | None:
        with translated(f"reading meta {key!r}"), self._engine.connect() as conn:
            value = get_value(conn, key)
        return default if value is None else value

    def put(self, key: str, value: str) -> None:
        with translated(f"writing meta {key!r}"), write_transaction(self._engine) as conn:
            put_value(conn, key, value)

    def claim(self, key: str, value: str) -> str:
        """``key``'s value, set to ``value`` first if it has none (one transaction: of two writers
        claiming at once, one sets it and the other reads what it set)."""
        with translated(f"writing meta {key!r}"), write_transaction(self._engine) as conn:
            held = get_value(conn, key)
            if held is None:
                conn.execute(insert_for(conn, meta).values(key=key, value=value).on_conflict_do_nothing())
                held = get_value(conn, key)
        return value if held is None else held

    def drop(self, key: str, *, also: Callable[[Connection, str | None], None] | None = None) -> str | None:
        """Forget ``key``; its value, if it had one. ``also`` runs in the same transaction with that
        value (the audit event that says so commits with it, or neither does)."""
        with translated(f"removing meta {key!r}"), write_transaction(self._engine) as conn:
            value = get_value(conn, key)
            conn.execute(delete(meta).where(meta.c.key == key))
            if also is not None:
                also(conn, value)
        return value
