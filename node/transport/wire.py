"""Wire encodings shared by both transports: record batches, hop appends, federation messages.

Records are never re-serialised on the way (DESIGN §2.1): a forwarder appends its hop signature to
the stored ``SignedRecord`` bytes and wraps the batch in a ``SubmitRequest`` by concatenating
length-delimited fields. Protobuf defines concatenation of encoded messages as merging, and
appending an encoded element to a repeated field as adding it at the end, so the result is exactly
what ``SerializeToString`` of the extended message would give, without touching the body bytes.

``fpb``/``frpc`` are the generated federation messages and service (protos/federation.proto);
this module is the only importer of that generated code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar, cast

from node._generated import federation_pb2 as fpb
from node._generated import federation_pb2_grpc as frpc
from node.errors import TransportError
from node.records import pb, varint

__all__ = ["MESSAGE_TYPES", "append_hop", "decode", "fpb", "frpc", "malformed", "submit_request"]

M = TypeVar("M")  # a generated protobuf message class

# AMQP ``type`` property of each message kind (a receiver refuses anything else).
RECORDS = "credit.v1.SubmitRequest"
RECONCILE = "credit.v1.ReconcileRequest"
RECONCILE_REPLY = "credit.v1.ReconcileResponse"
DOWN = "credit.v1.DownMessage"
MESSAGE_TYPES = (RECORDS, RECONCILE, RECONCILE_REPLY, DOWN)

_RECORDS_TAG = b"\x0a"  # SubmitRequest.records = 1, length-delimited
_CERTIFICATES_TAG = b"\x1a"  # SubmitRequest.certificates = 3
_CHAIN_TAG = b"\x12"  # SignedRecord.chain = 2


def _field(tag: bytes, data: bytes) -> bytes:
    return tag + varint(len(data)) + data


def append_hop(signed: bytes, hop: pb.Signature) -> bytes:
    """``signed`` (a serialised SignedRecord) with ``hop`` appended to its chain."""
    return signed + _field(_CHAIN_TAG, hop.SerializeToString())


def submit_request(records: Sequence[bytes], certificates: Sequence[bytes] = ()) -> bytes:
    """A serialised ``SubmitRequest`` carrying ``records`` (serialised SignedRecords) and certificates."""
    parts = [_field(_RECORDS_TAG, r) for r in records]
    parts.extend(_field(_CERTIFICATES_TAG, c) for c in certificates)
    return b"".join(parts)


def malformed(what: str) -> TransportError:
    """A payload that will never decode: not worth a retry (it goes to the dead letters)."""
    err = TransportError(f"message is not a valid {what}", code="E_MESSAGE_MALFORMED")
    err.retryable = False
    return err


def decode(message: type[M], data: bytes) -> M:
    """Parse ``data`` as ``message``, or raise :func:`malformed`."""
    msg = message()
    try:
        cast(Any, msg).ParseFromString(data)
    except Exception:  # protobuf's DecodeError is a plain Exception subclass
        raise malformed(message.__name__) from None
    return msg
