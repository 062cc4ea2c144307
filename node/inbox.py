"""Receiving signed records from a child node: verify → authorise → re-check → store (idempotent).

Shared by every transport (gRPC ``Exchange.Submit``, the AMQP consumer). The effect is
exactly-once although delivery is at-least-once: a record already held (same id and revision,
same body) is acknowledged as a duplicate without a second effect. The receiver stores first and
acknowledges after commit, so a crash in between only causes a redelivery (DESIGN §2.5).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from node.catalog import Catalog, Item
from node.config import ChildConfig
from node.conflicts import Conflicts, Fact, compared_fields, substance
from node.errors import NodeError, Problem
from node.records import (
    MAX_BODY_BYTES,
    MAX_REVISION,
    STATUSES,
    body_digest,
    content_digest,
    decode_body,
    make_record_id,
    pb,
)
from node.routing import Router
from node.signing import Verifier
from node.store import Store
from node.store.records import AuditEvent, OutboxEntry, RecordRow
from node.truststore import TrustStore
from node.validation import Checked, Validator

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
REJECTED = "rejected"


@dataclass(frozen=True)
class Receipt:
    """The answer for one received record (becomes a ``pb.Ack``)."""

    seq: int
    record_id: str
    revision: int
    outcome: str
    problem: Problem | None = None

    def to_ack(self) -> pb.Ack:
        outcome = {ACCEPTED: pb.Ack.ACCEPTED, DUPLICATE: pb.Ack.DUPLICATE}.get(self.outcome, pb.Ack.REJECTED)
        ack = pb.Ack(record_id=self.record_id, revision=self.revision, outcome=outcome, seq=self.seq)
        if self.problem is not None:
            ack.rejections.append(pb.Rejection(code=self.problem.code, field=self.problem.field,
                                               message=self.problem.message, row=self.problem.row))
        return ack


class Inbox:
    def __init__(self, *, node_id: str, catalog: Catalog, validator: Validator, verifier: Verifier,
                 trust: TrustStore, store: Store, router: Router, children: Sequence[ChildConfig],
                 conflicts: Conflicts | None = None,
                 clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self._node_id = node_id
        self._catalog = catalog
        self._validator = validator
        self._verifier = verifier
        self._trust = trust
        self._store = store
        self._router = router
        self._children: Mapping[str, ChildConfig] = {c.id: c for c in children}
        self._conflicts = conflicts  # two source units disagreeing on one fact meet here, above them
        self._clock = clock

    def is_child(self, node_id: str) -> bool:
        """Whether ``node_id`` is a registered child (the only nodes that send records up)."""
        return node_id in self._children

    def learn_certificates(self, ders: Sequence[bytes]) -> list[Problem]:
        """Signer certificates shipped with a batch; kept so stored chains verify later too."""
        problems: list[Problem] = []
        for der in ders:
            try:
                key_id = self._trust.add_certificate(der)
            except NodeError as exc:
                problems.append(Problem(exc.code, "", exc.message))
                continue
            self._store.certificates.add(key_id, der)
        return problems

    def receive(self, records: Sequence[pb.SignedRecord], *, sender: str, start_seq: int = 0) -> list[Receipt]:
        """Check and store a batch from ``sender`` (the authenticated peer's node id)."""
        now = self._clock()
        receipts: dict[int, Receipt] = {}
        child = self._children.get(sender)
        bodies: dict[int, pb.RecordBody] = {}
        for i, rec in enumerate(records):
            if len(rec.body) > MAX_BODY_BYTES:
                receipts[i] = Receipt(start_seq + i, "", 0, REJECTED, Problem(
                    "E_BODY_TOO_LARGE", "body", f"the body has {len(rec.body)} bytes; at most {MAX_BODY_BYTES}"))
                continue
            try:
                bodies[i] = decode_body(rec.body)
            except NodeError as exc:
                receipts[i] = Receipt(start_seq + i, "", 0, REJECTED, Problem(exc.code, "", exc.message))
        if child is None:
            p = Problem("E_SENDER_NOT_CHILD", "", f"{sender} is not a registered child of {self._node_id}")
            return [Receipt(start_seq + i, bodies[i].record_id if i in bodies else "",
                            bodies[i].revision if i in bodies else 0, REJECTED, p) for i in range(len(records))]
        candidates = [i for i in range(len(records)) if i in bodies]
        # Each body hashed once: the digest is both the signed leaf's and the stored column.
        hashed = {i: body_digest(records[i].body) for i in candidates}
        errors = self._verifier.verify([records[i] for i in candidates],
                                       decoded=[(bodies[i].origin_node, hashed[i]) for i in candidates])
        # A revision of a record held here comes through the child its first revision came through.
        # An id with a control character is no record's (refused below, E_RECORD_ID): not looked up,
        # PostgreSQL refuses a NUL and would fail the whole batch as an outage.
        revised = {bodies[i].record_id for i in candidates
                   if bodies[i].revision > 1 and bodies[i].record_id.isprintable()}
        trails = self._store.records.trails(revised) if revised else {}
        came_from = {rid: trail[0].received_from for rid, trail in trails.items()}
        rows: list[RecordRow] = []
        outbox: list[OutboxEntry] = []
        row_seq: list[int] = []
        facts: list[Fact] = []
        compared_by_item: dict[str, frozenset[str]] = {}
        first_of: dict[tuple[str, int], int] = {}
        repeats: dict[int, int] = {}  # index of a repeated revision -> index of its first copy
        for i, err in zip(candidates, errors, strict=True):
            body = bodies[i]
            if err is not None:
                receipts[i] = self._reject(start_seq + i, body, err.code, err.message)
                continue
            problem = self._authorise(child, sender, records[i], body) or _not_its_path(body, sender, came_from)
            if problem is not None:
                receipts[i] = Receipt(start_seq + i, body.record_id, body.revision, REJECTED, problem)
                continue
            try:
                item = self._catalog.item(body.item)
            except NodeError as exc:
                receipts[i] = self._reject(start_seq + i, body, exc.code, exc.message, "item")
                continue
            if not self._router.reaches_here(item.routing.up_to, item.routing.rule_id):
                # The catalogue keeps this item below us (class C stops at the city): a child on an
                # older or altered catalogue must not put it into this store.
                receipts[i] = self._reject(start_seq + i, body, "E_NOT_ROUTED_HERE",
                                           f"rule {item.routing.rule_id} sends {body.item} up to "
                                           f"{item.routing.up_to}, not to {self._node_id}", "item")
                continue
            raw = {f.name: f.value for f in body.fields}
            checked = self._validator.check(item, raw)
            if not checked.ok:
                first = next(p for p in checked.problems if not p.warning)
                receipts[i] = Receipt(start_seq + i, body.record_id, body.revision, REJECTED, first)
                continue
            if make_record_id(item.code, checked.source_unit, checked.key) != body.record_id:
                receipts[i] = self._reject(start_seq + i, body, "E_RECORD_ID",
                                           "record id does not match the item's natural key", "record_id")
                continue
            header = header_problem(body, checked, raw, item)
            if header is not None:
                receipts[i] = Receipt(start_seq + i, body.record_id, body.revision, REJECTED, header)
                continue
            key = (body.record_id, body.revision)
            earlier = first_of.get(key)
            if earlier is not None:  # the same revision twice in one batch: answered after the first
                repeats[i] = earlier
                continue
            first_of[key] = i
            row = RecordRow(
                record_id=body.record_id, revision=body.revision, item=body.item,
                subject_code=body.subject_code, subject_kind=body.subject_kind, source_unit=body.source_unit,
                origin_node=body.origin_node, status=body.status or "active", decision_date=body.decision_date,
                body=rec_body(records[i]), body_digest=hashed[i],
                content_digest=content_digest(item.code, checked.source_unit, checked.fields),
                signed=records[i].SerializeToString(), received_at_ms=now, received_from=sender,
                catalog_version=body.catalog_version)
            if (unstorable := row.unstorable()) is not None:
                column, why = unstorable
                receipts[i] = self._reject(start_seq + i, body, "E_BODY_HEADER", f"the body's {column} {why}", column)
                continue
            rows.append(row)
            if self._conflicts is not None:
                # The fact as just re-validated (its key matched the record id): no second decode.
                compared = compared_by_item.get(item.code)
                if compared is None:
                    compared = compared_by_item[item.code] = compared_fields(item)
                facts.append(Fact(item.code, checked.key, checked.source_unit, body.record_id, body.revision,
                                  substance(item, checked.fields, compared), body.status or "active"))
            row_seq.append(i)
            outbox.extend(OutboxEntry(body.record_id, body.revision, d.node_id, d.rule_id)
                          for d in self._router.upward(item.routing.up_to, item.routing.rule_id))
        if rows:
            audit = AuditEvent(actor=sender, action="receive", subject=f"{sender}@{now}",
                               detail={"records": len(rows), "from": sender})
            digests = {(row.record_id, row.revision): row.body_digest for row in rows}
            also = [self._conflicts.observer(facts, bodies=digests)] if self._conflicts else []
            result = self._store.records.append(rows, outbox=outbox, audit=[audit], also=also)
            conflicts, duplicates = set(result.conflicts), set(result.duplicates)
            for i, row in zip(row_seq, rows, strict=True):
                key = (row.record_id, row.revision)
                if key in conflicts:
                    receipts[i] = self._reject(start_seq + i, bodies[i], "E_REVISION_CONFLICT",
                                               "another body is already stored for this record revision")
                elif key in duplicates:  # a set built once: a re-sent batch is all duplicates
                    receipts[i] = Receipt(start_seq + i, row.record_id, row.revision, DUPLICATE)
                else:
                    receipts[i] = Receipt(start_seq + i, row.record_id, row.revision, ACCEPTED)
        for i, earlier in repeats.items():
            body, kept = bodies[i], receipts[earlier]
            if records[i].body != records[earlier].body:
                stored = self._store.records.get(body.record_id, body.revision)  # rare: no batching
                if stored is not None and stored.body == records[i].body:
                    receipts[i] = Receipt(start_seq + i, body.record_id, body.revision, DUPLICATE)
                    continue
                receipts[i] = self._reject(start_seq + i, body, "E_REVISION_CONFLICT",
                                           f"another body for this record revision came earlier in the batch "
                                           f"(seq {start_seq + earlier})")
            elif kept.outcome == REJECTED:
                receipts[i] = Receipt(start_seq + i, body.record_id, body.revision, REJECTED, kept.problem)
            else:
                receipts[i] = Receipt(start_seq + i, body.record_id, body.revision, DUPLICATE)
        return [receipts[i] for i in range(len(records))]

    def _authorise(self, child: ChildConfig, sender: str, rec: pb.SignedRecord,
                   body: pb.RecordBody) -> Problem | None:
        if rec.chain[-1].signer != sender:
            return Problem("E_SENDER_MISMATCH", "", f"last signature is by {rec.chain[-1].signer}, "
                           f"but the record came from {sender}")
        if child.items and body.item not in child.items:
            return Problem("E_NOT_AUTHORIZED", "item", f"{sender} may not report {body.item}")
        if child.units and body.source_unit not in child.units:
            return Problem("E_NOT_AUTHORIZED", "source_unit",
                           f"{sender} may not report for source unit {body.source_unit}")
        return None

    @staticmethod
    def _reject(seq: int, body: pb.RecordBody, code: str, message: str, field: str = "") -> Receipt:
        return Receipt(seq, body.record_id, body.revision, REJECTED, Problem(code, field, message))


def _not_its_path(body: pb.RecordBody, sender: str, came_from: Mapping[str, str]) -> Problem | None:
    """A child may revise only records that came up through it: another region's record, or one
    made here, is not its to revise (谁产生、谁负责), whatever its own units allow."""
    first = came_from.get(body.record_id)
    if body.revision <= 1 or first is None or first == sender:
        return None
    return Problem("E_NOT_RECORD_PATH", "record_id", f"record {body.record_id} came here "
                   f"{f'from {first}' if first else 'from no child (it began here)'}; {sender} may not revise it")


def rec_body(rec: pb.SignedRecord) -> bytes:
    return bytes(rec.body)


def header_problem(body: pb.RecordBody, checked: Checked, raw: Mapping[str, str] | None = None,
                   item: Item | None = None) -> Problem | None:
    """What of a received body's header disagrees with its own fields, as re-validated here.

    The header (subject, source unit, decision date) is what the store indexes and what access
    and authorisation read; a sender must not be able to file a record under another subject,
    unmask a person by calling it a legal person, or report for a unit it may not by stating
    one thing in the header and another in the fields.
    """
    if not 1 <= body.revision <= MAX_REVISION:
        return Problem("E_REVISION_RANGE", "revision", f"revision {body.revision} is outside 1..{MAX_REVISION}")
    if body.status and body.status not in STATUSES:
        return Problem("E_BODY_HEADER", "status", f"unknown status {body.status!r} (one of {', '.join(STATUSES)})")
    for name, stated, derived in (("subject_code", body.subject_code, checked.subject_code),
                                  ("subject_kind", body.subject_kind, checked.subject_kind),
                                  ("subject_name", body.subject_name, checked.subject_name),
                                  ("source_unit", body.source_unit, checked.source_unit),
                                  ("decision_date", body.decision_date, checked.decision_date)):
        if stated != derived:
            return Problem("E_BODY_HEADER", name, f"the body's {name} {stated!r} is not what its fields say "
                                                  f"({derived!r})")
    # What is disclosed is what was checked: values as validation writes them (docs/protocol.md).
    sent = raw if raw is not None else {f.name: f.value for f in body.fields}
    # A view shows the body's fields as they are: a field given twice shows a value nobody checked
    # (validation kept the last), one the item does not declare a value nobody checked at all.
    if len(sent) < len(body.fields):
        seen: set[str] = set()
        for f in body.fields:
            if f.name in seen:
                return Problem("E_BODY_NOT_NORMALISED", f.name, f"{f.name} is given more than once; an origin "
                               "writes each field once")
            seen.add(f.name)
    if tuple(sent.items()) == checked.fields:  # the usual body: all of it, in catalogue order
        return None
    unknown = next((name for name in sent if item is not None and not item.has_field(name)), None)
    if unknown is not None:
        return Problem("E_BODY_NOT_NORMALISED", unknown, f"{unknown} is not a field of {body.item} here; "
                       "an origin writes the item's fields only")
    normalised = dict(checked.fields)
    for name, value in sent.items():
        if normalised.get(name, value) != value:
            return Problem("E_BODY_NOT_NORMALISED", name, f"{name}: {value!r} is not written as validation "
                           f"writes it ({normalised[name]!r}); an origin signs normalised values only")
    return None
