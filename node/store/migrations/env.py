"""Alembic environment of the local store.

Called two ways: by ``node.store.migrate(engine)``, which hands over an open connection in
``config.attributes["connection"]``, and by the ``alembic`` command line, where the URL comes
from ``-x url=…``, ``sqlalchemy.url`` or ``CREDIT_NODE_STORE_URL``. Either way the engine is
made by ``open_engine`` so SQLite gets the same pragmas the node uses.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context

from node.store.engine import open_engine
from node.store.tables import metadata

config = context.config


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    url = url or os.environ.get("CREDIT_NODE_STORE_URL", "")
    if not url:
        raise SystemExit("no database URL: pass -x url=... or set CREDIT_NODE_STORE_URL")
    return url


def _configure(connection: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds tables in later migrations.
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    engine = open_engine(_url())
    try:
        with engine.begin() as conn:
            _configure(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
