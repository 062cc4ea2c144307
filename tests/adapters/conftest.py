"""Fixtures for adapter tests: a real department node, real source databases (PostgreSQL, MariaDB).

Source databases are created per test on the loopback servers and dropped afterwards. When a
server is unreachable its cases are skipped on a laptop and FAIL when ``CI`` is set.
"""

from __future__ import annotations

import os
import pathlib
import secrets
from collections.abc import Iterator

import pytest
from conftest_values import UNIT
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from node import identity
from node.app import Node, build_node
from node.config import load_config
from node.provisioning import init_node

PG_ADMIN_URL = os.environ.get("CREDIT_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
MARIADB_ADMIN_URL = os.environ.get("CREDIT_TEST_MARIADB_ADMIN_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


def unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the real service is required)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def dev_ca(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    ca = tmp_path_factory.mktemp("ca")
    identity.init_ca(ca)
    return ca


@pytest.fixture
def make_node(tmp_path: pathlib.Path, dev_ca: pathlib.Path) -> Iterator[object]:
    """``make_node(name, unit=UNIT, extra_yaml='')`` → (config path, opened Node)."""
    opened: list[Node] = []

    def make(name: str = "node", *, unit: str = UNIT, node_id: str = "dept:330102:scjgj",
             extra_yaml: str = "", store_url: str = "") -> tuple[pathlib.Path, Node]:
        cfg_path = init_node(tmp_path / name, node_id=node_id, level="department", unit=unit,
                             ca_dir=dev_ca, store_url=store_url)
        if extra_yaml:
            with cfg_path.open("a", encoding="utf-8") as fh:
                fh.write(extra_yaml)
        node = build_node(load_config(cfg_path))
        opened.append(node)
        return cfg_path, node

    yield make
    for node in opened:
        node.close()


@pytest.fixture
def dept(make_node: object) -> Node:
    _cfg, node = make_node()  # type: ignore[operator]
    return node


def _server_database(admin_url: str, kind: str) -> Iterator[str]:
    name = f"credit_src_{secrets.token_hex(4)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    quote = '"' if kind == "postgresql" else "`"
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {quote}{name}{quote}"))
    except Exception as exc:  # unreachable or refusing: no such server here
        admin.dispose()
        unavailable(f"{kind} at {make_url(admin_url).render_as_string()} unavailable: {exc}")
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            force = " WITH (FORCE)" if kind == "postgresql" else ""
            conn.execute(text(f"DROP DATABASE IF EXISTS {quote}{name}{quote}{force}"))
        admin.dispose()


@pytest.fixture
def pg_source_url() -> Iterator[str]:
    """A fresh PostgreSQL database playing a department's database."""
    yield from _server_database(PG_ADMIN_URL, "postgresql")


@pytest.fixture
def mariadb_source_url() -> Iterator[str]:
    """A fresh MariaDB database playing a department's database."""
    yield from _server_database(MARIADB_ADMIN_URL, "mariadb")


@pytest.fixture(params=["postgresql", "mariadb"])
def source_url(request: pytest.FixtureRequest) -> str:
    fixture = "pg_source_url" if request.param == "postgresql" else "mariadb_source_url"
    url: str = request.getfixturevalue(fixture)
    return url
