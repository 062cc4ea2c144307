"""The first connection to the store, and what an operator is told when it cannot be made.

Every command opens the store before doing anything, so a wrong ``store.url`` or a server that is
down shows here first. SQLAlchemy's text for it spans lines and ends in a link to its own
documentation; the operator needs the server, the database and the one line libpq gave. A
database that does not exist, a user the server refuses, or a SQLite file that is not a database is
the configuration's fault (exit 2, as a SQLite store in a missing directory is); a server that
cannot be reached is a service unavailable (exit 4), which trying again later may cure.
"""

from __future__ import annotations

import re

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from node.errors import ConfigError, NodeError, StoreError

__all__ = ["connect", "connection_failure", "migration_failure"]

# libpq's own words for a server that answered and said no (psycopg gives no SQLSTATE for them).
_REFUSED_BY_SERVER = re.compile(
    r'database ".*" does not exist|role ".*" does not exist|password authentication failed'
    r"|no pg_hba\.conf entry|permission denied for database|no password supplied"
)

# SQLite's words for a file that is something else (sqlite3_errstr(SQLITE_NOTADB); older builds add
# "encrypted or").
_NOT_SQLITE = re.compile(r"file (is encrypted or )?is not a database")


def connect(engine: Engine) -> Connection:
    """A connection from ``engine``; failing to make one raises the error the operator should see."""
    try:
        return engine.connect()
    except DBAPIError as exc:
        raise connection_failure(engine.url, exc) from None


def connection_failure(url: URL, exc: DBAPIError) -> NodeError:
    reason = _reason(exc)
    if url.get_backend_name() == "sqlite":
        if _NOT_SQLITE.search(reason):  # another file named: no later try cures it
            return ConfigError(f"cannot open the store {url.database}: it is not a SQLite database ({reason}): "
                               "store.url names another file?", field="store.url")
        return StoreError(f"cannot open the store {url.database}: {reason}", field="store.url")
    where = f"{url.host}:{url.port or 5432}" if url.host else "the local socket"
    if _REFUSED_BY_SERVER.search(reason):
        return ConfigError(f"the database server at {where} refused the store: {reason} "
                           "(the database and its user are made on the server beforehand; the node "
                           "makes its own tables)", field="store.url")
    return StoreError(f"cannot reach the database server at {where}: {reason}", field="store.url")


# PostgreSQL's insufficient_privilege: the store's user may not create the tables.
_NO_PRIVILEGE = "42501"


def migration_failure(exc: SQLAlchemyError) -> NodeError:
    """What a failed schema migration tells the operator: one line, the database's own words."""
    orig = getattr(exc, "orig", None)
    lines = str(orig or exc).strip().splitlines()
    first = lines[0] if lines else type(exc).__name__
    if getattr(orig, "sqlstate", None) == _NO_PRIVILEGE:
        # Not an outage (exit 4): trying again changes nothing until someone grants the right.
        return ConfigError(f"the store's user may not make the node's tables: {first} (the node makes and "
                           "migrates its own tables: its user needs CREATE on the schema)", field="store.url")
    return StoreError(f"migration failed: {first}")


def _reason(exc: DBAPIError) -> str:
    """libpq's reason on one line, without the preamble that repeats the host or its hint below."""
    lines = [line.strip() for line in str(exc.orig).splitlines() if line.strip()]
    if not lines:
        return type(exc.orig).__name__
    # Several addresses tried: libpq lists each failure on a line of its own, after a heading.
    text = " ".join(lines) if lines[0].endswith(":") else lines[0]
    if "failed: " in text:
        text = text.rsplit("failed: ", 1)[1]
    return " ".join(text.split()).removeprefix("FATAL: ")
