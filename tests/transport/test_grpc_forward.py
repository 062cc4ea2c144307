"""``node/transport/grpc_forward.py``: what a failed call means to the forwarder."""

from __future__ import annotations

import pytest

from node.errors import TransportError
from node.records import pb
from node.transport.grpc_forward import GrpcForward

from .conftest import Running
from .nodes import PARENT_ID


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
