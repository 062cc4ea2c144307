"""Credit repair (信用修复): after the minimum period, with its source unit's consent, a record
stops being disclosed publicly at every node, its history kept (DOMAIN §5).

The minimum period is the catalogue's (``disclosure.window(...).min_repair``: for penalties the
severity class's ``min_months`` from the decision date, [practice: 2026 credit repair rules]);
an item whose rule sets none (registrations, licences, lists) is not repaired this way. A request
before the minimum period is refused with ``E_REPAIR_TOO_EARLY`` naming the earliest date. The
request is kept at the node it was made at; the source unit's decision is entered there
(``approve`` / ``reject``). Approval stores a ``repaired`` revision by this node, which travels up
and down like any revision; ``node.access`` then shows it only to government and judicial callers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final

from sqlalchemy import Connection, func, insert, select, update

from node.catalog import Catalog, Item
from node.errors import ConflictError, NotAuthorizedError, NotFoundError, StoreError, UsageError
from node.identifiers import normalize_text
from node.lifecycle.calendar import china_date
from node.lifecycle.disclosure import window
from node.lifecycle.revisions import Change, Reviser
from node.records import decode_body, fields_dict
from node.store import AuditEvent, AuditLog, RecordRow, Store
from node.store._sql import translated, write_transaction
from node.store.tables import repair_requests

__all__ = ["REPAIRABLE_STATUSES", "RepairCase", "RepairService", "earliest_repair"]

REQUESTED: Final = "requested"
APPROVED: Final = "approved"
REJECTED: Final = "rejected"
REPAIRABLE_STATUSES: Final = ("active", "corrected", "confirmed")


@dataclass(frozen=True)
class RepairCase:
    case_id: str
    record_id: str
    revision: int
    item: str
    subject_code: str
    applicant: str
    reason: str
    state: str
    decision_reason: str
    decided_by: str
    repaired_revision: int
    requested_at_ms: int
    decided_at_ms: int | None

    def as_dict(self) -> dict[str, object]:
        return dict(vars(self))


def earliest_repair(item: Item, head: RecordRow, today: dt.date) -> dt.date:
    """The first day a repair of ``head`` may be applied for; raises why it may not (pure)."""
    if head.status not in REPAIRABLE_STATUSES:
        raise ConflictError(f"record {head.record_id} is {head.status}: only a disclosed record is repaired",
                            code="E_REPAIR_STATUS")
    w = window(item, fields_dict(decode_body(head.body)), head.decision_date)
    if w.min_repair is None:
        raise UsageError(f"{item.code} ({item.name}) has no minimum disclosure period: credit repair does not "
                         "apply to it", field="record_id", code="E_REPAIR_NOT_APPLICABLE")
    if w.end is not None and today >= w.end:
        raise ConflictError(f"the disclosure period of {head.record_id} ended {w.end.isoformat()}: nothing to "
                            "repair", code="E_REPAIR_STATUS")
    if today < w.min_repair:
        raise ConflictError(f"too early: the minimum disclosure period of {head.record_id} lasts until "
                            f"{(w.min_repair - dt.timedelta(days=1)).isoformat()}; apply on or after "
                            f"{w.min_repair.isoformat()}",
                            field="record_id", code="E_REPAIR_TOO_EARLY")
    return w.min_repair


def _open(record_id: str, case_id: str) -> ConflictError:
    # Named: whoever lost the first request's answer learns which case to decide.
    return ConflictError(f"a repair request for {record_id} is pending: case {case_id}", code="E_REPAIR_OPEN")


class RepairService:
    def __init__(self, *, node_id: str, store: Store, catalog: Catalog, reviser: Reviser,
                 clock: Callable[[], int]) -> None:
        self._node_id = node_id
        self._store = store
        self._catalog = catalog
        self._reviser = reviser
        self._clock = clock
        self._audit = AuditLog(store.engine)

    def request(self, record_id: str, *, by: str, reason: str) -> RepairCase:
        now = self._clock()
        head = self._head(record_id)
        applicant = normalize_text(by).upper()
        if applicant != head.subject_code:
            raise NotAuthorizedError("only the subject of a record may apply for its repair",
                                     code="E_REPAIR_NOT_SUBJECT", field="by")
        if not reason.strip():
            raise UsageError("a repair request needs its reason (obligations fulfilled …)", field="reason")
        earliest_repair(self._catalog.item(head.item), head, china_date(now))
        r = repair_requests.c
        pending_one = select(r.case_id).where(r.record_id == record_id, r.state == REQUESTED)
        try:
            with translated("filing a repair request"), write_transaction(self._store.engine) as conn:
                pending = conn.execute(pending_one).first()
                if pending:
                    raise _open(record_id, pending[0])
                n = int(conn.execute(select(func.count()).where(r.record_id == record_id)).scalar_one())
                case = RepairCase(f"{record_id}#r{n + 1}", record_id, head.revision, head.item, head.subject_code,
                                  applicant, reason.strip(), REQUESTED, "", "", 0, now, None)
                conn.execute(insert(repair_requests).values(**case.as_dict()))
                self._audit.append(conn, [AuditEvent(self._node_id, "repair.request", case.case_id,
                                                     {"record_id": record_id, "revision": head.revision,
                                                      "reason": case.reason})], at_ms=now)
        except StoreError as exc:
            # PostgreSQL: another request, not committed when this one looked, numbered the same case;
            # this insert waited for it and failed on the key. SQLite's write lock never lets that happen.
            if exc.code != "E_STORE_CONSTRAINT":
                raise
            with translated("reading repair requests"), self._store.engine.connect() as conn:
                pending = conn.execute(pending_one).first()
            if not pending:
                raise
            raise _open(record_id, pending[0]) from None
        return case

    def approve(self, case_id: str, *, by: str = "", note: str = "") -> RepairCase:
        """The source unit agreed: a ``repaired`` revision, not disclosed publicly at any node."""
        now = self._clock()
        case = self._pending(case_id)
        head = self._head(case.record_id)
        earliest_repair(self._catalog.item(head.item), head, china_date(now))  # still disclosed, still due
        decided = replace(case, state=APPROVED, decided_by=by or self._node_id, decision_reason=note.strip(),
                          repaired_revision=head.revision + 1, decided_at_ms=now)
        reason = f"credit repair {case_id} approved by the source unit" + (f": {note.strip()}" if note.strip() else "")

        def record(conn: Connection, _rows: list[RecordRow]) -> None:
            self._decide(conn, decided)

        self._reviser.commit([Change(head, "repaired", reason)], action="repair.approve", subject=case_id,
                             also=[record], now_ms=now)
        return decided

    def reject(self, case_id: str, *, reason: str, by: str = "") -> RepairCase:
        if not reason.strip():
            raise UsageError("a rejection needs its reason", field="reason")
        now = self._clock()
        decided = replace(self._pending(case_id), state=REJECTED, decided_by=by or self._node_id,
                          decision_reason=reason.strip(), decided_at_ms=now)
        with translated("rejecting a repair request"), write_transaction(self._store.engine) as conn:
            self._decide(conn, decided)
            self._audit.append(conn, [AuditEvent(self._node_id, "repair.reject", case_id,
                                                 {"reason": decided.decision_reason})], at_ms=now)
        return decided

    def _decide(self, conn: Connection, case: RepairCase) -> None:
        r = repair_requests.c
        done = conn.execute(update(repair_requests).where(r.case_id == case.case_id, r.state == REQUESTED).values(
            state=case.state, decision_reason=case.decision_reason, decided_by=case.decided_by,
            repaired_revision=case.repaired_revision, decided_at_ms=case.decided_at_ms)).rowcount
        if done != 1:
            raise ConflictError(f"repair request {case.case_id} was decided meanwhile", code="E_REPAIR_STATE")

    def listing(self, state: str | None = None) -> list[RepairCase]:
        r = repair_requests.c
        stmt = select(repair_requests).order_by(r.requested_at_ms.desc(), r.case_id)
        if state:
            stmt = stmt.where(r.state == state)
        with translated("reading repair requests"), self._store.engine.connect() as conn:
            return [RepairCase(**row._mapping) for row in conn.execute(stmt)]

    def get(self, case_id: str) -> RepairCase:
        with translated("reading a repair request"), self._store.engine.connect() as conn:
            row = conn.execute(select(repair_requests).where(repair_requests.c.case_id == case_id)).first()
        if row is None:
            raise NotFoundError(f"no repair request {case_id} at this node", field="case_id",
                                code="E_REPAIR_UNKNOWN")
        return RepairCase(**row._mapping)

    def _pending(self, case_id: str) -> RepairCase:
        case = self.get(case_id)
        if case.state != REQUESTED:
            raise ConflictError(f"repair request {case_id} is {case.state} already", code="E_REPAIR_STATE")
        return case

    def _head(self, record_id: str) -> RecordRow:
        head = self._store.records.get(record_id)
        if head is None:
            raise NotFoundError(f"no record {record_id} at this node", field="record_id")
        return head
