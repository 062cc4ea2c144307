"""Shared by the federation tests: starting a real local federation and checking its end state.

A federation here is real processes (``credit-node start``), real mutual TLS, SQLite stores and,
for amqp, a real TLS RabbitMQ (``scripts/rabbitmq-tls``). If the broker cannot start, amqp tests
skip on a laptop and fail when ``CI`` is set.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from node.demo.layout import FederationLayout
from node.demo.local import LocalFederation
from node.errors import PeerUnavailableError

# Retries fast enough for tests; max_attempts low, so that spending attempts during an outage
# would dead-letter records quickly (the outage tests prove it does not happen).
FAST: dict[str, Any] = {"min_backoff_s": 0.2, "max_backoff_s": 1.0, "max_attempts": 3, "lease_s": 4.0,
                        "batch": 500}


def unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the real broker is required)", pytrace=False)
    pytest.skip(reason)


def start_federation(base: pathlib.Path, layout: FederationLayout, transport: str,
                     forwarding: dict[str, Any] | None = None) -> Iterator[LocalFederation]:
    fed = LocalFederation(base, layout, transport=transport, forwarding=forwarding or FAST)  # type: ignore[arg-type]
    try:
        fed.provision()
    except PeerUnavailableError as exc:
        if fed.broker is not None:
            fed.broker.stop()
        unavailable(str(exc))
    try:
        fed.start()
        yield fed
    finally:
        codes = fed.stop()
        for node_id, code in codes.items():
            assert code in (0, None), f"{node_id} exited with {code}:\n{fed.nodes[node_id].tail()}"


def assert_settled(fed: LocalFederation, expected_at_root: set[tuple[str, int]]) -> None:
    """Every record at the root exactly once, every chain verified, no dead letters, nothing pending."""
    fed.wait_drained()
    root = fed.layout.root.id
    held = fed.keys(root)
    assert held == expected_at_root, (f"{len(expected_at_root - held)} missing, "
                                      f"{len(held - expected_at_root)} unexpected at {root}")
    assert fed.count(root) == len(expected_at_root)  # one stored revision per (record, revision)
    for node_id in fed.nodes:
        report = fed.cli_json(node_id, "verify")
        assert report["ok"], f"{node_id}: {report['failures'][:3]}"
        assert fed.dead_letters(node_id) == 0, fed.cli(node_id, "outbox", "dead-letters").stdout
