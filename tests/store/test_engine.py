"""The store's engine: as many connections at once as the node's threads and its event loop hold."""

from __future__ import annotations

import os
import pathlib
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
from sqlalchemy import Engine, text

from node.config import ServerConfig
from node.errors import StoreError


def test_every_server_thread_and_the_event_loop_get_a_connection_at_once(engine: Engine) -> None:
    # The server's pool threads, a few runtime extensions and the event loop, all inside a
    # transaction: the next connection must not wait for one of them to finish.
    holders = ServerConfig().max_workers + 6
    with ExitStack() as stack:
        conns = [stack.enter_context(engine.connect()) for _ in range(holders)]
        for conn in conns:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
        engine.pool._timeout = 0.5  # type: ignore[attr-defined]  # fail fast instead of waiting 30 s
        with engine.connect() as one_more:
            assert one_more.execute(text("SELECT 2")).scalar_one() == 2


@pytest.mark.parametrize("url", ["postgresql://u:SECRET@h:notaport/x", "postgresql+nodriver://u:SECRET@h/x",
                                 "sqlite://u:SECRET@/x"])
def test_a_malformed_store_url_is_a_config_error_that_keeps_its_password(url: str) -> None:
    from node.errors import ConfigError
    from node.store import open_engine

    with pytest.raises(ConfigError) as caught:
        open_engine(url)
    assert caught.value.field == "store.url" and "SECRET" not in caught.value.message


def _opened(url: str) -> None:
    from node.store import migrate, open_engine

    engine = open_engine(url)
    try:
        migrate(engine)
    finally:
        engine.dispose()


def test_a_database_that_does_not_exist_is_a_config_error_naming_it(pg_database_url: str) -> None:
    from sqlalchemy.engine import make_url

    from node.errors import ConfigError

    url = make_url(pg_database_url).set(database="credit_test_no_such_db").render_as_string(hide_password=False)
    with pytest.raises(ConfigError) as caught:
        _opened(url)
    message = caught.value.message
    assert caught.value.field == "store.url" and caught.value.exit_code == 2
    assert '"credit_test_no_such_db" does not exist' in message, message
    assert "migration" not in message and "sqlalche.me" not in message and "\n" not in message


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_server_that_refuses_the_connection_is_unavailable_in_one_line() -> None:
    from node.errors import StoreError

    port = _closed_port()
    with pytest.raises(StoreError) as caught:
        _opened(f"postgresql+psycopg://postgres:SECRET@127.0.0.1:{port}/x")
    message = caught.value.message
    assert caught.value.exit_code == 4 and caught.value.field == "store.url"
    assert f"127.0.0.1:{port}" in message and "refused" in message.lower(), message
    assert "migration" not in message and "sqlalche.me" not in message and "\n" not in message
    assert "SECRET" not in message


@pytest.mark.parametrize(("default_s", "query"), [(1, ""), (60, "?connect_timeout=1")])
def test_a_server_that_never_answers_fails_within_the_connect_timeout(
        monkeypatch: pytest.MonkeyPatch, default_s: int, query: str) -> None:
    import socket
    import threading
    import time

    from node.errors import StoreError
    from node.store import engine as engine_module

    monkeypatch.setattr(engine_module, "CONNECT_TIMEOUT_S", default_s)
    # Takes the TCP connection (the kernel does, from the backlog) and never says a word; closed
    # after 15 s so that a store waiting without limit fails this test instead of hanging it.
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(4)
        port = mute.getsockname()[1]
        closer = threading.Timer(15, mute.close)
        closer.start()
        started = time.monotonic()
        try:
            with pytest.raises(StoreError) as caught:
                _opened(f"postgresql+psycopg://postgres@127.0.0.1:{port}/x{query}")
        finally:
            closer.cancel()
    assert time.monotonic() - started < 10
    assert f"127.0.0.1:{port}" in caught.value.message and caught.value.exit_code == 4


def test_a_driver_that_is_not_installed_is_a_config_error() -> None:
    from node.errors import ConfigError
    from node.store import open_engine

    with pytest.raises(ConfigError) as caught:
        open_engine("postgresql+pg8000://u:SECRET@h/x")
    assert caught.value.field == "store.url" and "pg8000" in caught.value.message
    assert "SECRET" not in caught.value.message


def test_a_user_that_may_not_create_the_tables_is_a_config_error(pg_database_url: str) -> None:
    import secrets

    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from node.errors import ConfigError

    base = make_url(pg_database_url)
    role, schema, secret = f"credit_ro_{secrets.token_hex(4)}", f"t_ro_{secrets.token_hex(4)}", secrets.token_hex(8)
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:  # a login with USAGE on its schema, not CREATE
        conn.execute(text(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{secret}'"))
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        conn.execute(text(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"'))
    try:
        url = base.set(username=role, password=secret).update_query_dict({"options": f"-csearch_path={schema}"})
        with pytest.raises(ConfigError) as caught:
            _opened(url.render_as_string(hide_password=False))
        assert caught.value.field == "store.url" and caught.value.exit_code == 2
        assert "permission denied" in caught.value.message and "\n" not in caught.value.message
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            conn.execute(text(f'DROP ROLE "{role}"'))
        admin.dispose()


def test_a_new_sqlite_store_and_its_journal_are_the_owners_alone(tmp_path) -> None:
    import os

    from node.store import migrate, open_engine

    old = os.umask(0o022)
    try:
        engine = open_engine(f"sqlite:///{tmp_path / 'store' / 'node.db'}")
        try:
            migrate(engine)
            with engine.connect() as conn:  # WAL: the -wal and -shm files exist while connected
                conn.execute(text("SELECT 1"))
                files = sorted(p.name for p in (tmp_path / "store").iterdir())
                assert "node.db-wal" in files
                for name in files:
                    assert (tmp_path / "store" / name).stat().st_mode & 0o077 == 0, name
        finally:
            engine.dispose()
    finally:
        os.umask(old)


@contextmanager
def _read_only(path: pathlib.Path) -> Iterator[None]:
    """``path`` (a file or directory) read-only to this process: by its mode, or for root, whom modes
    do not stop, as immutable (chattr +i); skipped where neither is possible."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(mode & ~0o222)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        reason = "cannot make a path read-only for root here (chattr +i)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set: the test must run)")
        pytest.skip(reason)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def _store_at(tmp_path: pathlib.Path) -> tuple[pathlib.Path, str]:
    from node.store import migrate, open_engine

    db = tmp_path / "node.db"
    engine = open_engine(f"sqlite:///{db}")
    migrate(engine)
    engine.dispose()  # the last connection closed: SQLite removes the journal files
    return db, f"sqlite:///{db}"


def test_a_read_only_store_file_is_named_as_what_cannot_be_written(tmp_path: pathlib.Path) -> None:
    from node.store import Store

    db, url = _store_at(tmp_path)
    with _read_only(db), Store.open(url) as store:
        assert store.meta.get("store.owner") is None  # reading it goes on
        with pytest.raises(StoreError) as caught:
            store.meta.put("store.owner", "city:330100")
    assert caught.value.message == f"the store {db} cannot be written: the file is read-only; make it writable " \
                                   "for the user the node runs as"
    assert caught.value.exit_code == 4 and caught.value.field == "store.url"


def test_a_store_in_a_read_only_directory_is_named_as_what_cannot_be_written(tmp_path: pathlib.Path) -> None:
    from node.store import Store

    db, url = _store_at(tmp_path)
    with _read_only(tmp_path), pytest.raises(StoreError) as caught:
        Store.open(url).close()
    assert caught.value.message.startswith(f"the store {db} cannot be written: its directory {tmp_path} is "
                                           "read-only (SQLite keeps the store's journal, node.db-wal, there)")
    assert caught.value.exit_code == 4
