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

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from node._generated import federation_pb2 as fpb
from node.errors import TransportError
from node.records import pb, varint

if TYPE_CHECKING:
    from node._generated import federation_pb2_grpc as frpc
else:
    def __getattr__(name: str) -> Any:
        # The service stubs load grpc (~20 MB): a CLI command that only reads a catalogue
        # release (node.releases, at every start) must not pay for it.
        if name == "frpc":
            from node._generated import federation_pb2_grpc

            return federation_pb2_grpc
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["MAX_MESSAGE_BYTES", "MAX_SUBMIT_RECORDS", "MESSAGE_TYPES", "append_hop", "decode", "fpb", "frpc", "malformed", "message_batches",
           "submit_request"]

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


# Records (signed and unsigned) per SubmitRequest a node takes over grpc (Exchange.Submit), as
# `submit --batch`: an empty UnsignedRecord is 2 bytes and its refusal ~250, so without a cap a
# 1 MB request was answered by more than a message may hold, after its batch had committed.
MAX_SUBMIT_RECORDS = 10_000

# The most one AMQP message carries: a sender splits a batch to stay under it, a receiver refuses
# a message over it (non-retryable, dead-lettered) instead of holding it all in memory at once.
MAX_MESSAGE_BYTES = 16 << 20


def message_batches(records: Sequence[bytes], room: int = MAX_MESSAGE_BYTES) -> Iterator[Sequence[bytes]]:
    """``records`` in consecutive runs whose encoding fits ``room`` bytes (a record over it alone)."""
    start, used = 0, 0
    for i, record in enumerate(records):
        size = len(record) + 10  # the field's tag and length
        if i > start and used + size > room:
            yield records[start:i]
            start, used = i, 0
        used += size
    if start < len(records):
        yield records[start:]


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
