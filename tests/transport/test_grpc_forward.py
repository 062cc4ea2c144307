"""``node/transport/grpc_forward.py``: what a failed call means to the forwarder."""

from __future__ import annotations

import pathlib
import socket
import threading

import pytest

from node.errors import PeerUnavailableError, TransportError
from node.records import pb
from node.transport.base import ACCEPTED
from node.transport.grpc_forward import CONNECT_TIMEOUT_S, GrpcForward

from .conftest import Running
from .nodes import PARENT_ID, Pki, child_records


def test_a_call_the_parent_refuses_as_a_whole_is_a_retryable_delivery_failure(running: Running) -> None:
    # A gov certificate may not submit at all: PERMISSION_DENIED for the call. The forwarder must
    # retry that with backoff (a certificate not yet accepted), not dead-letter the whole batch.
    forward = GrpcForward(peer=PARENT_ID, target=running.address, identity=running.pki.identity("gov"))
    try:
        forward.connect()
        record = pb.SignedRecord(body=pb.RecordBody(record_id="r", revision=1).SerializeToString())
        with pytest.raises(TransportError) as failed:
            forward.send([record.SerializeToString()], [])
        assert failed.value.retryable and failed.value.code == "E_NOT_AUTHORIZED"
    finally:
        forward.close()


def test_interrupt_ends_a_wait_for_a_parent_that_never_answers(running: Running) -> None:
    # A parent that takes the TCP connection and then says nothing (hung, or SIGSTOPped): connect()
    # would wait CONNECT_TIMEOUT_S; a stopping node interrupts it at once.
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen()
        port = hung.getsockname()[1]
        forward = GrpcForward(peer=PARENT_ID, target=f"127.0.0.1:{port}", identity=running.pki.identity("child"))
        failed: list[BaseException] = []

        def connect() -> None:
            try:
                forward.connect()
            except BaseException as exc:
                failed.append(exc)

        thread = threading.Thread(target=connect)
        thread.start()
        conn, _addr = hung.accept()  # the connect is under way
        with conn:
            forward.interrupt()
            thread.join(timeout=CONNECT_TIMEOUT_S / 2)
            assert not thread.is_alive(), "interrupt did not end the connect"
    assert len(failed) == 1 and isinstance(failed[0], PeerUnavailableError)
    assert "interrupted" in failed[0].message


def test_a_batch_over_what_the_parent_takes_in_one_request_goes_as_several(
        running: Running, pki: Pki, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # forwarding.batch may be set above the parent's per-request cap (10,000; 2 here for both sides).
    from node.transport import exchange_service, grpc_forward

    monkeypatch.setattr(grpc_forward, "MAX_SUBMIT_RECORDS", 2)
    monkeypatch.setattr(exchange_service, "MAX_SUBMIT_RECORDS", 2)
    records, cert = child_records(pki, tmp_path, 5)
    forward = GrpcForward(peer=PARENT_ID, target=running.address, identity=pki.identity("child"))
    try:
        forward.connect()
        deliveries = forward.send([r.SerializeToString() for r in records], [cert])
    finally:
        forward.close()
    assert [d.state for d in deliveries] == [ACCEPTED] * 5


def test_a_server_at_the_parents_address_with_another_nodes_certificate_is_not_taken_for_the_parent(
        running: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    # The server there is PARENT_ID, its certificate valid, from the CA and for that host: a child
    # configured with another parent must not send it records (identity = certificate, not address).
    from node.transport import grpc_forward

    monkeypatch.setattr(grpc_forward, "CONNECT_TIMEOUT_S", 2.0)  # the handshake fails at once; retries until then
    forward = GrpcForward(peer="city:330100", target=running.address, identity=running.pki.identity("child"))
    try:
        with pytest.raises(PeerUnavailableError) as failed:
            forward.connect()
        assert "certificate must be node city:330100's" in failed.value.message
    finally:
        forward.close()
    assert PARENT_ID != "city:330100"
