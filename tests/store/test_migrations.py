"""Alembic migrations and engine settings, on real SQLite and PostgreSQL."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import time

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from node.errors import ConfigError, StoreError
from node.store import RecordStore, migrate, open_engine
from node.store.engine import HEAD_REVISION, MIGRATIONS_DIR, alembic_config, normalise_url
from node.store.tables import metadata

REPO = pathlib.Path(__file__).resolve().parents[2]


def _schema(engine: Engine) -> dict[str, list[str]]:
    insp = inspect(engine)
    return {t: sorted(c["name"] for c in insp.get_columns(t)) for t in sorted(insp.get_table_names())}


def _head() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _version(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one())


def test_migrate_on_empty_database_creates_the_schema_of_tables_module(db_url: str) -> None:
    engine = open_engine(db_url)
    try:
        migrate(engine)
        assert set(_schema(engine)) == set(metadata.tables) | {"alembic_version"}
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
        assert diff == []
        assert _version(engine) == _head()
    finally:
        engine.dispose()


def test_migrate_twice_is_a_no_op(db_url: str, make_row: object) -> None:
    engine = open_engine(db_url)
    try:
        migrate(engine)
        RecordStore(engine).append([make_row("r1")])  # type: ignore[operator]
        before = _schema(engine)
        migrate(engine)
        assert _schema(engine) == before
        assert _version(engine) == _head()
        assert RecordStore(engine).get("r1") is not None
    finally:
        engine.dispose()


_MIGRATE_AT = """
import sys, time
from node.store import migrate, open_engine
engine = open_engine(sys.argv[1])
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
migrate(engine)
"""


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_commands_migrating_a_new_server_store_at_once_all_open_it(db_url: str) -> None:
    # A server database is migrated by the first command that opens it (init makes only SQLite
    # stores): commands started together on a new one (two imports, a start and an import) each
    # find no schema and migrate it; the later ones must wait for the first, not fail on its tables.
    at = time.time() + 3  # every process imported and connected: they migrate together
    procs = [subprocess.Popen([sys.executable, "-c", _MIGRATE_AT, db_url, str(at)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [proc.communicate(timeout=120) for proc in procs]
    assert [(proc.returncode, err.strip().splitlines()[-1:]) for proc, (_, err) in zip(procs, results, strict=True)] \
        == [(0, [])] * len(procs)
    engine = open_engine(db_url)
    try:
        assert _version(engine) == _head()
    finally:
        engine.dispose()


def test_head_revision_constant_is_the_newest_migration() -> None:
    assert _head() == HEAD_REVISION


def test_store_at_head_opens_without_loading_alembic(tmp_path: pathlib.Path) -> None:
    url = f"sqlite:///{tmp_path / 'node.db'}"
    engine = open_engine(url)
    migrate(engine)
    engine.dispose()
    probe = ("import sys; from node.store import Store; Store.open(sys.argv[1]).close(); "
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))")
    done = subprocess.run([sys.executable, "-c", probe, url], cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_store_behind_head_is_upgraded_on_open(tmp_path: pathlib.Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'node.db'}")
    try:
        migrate(engine, "0004")
        assert _version(engine) == "0004"
        migrate(engine)
        assert _version(engine) == _head()
        assert "ix_record_revisions_subject_code" not in {
            ix["name"] for ix in inspect(engine).get_indexes("record_revisions")}
    finally:
        engine.dispose()


def test_a_conflict_store_from_0010_keeps_its_conflicts_and_takes_the_revoked_state(db_url: str) -> None:
    engine = open_engine(db_url)
    row = ("INSERT INTO conflicts (item, fact_key, fact_hash, record_a, source_unit_a, revision_a, record_b, "
           "source_unit_b, revision_b, differences, detected_at_ms, state, note) VALUES ('i', 'k', :h, 'a', 'u', 1, "
           "'b', 'v', 1, '{}', 1, :state, '')")
    try:
        migrate(engine, "0010")
        with engine.begin() as conn:
            conn.execute(text(row), {"h": b"h", "state": "open"})
        migrate(engine)
        with engine.begin() as conn:
            conn.execute(text(row), {"h": b"h", "state": "revoked"})
            assert conn.execute(text("SELECT state FROM conflicts ORDER BY id")).scalars().all() == ["open", "revoked"]
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(row), {"h": b"h", "state": "unknown"})
    finally:
        engine.dispose()



def test_the_revoked_state_is_taken_back_by_a_downgrade_to_0010_and_given_again(db_url: str) -> None:
    from alembic import command

    from node.store.engine import alembic_config

    engine = open_engine(db_url)
    row = ("INSERT INTO conflicts (item, fact_key, fact_hash, record_a, source_unit_a, revision_a, record_b, "
           "source_unit_b, revision_b, differences, detected_at_ms, state, note) VALUES ('i', 'k', :h, 'a', 'u', 1, "
           "'b', 'v', 1, '{}', 1, :state, '')")
    try:
        migrate(engine)
        with engine.begin() as conn:
            conn.execute(text(row), {"h": b"h", "state": "revoked"})
        with engine.begin() as conn:  # a release rolled back: the operator's alembic downgrade
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0010")
        with engine.begin() as conn:
            assert conn.execute(text("SELECT state FROM conflicts")).scalars().all() == ["agreed"]
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(row), {"h": b"h", "state": "revoked"})
        migrate(engine)
        with engine.begin() as conn:
            conn.execute(text(row), {"h": b"h", "state": "revoked"})
    finally:
        engine.dispose()

_KILLED_MID_MIGRATION = """
import os, signal, sys
from sqlalchemy import event
from node.store import migrate, open_engine
engine = open_engine(sys.argv[1])
created = []

@event.listens_for(engine, "after_cursor_execute")
def _after(conn, cursor, statement, *args):
    if statement.lstrip().upper().startswith("CREATE TABLE"):
        created.append(statement)
        if len(created) == 3:
            os.kill(os.getpid(), signal.SIGKILL)

migrate(engine)
"""


def test_a_store_a_newer_release_wrote_is_refused_naming_both_schemas(db_url: str) -> None:
    engine = open_engine(db_url)
    try:
        migrate(engine)
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
        with pytest.raises(StoreError) as info:
            migrate(engine)
    finally:
        engine.dispose()
    assert info.value.code == "E_STORE_SCHEMA" and info.value.exit_code == 2 and not info.value.retryable
    assert f"the store is at schema 0099, which this release does not know (it is at {HEAD_REVISION})" \
        in info.value.message


def test_a_store_killed_during_its_first_migration_is_migrated_on_the_next_start(tmp_path: pathlib.Path) -> None:
    url = f"sqlite:///{tmp_path / 'node.db'}"
    done = subprocess.run([sys.executable, "-c", _KILLED_MID_MIGRATION, url], cwd=REPO, capture_output=True,
                          check=False)
    assert done.returncode == -9, done.stderr  # killed after the third table, as intended
    engine = open_engine(url)
    try:
        assert inspect(engine).get_table_names() == []  # nothing of the half-done schema was kept
        migrate(engine)
        assert _version(engine) == _head()
    finally:
        engine.dispose()


def test_alembic_command_line_upgrades_with_x_url(db_url: str) -> None:
    ini = MIGRATIONS_DIR / "alembic.ini"
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ini), "-x", f"url={db_url}", "upgrade", "head"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    engine = open_engine(db_url)
    try:
        assert _version(engine) == _head()
        migrate(engine)  # the node's own call agrees that nothing is left to do
        assert _version(engine) == _head()
    finally:
        engine.dispose()


def test_sqlite_engine_settings(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "deep" / "er" / "node.db"
    engine = open_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
            assert conn.execute(text("PRAGMA synchronous")).scalar_one() == 2  # FULL: an acknowledged commit survives a power cut
            assert conn.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
            assert conn.execute(text("PRAGMA busy_timeout")).scalar_one() >= 1000
        assert path.parent.is_dir()
    finally:
        engine.dispose()


def test_postgres_urls_use_psycopg_3() -> None:
    assert normalise_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"


@pytest.mark.parametrize("url", ["mysql://u@h/db", "not a url"])
def test_unsupported_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        open_engine(url)
