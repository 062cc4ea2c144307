"""Deletion on request: a subject's own commendation, volunteer and charity records (表彰奖励、
志愿服务、慈善捐赠) are removed from disclosure within 2 working days, and the source unit is told
(seed 003 篇5 第二十九条).

Only items of the honours category qualify (:data:`DELETABLE_CATEGORIES`, e.g. ``red_list``):
adverse information is never deleted on request. Deletion is a ``deleted`` revision naming the
request (kept, verifiable, disclosed to judicial callers only); it is made at once, so the 2-day
deadline is met by construction, and it travels up and down like any revision: the copy going
down towards the source department is how its source unit is told. When this node is the source
unit's own node, the audit event ``deletion.notice`` is the notice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from sqlalchemy import Connection

from node.catalog import Catalog
from node.errors import ConflictError, NotAuthorizedError, NotFoundError, UsageError
from node.identifiers import normalize_text
from node.lifecycle.calendar import WorkingCalendar, china_date
from node.lifecycle.revisions import Change, Reviser
from node.store import AuditEvent, AuditLog, RecordRow, Store

__all__ = ["DELETABLE_CATEGORIES", "ON_REQUEST", "Deletion", "DeletionService"]

DELETABLE_CATEGORIES: Final = ("诚实守信相关荣誉",)
_WITHDRAWN: Final = ("deleted", "expired", "revoked")
# How a ``deleted`` revision made on request begins its reason: a changed source report of the
# record keeps it deleted (node/ingest.py), which a deletion for other causes does not.
ON_REQUEST: Final = "deleted at the subject's request"


@dataclass(frozen=True)
class Deletion:
    record_id: str
    revision: int  # the ``deleted`` revision
    requested_on: dt.date
    due: dt.date  # the last day the deletion may take (it is done at once)
    told: str  # the node the revision goes down to, or this node when it is the source unit's own

    def as_dict(self) -> dict[str, object]:
        return {"record_id": self.record_id, "revision": self.revision,
                "requested_on": self.requested_on.isoformat(), "due": self.due.isoformat(), "told": self.told}


class DeletionService:
    def __init__(self, *, node_id: str, store: Store, catalog: Catalog, reviser: Reviser,
                 calendar: WorkingCalendar, deadline_days: int, clock: Callable[[], int]) -> None:
        self._node_id = node_id
        self._store = store
        self._catalog = catalog
        self._reviser = reviser
        self._calendar = calendar
        self._days = deadline_days
        self._clock = clock
        self._audit = AuditLog(store.engine)

    def request(self, record_id: str, *, by: str, reason: str = "") -> Deletion:
        now = self._clock()
        today = china_date(now)
        head = self._store.records.get(record_id)
        if head is None:
            raise NotFoundError(f"no record {record_id} at this node", field="record_id")
        if normalize_text(by).upper() != head.subject_code:
            raise NotAuthorizedError("only the subject of a record may ask for its deletion",
                                     code="E_DELETION_NOT_SUBJECT", field="by")
        item = self._catalog.item(head.item)
        if item.category not in DELETABLE_CATEGORIES:
            raise UsageError(f"{item.code} ({item.category}) is not a commendation, volunteer or charity record: "
                             "only those are deleted on request (seed 003 篇5 第二十九条)",
                             field="record_id", code="E_DELETION_NOT_ALLOWED")
        if head.status in _WITHDRAWN:
            raise ConflictError(f"record {record_id} is {head.status} already", code="E_DELETION_STATE")
        told = self._reviser.children_of([record_id]).get(record_id, "") or self._node_id
        due = self._calendar.add_working_days(today, self._days)
        text = f"{ON_REQUEST} of {today.isoformat()} (seed 003 篇5 第二十九条)" + \
            (f": {reason.strip()}" if reason.strip() else "")

        def notice(conn: Connection, rows: list[RecordRow]) -> None:
            self._audit.append(conn, [AuditEvent(self._node_id, "deletion.notice", record_id, {
                "source_unit": head.source_unit, "told": told, "revision": rows[0].revision,
                "requested_on": today.isoformat(), "due": due.isoformat()})], at_ms=now)

        rows, _ = self._reviser.commit([Change(head, "deleted", text)], action="deletion.request", subject=record_id,
                                       also=[notice], now_ms=now)
        return Deletion(record_id, rows[0].revision, today, due, told)

    def head(self, record_id: str) -> RecordRow | None:
        return self._store.records.get(record_id)
