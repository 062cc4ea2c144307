"""Platform checks (信息自查): the platform opens a case on a record it finds untrue or incomplete.

信用中心发现所征集的信息不真实或不完整的，应当…告知信息提供单位，被告知单位应当…核查纠错…在信息
核查期间，该条信息记录应当暂停披露 (seed 003 篇2 第三十三条; 篇1 第十一条). A check is an objection
case of kind ``check`` (docs/decisions/platform-checks.md): the same store, log, case id, answer
(``objection answer``) and tick. What differs is here: no subject applies, the node opening it is
the opener, and its revision is ``checking`` — suspended from every caller whatever
``access.disputed`` says, here and at every node the revision reaches (up the routes, and down to
the source department: its verification request).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection

from node.catalog import Catalog
from node.conflicts import Conflicts
from node.errors import ConflictError, NotAuthorizedError, NotFoundError
from node.identifiers import normalize_text
from node.lifecycle import objections as sm
from node.lifecycle.calendar import WorkingCalendar, china_date
from node.lifecycle.disclosure import in_period
from node.lifecycle.objection_service import UNDER_CASE
from node.lifecycle.objection_store import ObjectionStore
from node.lifecycle.revisions import Change, Reviser
from node.routing import level_of
from node.store import RecordRow, Store

__all__ = ["PlatformChecks"]


class PlatformChecks:
    def __init__(self, *, node_id: str, store: Store, catalog: Catalog, reviser: Reviser, cases: ObjectionStore,
                 calendar: WorkingCalendar, deadlines: sm.Deadlines, clock: Callable[[], int]) -> None:
        self._node_id = node_id
        self._store = store
        self._catalog = catalog
        self._reviser = reviser
        self.cases = cases
        self._calendar = calendar
        self._deadlines = deadlines
        self._clock = clock

    def open(self, record_id: str, *, reason: str, by: str = "", conflict: int | None = None) -> sm.Case:
        """Suspend ``record_id`` and tell its source unit; ``by`` names the operator in the log."""
        return self._open([self._ready(record_id)], reason=reason, by=by, conflict=conflict)[0]

    def from_conflict(self, conflict_id: int, *, reason: str, by: str = "") -> list[sm.Case]:
        """A check of each side of an open conflict, in one transaction: both sources are asked, and
        neither side stays disclosed while the other is suspended (篇1 第十二条 with 篇2 第三十三条)."""
        found = Conflicts(self._store.engine, actor=self._node_id).get(conflict_id)
        if found.state != "open":
            raise ConflictError(f"conflict {conflict_id} is {found.state} already", code="E_CONFLICT_CLOSED")
        heads = [self._ready(found.record_a), self._ready(found.record_b)]
        return self._open(heads, reason=reason, by=by, conflict=conflict_id)

    def _ready(self, record_id: str) -> RecordRow:
        """The head of a record that may be checked here now (refusals before anything is stored)."""
        if level_of(self._node_id) == "department":
            # The source unit's own node corrects or revokes its record; the check is the platform's.
            raise NotAuthorizedError("a check is opened by a platform (a district, city or province node); a "
                                     "department answers it", code="E_CHECK_NOT_PLATFORM")
        head = self._store.records.get(record_id)
        if head is None:
            raise NotFoundError(f"no record {record_id} at this node", field="record_id")
        open_case = self.cases.open_for(record_id)
        if open_case is not None or head.status in UNDER_CASE:
            # One case at a time: the open one's answer settles the record (or its late source
            # already withdrew it); a check on top would make the source answer twice.
            named = f": case {open_case.case_id} ({open_case.kind})" if open_case is not None else ""
            raise ConflictError(f"record {record_id} is already under objection or check{named}",
                                code="E_OBJECTION_OPEN")
        in_period(self._catalog, head, china_date(self._clock()), "a check", self._store.engine)
        return head

    def _open(self, heads: list[RecordRow], *, reason: str, by: str, conflict: int | None) -> list[sm.Case]:
        now = self._clock()
        today = china_date(now)
        opener = normalize_text(by) or self._node_id
        sent = self._reviser.children_of([h.record_id for h in heads])
        detail: dict[str, object] = {"by": opener, **({"conflict": conflict} if conflict is not None else {})}
        changes, made = [], []
        for head in heads:
            case_id = sm.case_id_for(head.record_id, head.revision + 1)
            made.append(sm.opened(case_id=case_id, record_id=head.record_id, revision=head.revision + 1,
                                  item=head.item, subject_code=head.subject_code, opener=self._node_id,
                                  reason=reason, today=today, now_ms=now, calendar=self._calendar,
                                  deadlines=self._deadlines, sent_to=sent.get(head.record_id, ""), detail=detail))
            changes.append(Change(head, "checking", f"信息核查中，暂停披露: check {case_id}: {made[-1][0].reason}"))

        def record(conn: Connection, _rows: list[RecordRow]) -> None:
            for case, steps in made:
                self.cases.insert(conn, case, None)
                self.cases.log(conn, case.case_id, steps, actor=self._node_id, state=case.state,
                               revision=case.revision, at_ms=now)

        self._reviser.commit(changes, action="check.revision", subject=made[0][0].case_id, also=[record],
                             now_ms=now)
        return [case for case, _steps in made]
