"""Replaying dead letters (``credit-node outbox replay``), once an operator fixed their cause.

- an ``outbox`` letter is a delivery that used up its retries: it goes back to pending with fresh
  attempts, and the running forwarder sends it (``Outbox.replay``);
- an ``inbound`` letter is what a child sent that could not be accepted: its payload is a signed
  record (one refused record) or a whole message (undecodable or failing repeatedly). It is fed to
  the inbox again as its sender; it counts as replayed when the inbox accepts it now (or already
  holds it), otherwise it stays a dead letter and the new reason is reported;
- an inbound letter from the parent is a downward message (``DownMessage``: revisions, a notice, a
  catalogue release) that could not be applied: it is applied again through ``Downward``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from node.errors import NodeError
from node.inbox import REJECTED
from node.records import pb
from node.store import DeadLetter
from node.transport.wire import decode

if TYPE_CHECKING:
    from node.app import Node

__all__ = ["ReplayReport", "replay_letters"]


@dataclass
class ReplayReport:
    requeued: list[int] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"requeued": self.requeued, "accepted": self.accepted,
                "failed": [{"id": i, "reason": r} for i, r in self.failed]}


def replay_letters(node: Node, ids: Sequence[int] | None) -> ReplayReport:
    """Replay the letters ``ids`` (None: every letter not replayed yet)."""
    report = ReplayReport()
    letters = {d.id: d for d in node.store.outbox.dead_letters(include_replayed=ids is not None)}
    wanted = sorted(letters) if ids is None else list(ids)
    for letter_id in wanted:
        letter = letters.get(letter_id)
        if letter is None:
            report.failed.append((letter_id, "no such dead letter"))
        elif letter.replayed_at_ms is not None:
            report.failed.append((letter_id, "already replayed"))
        elif letter.kind == "outbox":
            if node.store.outbox.replay([letter_id]):
                report.requeued.append(letter_id)
            else:
                report.failed.append((letter_id, "the delivery is no longer dead"))
        else:
            reason = _reinject(node, letter)
            if reason is None:
                node.store.inbound.mark_replayed([letter_id])
                report.accepted.append(letter_id)
            else:
                report.failed.append((letter_id, reason))
    return report


def _reinject(node: Node, letter: DeadLetter) -> str | None:
    """Feed an inbound letter to the inbox; None if it is held now, else why not."""
    parent = node.config.parent.id if node.config.parent else ""
    if parent and letter.destination_or_sender == parent:
        return _reapply_downward(node, parent, letter)
    try:
        if letter.record_id:
            records = [decode(pb.SignedRecord, letter.payload)]
        else:
            request = decode(pb.SubmitRequest, letter.payload)
            if request.certificates:
                node.inbox.learn_certificates(list(request.certificates))
            records = list(request.records)
        if not records:
            return "the letter holds no records"
        receipts = node.inbox.receive(records, sender=letter.destination_or_sender)
    except NodeError as exc:
        return str(exc)
    refused = [r for r in receipts if r.outcome == REJECTED]
    if refused:
        first = refused[0].problem
        return f"{len(refused)} of {len(receipts)} refused again: {first.code if first else 'E_REJECTED'}: " \
               f"{first.message if first else ''}"
    return None


def _reapply_downward(node: Node, parent: str, letter: DeadLetter) -> str | None:
    """A downward message from the parent, applied again (its revisions, notice or release)."""
    from node.downward import Downward
    from node.transport.wire import fpb

    try:
        Downward(node).apply(parent, decode(fpb.DownMessage, letter.payload))
    except NodeError as exc:
        return str(exc)
    return None
