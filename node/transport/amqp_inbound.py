"""What a parent does with the messages its children publish (queue ``up.<parent id>``).

- ``credit.v1.SubmitRequest``: the batch goes through the shared :class:`~node.inbox.Inbox` (verify
  chains, authorise the child, re-validate, store idempotently) exactly as a gRPC submission does.
  The sender is the broker-checked ``user_id``. Records the inbox refuses are kept in the inbound
  dead letters with their code (the record as received is the payload), and the refusal is
  reported back down to the source as a notice (``on_refused``).
- ``credit.v1.ReconcileRequest``: answered from this node's store (``node.reconcile``), on the
  requester's direct reply-to queue.

Anything else is not for us: a non-retryable ``E_MESSAGE_TYPE`` (the consumer dead-letters it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from node.errors import TransportError
from node.inbox import REJECTED, Inbox, Receipt
from node.records import pb
from node.store import Store
from node.transport.amqp_consumer import AmqpMessage
from node.transport.amqp_topology import DIRECT_REPLY_TO
from node.transport.wire import MAX_MESSAGE_BYTES, RECONCILE, RECORDS, decode, fpb

__all__ = ["UpwardHandler"]

Answer = Callable[[str, "fpb.ReconcileRequest"], "fpb.ReconcileResponse"]
Refused = Callable[[str, Sequence[tuple[Receipt, pb.SignedRecord]]], None]


def unexpected(kind: str) -> TransportError:
    err = TransportError(f"unexpected message type {kind!r}", code="E_MESSAGE_TYPE")
    err.retryable = False
    return err


class UpwardHandler:
    def __init__(self, *, inbox: Inbox, store: Store, answer: Answer | None = None,
                 on_refused: Refused | None = None) -> None:
        self._inbox = inbox
        self._store = store
        self._answer = answer
        self._on_refused = on_refused

    def handle(self, message: AmqpMessage) -> bytes | None:
        if len(message.body) > MAX_MESSAGE_BYTES:
            err = TransportError(f"a message of {len(message.body)} bytes; at most {MAX_MESSAGE_BYTES} (senders "
                                 "split their batches)", code="E_MESSAGE_TOO_LARGE")
            err.retryable = False
            raise err
        if message.kind == RECORDS:
            self._records(message.sender, decode(pb.SubmitRequest, message.body))
            return None
        if message.kind == RECONCILE and self._answer is not None:
            if not (message.reply_to or "").startswith(DIRECT_REPLY_TO + "."):
                # Answered only on the asker's own direct reply-to: a reply_to naming a queue would
                # have this node write its answer into another region's or a child's queue.
                err = TransportError(f"a reconciliation request must ask for a direct reply-to ({DIRECT_REPLY_TO}), "
                                     f"not {message.reply_to!r}", code="E_REPLY_TO")
                err.retryable = False
                raise err
            request = decode(fpb.ReconcileRequest, message.body)
            reply: bytes = self._answer(message.sender, request).SerializeToString()
            return reply
        raise unexpected(message.kind)

    def _records(self, sender: str, request: pb.SubmitRequest) -> None:
        if request.certificates:
            # A certificate the trust store refuses only matters for the records it signed:
            # the inbox rejects those with E_SIGNER_* and they are dead-lettered below.
            self._inbox.learn_certificates(list(request.certificates))
        records = request.records
        receipts = self._inbox.receive(records, sender=sender)
        refused = [(r, records[r.seq]) for r in receipts if r.outcome == REJECTED]
        for receipt, record in refused:
            problem = receipt.problem
            self._store.inbound.add(sender, problem.code if problem else "E_REJECTED",
                                    problem.message if problem else "rejected", record.SerializeToString(),
                                    record_id=receipt.record_id, revision=receipt.revision)
        if refused and self._on_refused is not None:
            self._on_refused(sender, refused)

    def dead_letter(self, message: AmqpMessage, code: str, text: str) -> None:
        self._store.inbound.add(message.sender, code, text, message.body)
