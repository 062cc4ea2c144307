"""A small client for department systems that push records to their node (接口推送).

The system authenticates with its own certificate (role ``source``, listed under ``sources:`` in
the node's config) over mutual TLS and streams batches of ``UnsignedRecord``\\ s to
``Exchange.Submit``; the node validates and signs them exactly as a file import would and answers
every record with an ack — accepted, duplicate, or rejected with code, field and reason, and any
warnings (``W_…``) whatever the outcome. That ack is the source's feedback: :class:`RowAck`
carries it back with the row number the system used.

    from adapters.api_client import Pusher
    with Pusher("node.example:7443", "/etc/credit/source-identity") as pusher:
        for ack in pusher.push("admin_penalty", rows):      # rows: (row number, {code: value})
            if ack.outcome == "rejected": ...
            for w in ack.warnings: ...                       # e.g. W_FIELD_UNKNOWN: a field dropped

Memory stays bounded for any number of rows: at most ``window`` batches are in flight, the next
is sent when an answer comes back.
"""

from __future__ import annotations

import pathlib
import queue
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from node.errors import Problem
from node.records import pb
from node.values import cell_text

if TYPE_CHECKING:
    import grpc

__all__ = ["Pusher", "RowAck"]

_OUTCOMES = {pb.Ack.ACCEPTED: "accepted", pb.Ack.DUPLICATE: "duplicate"}


@dataclass(frozen=True)
class RowAck:
    """The node's answer for one pushed row."""

    row: int  # the row number the caller gave (file row, line of a JSON-lines file …)
    outcome: str  # accepted | duplicate | rejected
    record_id: str = ""
    revision: int = 0
    problems: tuple[Problem, ...] = ()  # why it was rejected
    warnings: tuple[Problem, ...] = ()  # W_… notes, whatever the outcome (a field dropped as unknown …)


class Pusher:
    """One mutual-TLS connection to a node; ``push`` may be called again on it."""

    def __init__(self, target: str, identity_dir: str | pathlib.Path, *, server_name: str | None = None,
                 node_id: str | None = None, batch: int = 500, window: int = 8, timeout_s: float | None = None) -> None:
        from node.identity import load_identity
        from node.transport.grpc_client import open_channel

        self._channel: grpc.Channel = open_channel(target, load_identity(pathlib.Path(identity_dir)),
                                                   server_name=server_name, node_id=node_id)
        from node.transport.wire import MAX_SUBMIT_RECORDS

        # A node takes at most MAX_SUBMIT_RECORDS per request; a larger batch would end the call.
        self._batch = min(max(1, batch), MAX_SUBMIT_RECORDS)
        self._window = max(1, window)
        self._timeout = timeout_s

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Pusher:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def push(self, item: str, rows: Iterable[tuple[int, Mapping[str, Any]]]) -> Iterator[RowAck]:
        """Send ``rows`` of ``item``; yields one ack per row, in order, as the node answers.

        Raises a :class:`node.errors.NodeError` when the node cannot be reached or ends the call
        (``PeerUnavailableError`` when it is gone, ``NotAuthorizedError`` for a certificate that may
        not submit); the acks yielded until then are what the node stored. An exception from
        ``rows`` itself is raised as it is, after the acks of the batches already sent (the rows
        read since the last full batch are not sent)."""
        from node.transport.grpc_client import submit

        slots = threading.Semaphore(self._window)
        pending: queue.SimpleQueue[list[int]] = queue.SimpleQueue()  # row numbers of each batch sent
        stop = threading.Event()
        failed: list[BaseException] = []  # the caller's rows failing: grpc would say only "Exception iterating requests"

        def requests() -> Iterator[pb.SubmitRequest]:
            try:
                yield from batches()
            except Exception as exc:  # ends the stream; the batches sent are answered, then it is raised
                failed.append(exc)

        def batches() -> Iterator[pb.SubmitRequest]:
            batch: list[pb.UnsignedRecord] = []
            numbers: list[int] = []
            for number, values in rows:
                batch.append(pb.UnsignedRecord(item=item, fields=[
                    pb.Field(name=k, value=v if isinstance(v, str) else cell_text(v))
                    for k, v in values.items() if v is not None and v != ""]))
                numbers.append(number)
                if len(batch) >= self._batch:
                    if not _acquire(slots, stop):
                        return
                    pending.put(numbers)
                    yield pb.SubmitRequest(unsigned=batch)
                    batch, numbers = [], []
            if batch and _acquire(slots, stop):
                pending.put(numbers)
                yield pb.SubmitRequest(unsigned=batch)

        try:
            for response in submit(self._channel, requests(), timeout=self._timeout):
                numbers = pending.get()
                slots.release()
                for number, ack in zip(numbers, response.acks, strict=True):
                    yield RowAck(number, _OUTCOMES.get(ack.outcome, "rejected"), ack.record_id, ack.revision,
                                 tuple(Problem(r.code, r.field, r.message, row=number) for r in ack.rejections),
                                 tuple(Problem(w.code, w.field, w.message, row=number, warning=True)
                                       for w in ack.warnings))
        finally:
            stop.set()
        if failed:
            raise failed[0]


def _acquire(slots: threading.Semaphore, stop: threading.Event) -> bool:
    """Wait for a free slot in the window; give up when the call is over (error or cancel)."""
    while not stop.is_set():
        if slots.acquire(timeout=0.5):
            return True
    return False
