"""Opening the store's database and bringing its schema up to date.

SQLite (the embedded default) is tuned for one writer and many readers: WAL journal, FULL
synchronous (a commit is on disk before it returns: a node acknowledges what it committed, and the
sender then forgets it, so a commit lost to a power cut would be lost for good, or re-made with
another body), enforced foreign keys, and a busy timeout so concurrent
writers queue instead of failing. Write transactions of ``node.store`` begin with BEGIN IMMEDIATE
(see ``_sql.write_transaction``). PostgreSQL (production) is reached through psycopg 3.
"""

from __future__ import annotations

import os
import pathlib
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from node.errors import ConfigError, StoreError
from node.store.reach import connect, migration_failure

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["MIGRATIONS_DIR", "migrate", "missing_store_directory", "normalise_url", "open_engine"]

MIGRATIONS_DIR = pathlib.Path(__file__).resolve().parent / "migrations"
# The newest migration (tests/store/test_migrations.py holds it equal to the scripts' head). A
# store already there is opened without loading Alembic, whose import and script scan cost
# every CLI command about a third of a second.
HEAD_REVISION = "0011"
SCHEMA_UNKNOWN = "E_STORE_SCHEMA"  # the store's schema revision is one this release does not know

# The PostgreSQL advisory lock a migration holds (any fixed number; per database).
MIGRATION_LOCK_KEY = 0x63726564_6D696772  # "credmigr"
BUSY_TIMEOUT_MS = 30_000
PAGE_SIZE = 16_384
CACHE_KIB = 16_384
MMAP_BYTES = 32 * 1024 * 1024
# Connections the pool may open beyond its 5 kept ones. The gRPC server's pool threads
# (server.max_workers, 16 by default), the runtime's extensions and its event loop can all hold
# one at once; SQLAlchemy's default (10) would leave the loop waiting for a connection, and every
# call on the loop waiting with it (docs/decisions/grpc-asyncio-server.md).
POOL_OVERFLOW = 32
# The lookup readers map as much of the file as SQLite allows (its compile-time ceiling is 2 GB):
# a lookup touches a dozen pages scattered over the file, and each one outside the map is a
# read() syscall; mapped file pages are shared page cache, not memory the process owns.
READER_MMAP_BYTES = 2**31 - 1
# How long to wait for a database server to answer a new connection. libpq waits without limit:
# a server that takes the connection and never answers (hung, or another service on its port)
# would hold every command, and a starting node, for good. A URL's own connect_timeout wins.
CONNECT_TIMEOUT_S = 10


def normalise_url(url: str) -> URL:
    """Parse ``url`` and pin the driver: ``postgresql://`` and ``postgres://`` mean psycopg 3."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    try:
        parsed = make_url(url)
        parsed.port  # noqa: B018 - parsed lazily: a port that is not a number fails here, not later
    except (ArgumentError, ValueError):
        # Not the URL in the message: it may hold a password.
        raise ConfigError("store url is not a database URL (dialect+driver://user:password@host:port/database, "
                          "sqlite:///path); check its port and form", field="store.url") from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"unsupported store backend {parsed.get_backend_name()!r} (sqlite or postgresql)",
            field="store.url",
        )
    return parsed


def open_engine(url: str, *, echo: bool = False) -> Engine:
    """An Engine for ``url`` with the store's connection settings applied to every connection."""
    parsed = normalise_url(url)
    try:
        if parsed.get_backend_name() == "sqlite":
            return _open_sqlite(parsed, echo=echo)
        connect_args = {} if "connect_timeout" in parsed.query else {"connect_timeout": CONNECT_TIMEOUT_S}
        return create_engine(parsed, echo=echo, pool_pre_ping=True, max_overflow=POOL_OVERFLOW,
                             connect_args=connect_args)
    except (ArgumentError, NoSuchModuleError) as exc:  # an unknown driver, a malformed SQLite URL
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"store url cannot be used: {first}", field="store.url") from None
    except ImportError as exc:  # a driver SQLAlchemy knows, not installed here (postgresql+psycopg2)
        raise ConfigError(f"store url cannot be used: the driver of {parsed.drivername} is not installed "
                          f"({exc}); PostgreSQL is reached through postgresql+psycopg", field="store.url") from None


def _sqlite_file(url: URL) -> pathlib.Path | None:
    """The file of a SQLite URL; None for an in-memory database."""
    database = url.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    return None if in_memory else pathlib.Path(database)


def missing_store_directory(url: str) -> pathlib.Path | None:
    """The SQLite file of ``url`` when the directory it would be in does not exist, else None.

    Opening would create that directory; a command that expects a store there (any but ``init``)
    asks first, so a typo in ``store.url`` is named instead of starting an empty store elsewhere.
    """
    parsed = normalise_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    path = _sqlite_file(parsed)
    return path if path is not None and not path.parent.is_dir() else None


def _unwritable(path: pathlib.Path) -> str:
    """Why the node cannot write its SQLite store ``path`` ('' if it seems it could)."""
    if not os.access(path, os.W_OK):
        return "the file is read-only"
    journal = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
    if not os.access(path.parent, os.W_OK) and not all(os.access(j, os.W_OK) for j in journal):
        return f"its directory {path.parent} is read-only (SQLite keeps the store's journal, {path.name}-wal, there)"
    return ""


def _open_sqlite(url: URL, *, echo: bool) -> Engine:
    path = _sqlite_file(url)
    in_memory = path is None
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the directory of {path}: {exc}") from None
    engine = create_engine(url, echo=echo, **({} if in_memory else {"max_overflow": POOL_OVERFLOW}))
    if path is not None:  # after create_engine: a URL it refuses leaves no file behind
        try:
            # Made here, not by SQLite under the umask (often 0644): the store holds every record
            # unmasked, the query log and the authorisations. Its -wal and -shm take its mode.
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
        except OSError as exc:
            raise StoreError(f"cannot create the store file {path}: {exc}") from None

    if path is not None:
        @event.listens_for(engine, "handle_error")
        def _on_error(context: Any) -> None:
            # SQLite's words ("attempt to write a readonly database", "unable to open database
            # file") name neither the file nor why: the operator needs both.
            name = getattr(context.original_exception, "sqlite_errorname", "")
            if name.startswith("SQLITE_READONLY") or (name == "SQLITE_CANTOPEN" and path.exists()):
                why = _unwritable(path)
                if why:
                    raise StoreError(f"the store {path} cannot be written: {why}; make it writable for the "
                                     "user the node runs as", field="store.url") from context.original_exception

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            # Only takes effect while the file is still empty (before WAL is switched on): rows
            # here are ~3 KB, one per 4 KB page, so small pages waste a third of the file and
            # make bulk appends markedly slower (scripts/bench_store.py).
            cursor.execute(f"PRAGMA page_size={PAGE_SIZE}")
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            # The indexes are keyed by digests, so batches touch pages all over them: a page
            # cache and memory-mapped reads save re-reading them. Both count in the node's
            # resident memory; past these sizes they bought no speed (scripts/bench import: 16 MB
            # and 32 MB run as fast as 32 MB and 256 MB, at 50-100 MB less peak RSS).
            cursor.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            cursor.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
        finally:
            cursor.close()

    return engine


def alembic_config(url: str | None = None) -> Config:
    """An Alembic configuration pointing at the packaged migrations (no ini file needed)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(engine: Engine, revision: str = "head") -> None:
    """Run Alembic ``upgrade`` to ``revision`` on ``engine``; a no-op when already there."""
    if revision == "head" and _current_revision(engine) == HEAD_REVISION:
        return
    from alembic import command
    from alembic.util import CommandError

    cfg = alembic_config()
    try:
        with connect(engine) as conn, conn.begin():
            if conn.dialect.name == "sqlite":
                # pysqlite runs DDL outside any transaction unless one was begun explicitly: a
                # crash half-way would leave tables without their version, and every later start
                # failing on "table already exists". Inside BEGIN, the schema change is all or
                # nothing (PostgreSQL's DDL is transactional anyway).
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                # Two commands started at once on a new database would both create the tables, and
                # the later fail on the earlier's (duplicate key in pg_type). One at a time: held to
                # the commit, after which Alembic finds the schema the other made.
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    except SQLAlchemyError as exc:
        raise migration_failure(exc) from exc
    except CommandError:  # a revision this release has no migration for: a newer release wrote it
        error = StoreError(f"the store is at schema {_current_revision(engine)}, which this release does not "
                           f"know (it is at {HEAD_REVISION}): a newer release of the node wrote it; run that "
                           "release, or a newer one", code=SCHEMA_UNKNOWN)
        error.retryable, error.exit_code = False, 2  # no retry helps: another release is needed
        raise error from None


def _current_revision(engine: Engine) -> str | None:
    """The store's schema revision, or None if it has none yet (or it cannot be read here)."""
    with connect(engine) as conn:  # a store that cannot be reached is said so here, in one line
        try:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except SQLAlchemyError:
            return None  # no table yet: Alembic creates it (and reports what is really wrong)
