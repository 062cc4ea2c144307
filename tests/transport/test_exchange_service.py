"""``Exchange.Submit`` against a real node: children's signed records, sources' unsigned ones, refusals."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

import pytest
from sqlalchemy import func, select

from node.errors import ConfigError, NodeError, NotAuthorizedError, PeerUnavailableError, StoreError
from node.records import decode_body, pb
from node.store.tables import record_revisions
from node.transport import grpc_client

from .conftest import Running
from .nodes import (
    CHILD_ID,
    OTHER_UNIT,
    PARENT_ID,
    STRANGER_ID,
    Pki,
    child_records,
    parent_config,
    unsigned_records,
    write_parent_config,
)

ACCEPTED, DUPLICATE, REJECTED = pb.Ack.ACCEPTED, pb.Ack.DUPLICATE, pb.Ack.REJECTED


def _submit(running: Running, who: str, requests: Sequence[pb.SubmitRequest]) -> list[pb.SubmitResponse]:
    with running.channel(who) as channel:
        return list(grpc_client.submit(channel, requests, timeout=60))


def _acks(responses: Sequence[pb.SubmitResponse]) -> list[pb.Ack]:
    return [ack for r in responses for ack in r.acks]


def _stored_revisions(running: Running) -> int:
    with running.node.store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(record_revisions)).scalar_one())


@pytest.fixture(scope="module")
def signed(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[pb.SignedRecord], bytes]:
    return child_records(pki, tmp_path_factory.mktemp("child"), 12)


def test_signed_records_from_a_registered_child_are_accepted_then_duplicates(
        running: Running, signed: tuple[list[pb.SignedRecord], bytes]) -> None:
    records, cert = signed
    first = _submit(running, "child", [pb.SubmitRequest(records=records[:5], certificates=[cert]),
                                       pb.SubmitRequest(records=records[5:])])
    assert [len(r.acks) for r in first] == [5, 7]  # one response per request
    acks = _acks(first)
    assert [a.seq for a in acks] == list(range(12))  # seq counts over the whole stream
    assert {a.outcome for a in acks} == {ACCEPTED}
    assert [a.record_id for a in acks] == [decode_body(r.body).record_id for r in records]
    assert _stored_revisions(running) == 12

    again = _acks(_submit(running, "child", [pb.SubmitRequest(records=records, certificates=[cert])]))
    assert {a.outcome for a in again} == {DUPLICATE}
    assert _stored_revisions(running) == 12  # no second effect
    stored = running.node.store.records.get(acks[0].record_id)
    assert stored is not None and stored.received_from == CHILD_ID


def test_a_tampered_record_is_rejected_with_its_code(running: Running,
                                                    signed: tuple[list[pb.SignedRecord], bytes]) -> None:
    records, cert = signed
    tampered = pb.SignedRecord()
    tampered.CopyFrom(records[0])
    body = bytearray(tampered.body)
    # Flip one byte inside a field value (the penalty's number): still a valid RecordBody.
    at = bytes(body).index("号".encode()) - 1
    body[at] ^= 0x01
    tampered.body = bytes(body)
    acks = _acks(_submit(running, "child", [pb.SubmitRequest(records=[tampered, records[1]],
                                                             certificates=[cert])]))
    assert acks[0].outcome == REJECTED
    assert acks[0].rejections[0].code in ("E_SIGNATURE_INVALID", "E_MERKLE_PATH")
    assert acks[1].outcome == ACCEPTED  # one bad record does not spoil its batch
    assert _stored_revisions(running) == 1


def test_a_node_that_is_not_a_registered_child_is_refused(running: Running, pki: Pki,
                                                          tmp_path: pathlib.Path) -> None:
    records, cert = child_records(pki, tmp_path, 3, name="stranger")
    acks = _acks(_submit(running, "stranger", [pb.SubmitRequest(records=records, certificates=[cert])]))
    assert {a.outcome for a in acks} == {REJECTED}
    assert {a.rejections[0].code for a in acks} == {"E_SENDER_NOT_CHILD"}
    assert _stored_revisions(running) == 0
    with running.node.store.engine.connect() as conn:  # nor does it get its signer known here
        from node.store.tables import certificates
        assert conn.execute(select(func.count()).select_from(certificates)).scalar_one() == 0


def test_a_child_cannot_pass_off_another_childs_records_as_its_own(
        serve: Callable[..., Running], signed: tuple[list[pb.SignedRecord], bytes]) -> None:
    records, cert = signed  # the last signature is the child's, but the stranger sends them
    running = serve(children=[{"id": CHILD_ID}, {"id": STRANGER_ID}])
    acks = _acks(_submit(running, "stranger", [pb.SubmitRequest(records=records[:2], certificates=[cert])]))
    assert {a.rejections[0].code for a in acks} == {"E_SENDER_MISMATCH"}
    assert _stored_revisions(running) == 0


def test_sources_may_not_send_signed_records_nor_nodes_unsigned_ones(
        running: Running, signed: tuple[list[pb.SignedRecord], bytes]) -> None:
    records, cert = signed
    acks = _acks(_submit(running, "source", [pb.SubmitRequest(records=records[:2], certificates=[cert])]))
    assert [(a.outcome, a.rejections[0].code) for a in acks] == [(REJECTED, "E_NOT_AUTHORIZED")] * 2
    acks = _acks(_submit(running, "child", [pb.SubmitRequest(unsigned=unsigned_records(2))]))
    assert [(a.outcome, a.rejections[0].code) for a in acks] == [(REJECTED, "E_NOT_AUTHORIZED")] * 2
    assert _stored_revisions(running) == 0
    assert running.node.store.certificates.all() == []  # a source cannot add signers either


def test_other_roles_may_not_submit_at_all(running: Running) -> None:
    with pytest.raises(NotAuthorizedError, match="may not submit"):
        _submit(running, "gov", [pb.SubmitRequest(unsigned=unsigned_records(1))])


def test_unsigned_records_from_a_source_are_signed_by_the_node_and_stored(running: Running) -> None:
    unsigned = unsigned_records(4, start_no=500)
    acks = _acks(_submit(running, "source", [pb.SubmitRequest(unsigned=unsigned)]))
    assert [a.outcome for a in acks] == [ACCEPTED] * 4
    stored = running.node.store.records.get(acks[0].record_id)
    assert stored is not None
    chain = pb.SignedRecord.FromString(stored.signed).chain
    assert [(s.kind, s.signer) for s in chain] == [(pb.ORIGIN, PARENT_ID)]
    assert running.node.verifier.verify([pb.SignedRecord.FromString(stored.signed)]) == [None]

    again = _acks(_submit(running, "source", [pb.SubmitRequest(unsigned=unsigned)]))
    assert [a.outcome for a in again] == [DUPLICATE] * 4
    assert _stored_revisions(running) == 4


def test_unsigned_records_are_checked_like_an_import(running: Running) -> None:
    bad = unsigned_records(2, start_no=700)
    for f in bad[1].fields:
        if f.name == "CF_JDRQ":
            f.value = "2024-02-30"
    mixed = pb.SubmitRequest(unsigned=[*bad, pb.UnsignedRecord(item="no_such_item")])
    acks = _acks(_submit(running, "source", [mixed]))
    assert acks[0].outcome == ACCEPTED
    assert acks[1].outcome == REJECTED and acks[1].rejections[0].field == "CF_JDRQ"
    assert acks[1].rejections[0].row == 2  # 1-based position in the stream
    assert (acks[2].outcome, acks[2].rejections[0].code, acks[2].rejections[0].field, acks[2].rejections[0].row) == \
        (REJECTED, "E_UNKNOWN_ITEM", "item", 3)


def test_an_unsigned_record_naming_a_field_twice_is_refused_naming_it(running: Running) -> None:
    # Two values for one field: whichever was kept, the other was dropped without a word.
    twice, same, fine = unsigned_records(3, start_no=720)
    number = next(f.value for f in twice.fields if f.name == "CF_WSH")
    twice.fields.add(name="CF_WSH", value=number + "之一")
    same.fields.add(name="CF_WSH", value=next(f.value for f in same.fields if f.name == "CF_WSH"))
    acks = _acks(_submit(running, "source", [pb.SubmitRequest(unsigned=[twice, same, fine])]))
    assert [a.outcome for a in acks] == [REJECTED, REJECTED, ACCEPTED]
    for ack, row in zip(acks[:2], (1, 2), strict=True):
        [rejection] = ack.rejections
        assert (rejection.code, rejection.field, rejection.row) == ("E_FIELD_DUPLICATE", "CF_WSH", row)
        assert "CF_WSH is given 2 times" in rejection.message
    assert _stored_revisions(running) == 1


def test_a_request_of_more_records_than_the_limit_ends_the_call_before_anything_is_stored(
        running: Running) -> None:
    # 2 bytes a record, ~250 bytes a refusal: the answer to a 1 MB request would not fit in a message.
    from node.errors import UsageError
    from node.transport.wire import MAX_SUBMIT_RECORDS

    first = pb.SubmitRequest(unsigned=unsigned_records(1, start_no=740))
    flood = pb.SubmitRequest(unsigned=[pb.UnsignedRecord()] * (MAX_SUBMIT_RECORDS + 1))
    answered: list[pb.SubmitResponse] = []
    with running.channel("source") as channel, pytest.raises(UsageError) as err:
        answered.extend(grpc_client.submit(channel, [first, flood], timeout=60))
    assert (err.value.code, err.value.field) == ("E_BATCH_TOO_LARGE", "unsigned")
    assert f"at most {MAX_SUBMIT_RECORDS}" in err.value.message
    assert _stored_revisions(running) == 1  # the request before it was stored (and answered)
    acks = _acks(_submit(running, "source", [pb.SubmitRequest(unsigned=unsigned_records(2, start_no=741))]))
    assert [a.outcome for a in acks] == [ACCEPTED] * 2


def test_warnings_reach_a_pushing_source_in_its_acks_whatever_the_outcome(running: Running) -> None:
    # A file import lists them in its result; a source that pushes has nothing but its acks.
    typo, bad = unsigned_records(2, start_no=730)
    for record in (typo, bad):
        record.fields.add(name="CF_WSH_TYPO", value="x")  # dropped as unknown: the source must hear it
    next(f for f in bad.fields if f.name == "CF_JDRQ").value = "2024-02-30"
    acks = _acks(_submit(running, "source", [pb.SubmitRequest(unsigned=[typo, bad])]))
    assert [a.outcome for a in acks] == [ACCEPTED, REJECTED]
    for ack in acks:
        [warning] = ack.warnings
        assert (warning.code, warning.row) == ("W_FIELD_UNKNOWN", ack.seq + 1)
        assert "CF_WSH_TYPO" in warning.message
    assert not acks[0].rejections and {r.code for r in acks[1].rejections} == {"E_FIELD_DATE"}
    [again] = _acks(_submit(running, "source", [pb.SubmitRequest(unsigned=[typo])]))
    assert again.outcome == DUPLICATE and [w.code for w in again.warnings] == ["W_FIELD_UNKNOWN"]


def _small_answers(serve: Callable[..., Running], monkeypatch: pytest.MonkeyPatch) -> Running:
    """A node sending at most 64 KB a message, standing for the 64 MB one, whose answers would take
    that much here."""
    from node.transport import exchange_service, grpc_server

    limit = 64 * 1024
    options = tuple((k, limit if k == "grpc.max_send_message_length" else v) for k, v in grpc_server._SERVER_OPTIONS)
    monkeypatch.setattr(grpc_server, "_SERVER_OPTIONS", options)
    monkeypatch.setattr(exchange_service, "MAX_MESSAGE_BYTES", limit, raising=False)
    return serve()


def test_an_answer_that_would_not_fit_in_a_message_keeps_every_ack_with_shorter_refusals(
        serve: Callable[..., Running], monkeypatch: pytest.MonkeyPatch) -> None:
    # Refusals quote the values they refuse (cut to about 500 characters): a batch of bad values
    # can be answered by more bytes than a message holds. The batch is stored by then; the answer
    # must still leave.
    running = _small_answers(serve, monkeypatch)
    records = unsigned_records(60, start_no=2000)
    for record in records:
        for f in record.fields:
            if f.name == "CF_XDR_LB":
                f.value = "法" * 4000  # not one of the enum's values, and quoted (cut to 500) in the refusal
    acks = _acks(_submit(running, "source", [pb.SubmitRequest(unsigned=records),
                                             pb.SubmitRequest(unsigned=unsigned_records(1, start_no=800))]))
    assert [a.seq for a in acks] == list(range(61))
    assert {a.outcome for a in acks[:60]} == {REJECTED} and acks[60].outcome == ACCEPTED
    for ack in acks[:60]:
        assert 1 <= len(ack.rejections) <= 5
        assert all(len(r.message) <= 201 for r in ack.rejections)
        assert "CF_XDR_LB" in {r.field for r in ack.rejections} and ack.rejections[0].row == ack.seq + 1


def test_an_answer_too_big_for_a_message_by_its_warnings_keeps_them_shortened(
        serve: Callable[..., Running], monkeypatch: pytest.MonkeyPatch) -> None:
    # A warning names every unknown field given: huge names make an answer of accepted records
    # bigger than a message.
    running = _small_answers(serve, monkeypatch)
    records = unsigned_records(40, start_no=820)
    for record in records:
        record.fields.add(name="未知" * 2000, value="x")
    acks = _acks(_submit(running, "source", [pb.SubmitRequest(unsigned=records)]))
    assert [a.outcome for a in acks] == [ACCEPTED] * 40
    for ack in acks:
        [warning] = ack.warnings
        assert warning.code == "W_FIELD_UNKNOWN" and len(warning.message) <= 201 and warning.row == ack.seq + 1


def test_a_source_may_only_report_for_its_units(running: Running) -> None:
    acks = _acks(_submit(running, "source", [pb.SubmitRequest(unsigned=unsigned_records(2, unit=OTHER_UNIT))]))
    assert {(a.outcome, a.rejections[0].code) for a in acks} == {(REJECTED, "E_NOT_AUTHORIZED")}
    assert "may not report for source unit" in acks[0].rejections[0].message
    acks = _acks(_submit(running, "unregistered_source", [pb.SubmitRequest(unsigned=unsigned_records(1))]))
    assert acks[0].rejections[0].code == "E_NOT_AUTHORIZED"
    # A row naming no unit at all lacks a required field: said so, not taken for a unit it may not use.
    bare = pb.UnsignedRecord(item="admin_penalty", fields=[pb.Field(name="CF_XDR_MC", value="杭州某某有限公司")])
    [ack] = _acks(_submit(running, "source", [pb.SubmitRequest(unsigned=[bare])]))
    assert ack.outcome == REJECTED and {r.code for r in ack.rejections} == {"E_FIELD_REQUIRED"}
    assert _stored_revisions(running) == 0


def test_a_refused_batch_becomes_rejected_acks_and_the_stream_goes_on(
        running: Running, signed: tuple[list[pb.SignedRecord], bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    records, cert = signed
    real = running.node.inbox.receive
    calls: list[int] = []

    def flaky(batch: Sequence[pb.SignedRecord], **kwargs: object) -> object:
        # Refuses any batch holding the first record: the requests may be stored as one group, and
        # the refusal must still reach only the request it concerns.
        calls.append(len(batch))
        if any(r.body == records[0].body for r in batch):
            raise NodeError("the inbox refused this batch", code="E_TEST_REFUSED")
        return real(batch, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(running.node.inbox, "receive", flaky)
    acks = _acks(_submit(running, "child", [pb.SubmitRequest(records=records[:2], certificates=[cert]),
                                            pb.SubmitRequest(records=records[2:4])]))
    assert [(a.seq, a.outcome) for a in acks] == [(0, REJECTED), (1, REJECTED), (2, ACCEPTED), (3, ACCEPTED)]
    assert acks[0].rejections[0].code == "E_TEST_REFUSED"


def test_a_store_failure_ends_the_call_as_unavailable_so_the_sender_retries(
        running: Running, signed: tuple[list[pb.SignedRecord], bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    records, cert = signed

    def down(*_args: object, **_kwargs: object) -> object:
        raise StoreError("database is locked")

    monkeypatch.setattr(running.node.inbox, "receive", down)
    with pytest.raises(PeerUnavailableError) as err:
        _submit(running, "child", [pb.SubmitRequest(records=records[:1], certificates=[cert])])
    assert err.value.code == "E_STORE" and err.value.retryable


def test_source_ids_in_the_config_must_be_source_ids(pki: Pki, tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError, match=r"sources\[0\]\.id"):
        parent_config(pki, tmp_path, sources=[{"id": "gov:330100:fgw"}])
    assert write_parent_config(pki, tmp_path).exists()


def test_open_submit_streams_hold_no_handler_thread_and_cancelling_them_leaves_the_node_serving(
        pki: Pki, tmp_path: pathlib.Path) -> None:
    # More idle streams than handler threads, then all cancelled at once: a plain handler read its
    # stream from a pool thread, and grpc.aio crashed the process when such calls were cancelled
    # (and Status waited for a free thread meanwhile). Streams are read on the loop now.
    import queue

    import grpc

    from node.records import rpc

    from .conftest import _serve

    served = _serve(pki, tmp_path, server={"listen": "127.0.0.1:0", "grace_s": 5.0, "max_workers": 2})
    running = next(served)
    try:
        feeds: list[queue.SimpleQueue[pb.SubmitRequest | None]] = [queue.SimpleQueue() for _ in range(8)]

        def requests(feed: queue.SimpleQueue[pb.SubmitRequest | None]) -> Iterator[pb.SubmitRequest]:
            while (request := feed.get()) is not None:
                yield request

        with running.channel("source") as channel, running.channel("child") as admin:
            calls = [rpc.ExchangeStub(channel).Submit(requests(feed), timeout=60) for feed in feeds]
            # One stream answers: every call is open on the server, not just queued on the client.
            feeds[0].put(pb.SubmitRequest(unsigned=unsigned_records(1, start_no=900)))
            assert [a.outcome for a in next(calls[0]).acks] == [ACCEPTED]
            status = rpc.AdminStub(admin).Status(pb.StatusRequest(), timeout=20)
            assert status.node_id == PARENT_ID
            for call in calls:
                call.cancel()
            for call in calls:
                with pytest.raises(grpc.RpcError) as err:
                    list(call)
                assert err.value.code() == grpc.StatusCode.CANCELLED
            for feed in feeds:
                feed.put(None)
            assert rpc.AdminStub(admin).Status(pb.StatusRequest(), timeout=20).node_id == PARENT_ID
            after = _acks(_submit(running, "source", [pb.SubmitRequest(unsigned=unsigned_records(2, start_no=950))]))
            assert [a.outcome for a in after] == [ACCEPTED] * 2
    finally:
        next(served, None)


@pytest.mark.parametrize("record_id", ["admin_penalty-\x00", "admin_penalty-0\n1"])
def test_a_record_id_no_record_can_have_is_refused_alone_on_any_store(
        serve: Callable[..., Running], db_url: str, signed: tuple[list[pb.SignedRecord], bytes], record_id: str) -> None:
    # A later revision of a record is looked up first (which child its first revision came
    # through): asked for an id with a NUL, PostgreSQL failed the whole stream as a store outage
    # (UNAVAILABLE), which the child's forwarder retries for ever, good records and all.
    running = serve(store={"url": db_url})
    records, cert = signed
    body = pb.RecordBody(record_id=record_id, revision=2, item="admin_penalty", origin_node=CHILD_ID)
    forged = pb.SignedRecord(body=body.SerializeToString(), chain=[pb.Signature(
        kind=pb.ORIGIN, signer=CHILD_ID, key_id=records[0].chain[0].key_id, batch_root=b"r" * 32,
        signature=b"s" * 64, leaf_count=1)])
    acks = _acks(_submit(running, "child", [pb.SubmitRequest(records=[records[0], forged], certificates=[cert])]))
    assert [(a.seq, a.outcome) for a in acks] == [(0, ACCEPTED), (1, REJECTED)]
    assert acks[1].rejections[0].code.startswith("E_")
    assert _stored_revisions(running) == 1


def test_a_submit_stream_is_read_no_further_while_its_waiting_requests_pass_the_byte_budget() -> None:
    """Requests may be 64 MB each: eight waiting would hold half a gigabyte for one sender, so the
    reader stops pulling from the stream (grpc's flow control then holds the sender back)."""
    from node.transport import exchange_service as ex

    big = pb.SubmitRequest(certificates=[b"x" * 1000])
    pulled: list[int] = []

    async def stream() -> AsyncIterator[pb.SubmitRequest]:
        for i in range(6):
            pulled.append(i)
            yield big

    async def scenario() -> list[int]:
        ahead = ex._Ahead(count=8, budget=2500)  # room for two and a bit of these requests
        reader = asyncio.create_task(ex._read_ahead(stream(), ahead))
        for _ in range(20):  # let the reader run as far as it is allowed to
            await asyncio.sleep(0)
        seen = [len(pulled)]
        await ahead.get()  # taking one makes room for one more
        for _ in range(20):
            await asyncio.sleep(0)
        seen.append(len(pulled))
        while await ahead.get() is not None:  # the rest still arrive, then the end
            pass
        await reader
        seen.append(len(pulled))
        return seen

    assert asyncio.run(scenario()) == [3, 4, 6]


def test_a_caller_revoked_while_its_submit_stream_is_open_is_cut_off_at_its_next_request(
        running: Running, pki: Pki, tmp_path: pathlib.Path) -> None:
    # A forwarder keeps one stream open for as long as it runs: a CRL loaded meanwhile must stop
    # what it sends next on that stream, not only its next call.
    import queue
    import shutil

    import grpc

    from node.identity import revoke, write_crl
    from node.records import rpc

    ca = shutil.copytree(pki.ca, tmp_path / "ca")  # the same CA; the session's revocations stay as they were
    revoke(ca, pki.dir("source"), "key_compromise")
    crl = write_crl(ca, tmp_path / "crl.pem").read_bytes()
    feed: queue.SimpleQueue[pb.SubmitRequest | None] = queue.SimpleQueue()

    def requests() -> Iterator[pb.SubmitRequest]:
        while (request := feed.get()) is not None:
            yield request

    with running.channel("source") as channel:
        call = rpc.ExchangeStub(channel).Submit(requests(), timeout=60)
        feed.put(pb.SubmitRequest(unsigned=unsigned_records(1, start_no=700)))
        assert [a.outcome for a in next(call).acks] == [ACCEPTED]
        running.node.trust.load_crl(crl)
        feed.put(pb.SubmitRequest(unsigned=unsigned_records(1, start_no=701)))
        with pytest.raises(grpc.RpcError) as err:
            next(call)
        feed.put(None)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in (err.value.details() or "")
    assert _stored_revisions(running) == 1
