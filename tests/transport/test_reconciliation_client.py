"""node/transport/reconciliation_client.py: the amqp peer leaves no connection behind when it cannot start."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pika.exceptions as px
import pytest

from node.errors import NodeError
from node.transport import amqp
from node.transport.reconciliation_client import AmqpReconcilePeer


class _Connection:
    """Stands for a broker connection whose channel the broker refuses (logic only: which calls are made)."""

    def __init__(self) -> None:
        self.closed = False

    def channel(self) -> Any:
        raise px.ChannelClosedByBroker(403, "ACCESS_REFUSED - access to queue 'amq.rabbitmq.reply-to' refused")

    def close(self) -> None:
        self.closed = True


def test_a_channel_the_broker_refuses_closes_the_connection_just_opened(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[_Connection] = []

    def connect(*_args: Any, **_kwargs: Any) -> _Connection:
        opened.append(_Connection())
        return opened[-1]

    monkeypatch.setattr(amqp, "connect", connect)
    node = SimpleNamespace(config=SimpleNamespace(id="district:330102", parent=SimpleNamespace(
        target="amqps://127.0.0.1:5671", server_name="")), identity=None)
    with pytest.raises(NodeError):
        AmqpReconcilePeer(node)  # type: ignore[arg-type]
    assert len(opened) == 1 and opened[0].closed
