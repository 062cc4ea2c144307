"""Fixtures for transport tests: one PKI per session, a running node per module or per test."""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from node.app import Node, build_node, build_runtime
from node.runtime import Runtime
from node.transport.grpc_client import open_channel, wait_ready
from node.transport.grpc_server import GrpcServer

from .nodes import Pki, make_pki, parent_config

DEADLINE_S = 10.0


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@dataclass
class Running:
    """A node serving on 127.0.0.1:<port 0>, and a way to open client channels to it."""

    node: Node
    runtime: Runtime
    pki: Pki

    @property
    def address(self) -> str:
        return self.runtime.extension(GrpcServer).address

    def channel(self, name: str) -> grpc.Channel:
        channel = open_channel(self.address, self.pki.identity(name))
        wait_ready(channel, DEADLINE_S)
        return channel


def _serve(pki: Pki, work: pathlib.Path, **overrides: Any) -> Iterator[Running]:
    node = build_node(parent_config(pki, work, **overrides))
    runtime = build_runtime(node)
    runtime.start()
    try:
        yield Running(node, runtime, pki)
    finally:
        runtime.stop()
        node.close()


@pytest.fixture
def running(pki: Pki, tmp_path: pathlib.Path) -> Iterator[Running]:
    """A fresh parent node (empty store) for one test."""
    yield from _serve(pki, tmp_path)


@pytest.fixture(scope="module")
def shared(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """One parent node for a module's tests that do not depend on the store's contents."""
    yield from _serve(pki, tmp_path_factory.mktemp("shared"))


@pytest.fixture
def serve(pki: Pki, tmp_path: pathlib.Path) -> Iterator[Callable[..., Running]]:
    """Start a parent node with config overrides; stopped at the end of the test."""
    stack: list[Iterator[Running]] = []

    def start(**overrides: Any) -> Running:
        work = tmp_path / f"node{len(stack)}"
        work.mkdir()
        gen = _serve(pki, work, **overrides)
        stack.append(gen)
        return next(gen)

    yield start
    for gen in reversed(stack):
        next(gen, None)
