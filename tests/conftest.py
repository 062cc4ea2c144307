"""Shared fixtures: real databases for the store (DESIGN §5: real components in tests).

``db_url`` is parametrised over SQLite (a file in the test's tmp dir) and PostgreSQL (a fresh
schema per test inside a database created for this session, dropped at the end). ``engine`` is
an opened, migrated engine on that URL. When PostgreSQL is unreachable its cases are skipped on a
laptop and fail when ``CI`` is set. ``CREDIT_TEST_PG_ADMIN_URL`` overrides the server to use.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from node.store import migrate, open_engine


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """A command run in-process (CliRunner) sets the root logger up as its process would (JSON lines
    on the stderr of that run, a level): put back what was there, so the next test's command
    starts as a process does and not writing to a stream that belonged to another test."""
    from node.logs import JsonFormatter

    root = logging.getLogger()
    level = root.level
    yield
    for handler in list(root.handlers):
        if isinstance(handler.formatter, JsonFormatter):
            root.removeHandler(handler)
    root.setLevel(level)


PG_ADMIN_URL = os.environ.get("CREDIT_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: a real PostgreSQL is required)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """A database ``credit_test_<random>`` on the test server for this session."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"credit_test_{secrets.token_hex(4)}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # any failure to reach or use the server means "no PostgreSQL here"
        admin.dispose()
        _unavailable(f"PostgreSQL at {make_url(PG_ADMIN_URL).render_as_string()} unavailable: {exc}")
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An empty database: a new SQLite file, or a new PostgreSQL schema (first in search_path)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'store.db'}"
        return
    base: str = request.getfixturevalue("pg_database_url")
    schema = f"t_{secrets.token_hex(6)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated engine on a fresh database of each kind."""
    eng = open_engine(db_url)
    migrate(eng)
    try:
        yield eng
    finally:
        eng.dispose()
