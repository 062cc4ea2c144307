"""``Exchange.Submit`` storing several requests of a stream as one group: the same outcome as one by one."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterable, Sequence

import pytest

from node.records import pb
from node.transport import exchange_service, grpc_client

from .conftest import DEADLINE_S, Running
from .nodes import unsigned_records

ACCEPTED = pb.Ack.ACCEPTED


def _all_read_before_the_first_commit(running: Running, monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    """Hold the stream's first batch until the node has read all ``count`` requests, so the ones
    after it are waiting together and are stored as one group."""
    read = threading.Event()
    real_read, real_commit = exchange_service._read_ahead, running.node.ingest.commit

    async def counting(requests: AsyncIterable[pb.SubmitRequest],
                       ahead: asyncio.Queue[pb.SubmitRequest | Exception | None]) -> None:
        seen = 0

        async def each() -> AsyncIterable[pb.SubmitRequest]:
            nonlocal seen
            async for request in requests:
                seen += 1
                yield request
                if seen == count:
                    read.set()

        await real_read(each(), ahead)

    def held(*args: object, **kwargs: object) -> object:
        assert read.wait(DEADLINE_S), "the node never read the whole stream"
        return real_commit(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(exchange_service, "_read_ahead", counting)
    monkeypatch.setattr(running.node.ingest, "commit", held)


def _changed(record: pb.UnsignedRecord) -> pb.UnsignedRecord:
    again = pb.UnsignedRecord()
    again.CopyFrom(record)
    for f in again.fields:
        if f.name == "CF_WFXW":  # the facts, not the key
            f.value += "（更正）"
    return again


def _acks(running: Running, requests: Sequence[pb.SubmitRequest]) -> list[pb.Ack]:
    with running.channel("source") as channel:
        return [a for r in grpc_client.submit(channel, requests, timeout=60) for a in r.acks]


def test_a_fact_changed_in_a_later_request_of_one_group_is_its_next_revision(
        running: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    first, other = unsigned_records(2, start_no=700)
    _all_read_before_the_first_commit(running, monkeypatch, 3)
    acks = _acks(running, [pb.SubmitRequest(unsigned=unsigned_records(1, start_no=900)),
                           pb.SubmitRequest(unsigned=[first, other]), pb.SubmitRequest(unsigned=[_changed(first)])])
    # Sent one by one, the third request revises the record; grouped, it was refused as a fact given
    # twice with other values (E_DUPLICATE_KEY), and the refusal filed against its source unit.
    assert [(a.outcome, a.revision) for a in acks] == [(ACCEPTED, 1), (ACCEPTED, 1), (ACCEPTED, 1), (ACCEPTED, 2)]
    assert acks[3].record_id == acks[1].record_id
    assert running.node.store.rejections.list_rejections(open_only=False) == []


def test_a_fact_repeated_unchanged_in_a_later_request_is_a_duplicate_of_its_stored_revision(
        running: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    (first,) = unsigned_records(1, start_no=710)
    _all_read_before_the_first_commit(running, monkeypatch, 3)
    acks = _acks(running, [pb.SubmitRequest(unsigned=unsigned_records(1, start_no=910)),
                           pb.SubmitRequest(unsigned=[first]), pb.SubmitRequest(unsigned=[first])])
    assert [(a.outcome, a.revision) for a in acks] == [(ACCEPTED, 1), (ACCEPTED, 1), (pb.Ack.DUPLICATE, 1)]
