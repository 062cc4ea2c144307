"""Fixtures for the lifecycle tests: identities (once per session), the catalogue, a frozen clock."""

from __future__ import annotations

import datetime as dt
import pathlib
import secrets
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, create_engine, text

from node.catalog import Catalog, load_catalog
from node.identity import LoadedIdentity
from node.provisioning import bundled_catalog
from node.store import migrate, open_engine
from tests.lifecycle.kit import Clock, make_pki, ms_at


@pytest.fixture(scope="session")
def ids(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LoadedIdentity]:
    return make_pki(tmp_path_factory.mktemp("lifecycle-pki"))


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog(bundled_catalog())


@pytest.fixture
def clock() -> Clock:
    return Clock(ms_at(dt.date(2026, 3, 2)))  # a Monday


@pytest.fixture
def more_engines(engine: Engine, tmp_path: pathlib.Path) -> Iterator[Callable[[], Engine]]:
    """Makes more migrated databases of the same kind as ``engine`` (one per extra node)."""
    made: list[tuple[Engine, str]] = []

    def make() -> Engine:
        n = len(made)
        if engine.dialect.name == "sqlite":
            eng = open_engine(f"sqlite:///{tmp_path / f'node{n}.db'}")
            schema = ""
        else:
            schema = f"t_{secrets.token_hex(6)}"
            base = engine.url.set(query={})
            admin = create_engine(base, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            admin.dispose()
            eng = open_engine(base.update_query_dict({"options": f"-csearch_path={schema}"})
                              .render_as_string(hide_password=False))
        migrate(eng)
        made.append((eng, schema))
        return eng

    yield make
    for eng, schema in made:
        eng.dispose()
        if schema:
            admin = create_engine(engine.url.set(query={}), isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
