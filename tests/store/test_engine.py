"""The store's engine: as many connections at once as the node's threads and its event loop hold."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
from sqlalchemy import Engine, text

from node.config import ServerConfig


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
