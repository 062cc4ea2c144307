"""The transport interface the forwarder speaks (DESIGN §2.6: two transports, one interface).

A transport takes a batch of signed records (each already carrying this node's hop signature) and
says, per record, what became of it. An outbox delivery is marked done only when the receiving
side has **durably** taken the record:

- ``grpc``: the parent's ``Exchange.Submit`` acknowledged it after its commit: ``accepted`` or
  ``duplicate``; ``rejected`` with the parent's code when it refused the record.
- ``amqp``: the parent's broker confirmed the message (publisher confirm on a quorum queue, i.e.
  written to disk): ``queued``. The parent's inbox decides later; a record it refuses lands in its
  inbound dead letters and travels back down as a notice (docs/federation.md).

Either way a redelivery is harmless: the receiver's inbox recognises (record id, revision, body
digest) and acknowledges a duplicate without a second effect. So the transport may fail after the
receiver took a batch, and the forwarder simply sends it again.

Failures of the batch as a whole are raised as :class:`~node.errors.TransportError` (or
:class:`~node.errors.PeerUnavailableError`); ``retryable`` tells the forwarder whether to try again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol

__all__ = ["ACCEPTED", "DUPLICATE", "QUEUED", "REJECTED", "Delivery", "DeliveryState", "Transport"]

ACCEPTED: Final = "accepted"
DUPLICATE: Final = "duplicate"
QUEUED: Final = "queued"
REJECTED: Final = "rejected"

DeliveryState = Literal["accepted", "duplicate", "queued", "rejected"]


@dataclass(frozen=True)
class Delivery:
    """What became of one record of a batch."""

    state: DeliveryState
    code: str = ""  # the receiver's stable code when rejected
    message: str = ""

    @property
    def taken(self) -> bool:
        """The receiving side holds it durably: the outbox delivery is done."""
        return self.state != REJECTED


class Transport(Protocol):
    """Sends batches to one peer. Not thread-safe: one transport per forwarding thread."""

    @property
    def peer(self) -> str:
        """Node id of the receiving side."""
        ...

    def connect(self) -> None:
        """Reach the peer now (raises ``TransportError``); the forwarder claims nothing until this works."""
        ...

    def send(self, records: Sequence[bytes], certificates: Sequence[bytes]) -> list[Delivery]:
        """Deliver serialised ``SignedRecord``\\ s; one :class:`Delivery` per record, in order.

        ``certificates`` are the DER signing certificates of the chains' signers, for a receiver
        that does not know them yet. Raises ``TransportError`` if the batch may not have arrived.
        """
        ...

    def close(self) -> None:
        """Release the connection; ``send`` reconnects if called again."""
        ...
