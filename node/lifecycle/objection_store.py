"""The objection cases and their append-only log in the store (tables ``objections``, ``objection_events``).

Writes happen inside the caller's transaction (usually the one that stores the case's record
revision), together with a hash-chained audit event per step: a case, its log and the revision it
made are committed together or not at all. Events are only ever inserted; a case row is the current
view of its events, updated in place, never deleted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from node.errors import NotFoundError
from node.lifecycle.objections import AWAITING_SOURCE, OVERDUE, Case, Step
from node.store import AuditEvent, AuditLog
from node.store._sql import translated, write_transaction
from node.store.audit import canonical_json
from node.store.tables import objection_events, objections

__all__ = ["Event", "ObjectionStore"]

_COLUMNS = tuple(c.name for c in objections.columns if c.name != "evidence")


class Event(dict[str, Any]):
    """One row of a case's log: id, case_id, at_ms, actor, kind, state, revision, detail."""


class ObjectionStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._audit = AuditLog(engine)

    # --- writing (in the caller's transaction) --------------------------------------------------
    def insert(self, conn: Connection, case: Case, evidence: bytes | None) -> None:
        conn.execute(insert(objections).values(**_values(case), evidence=evidence))

    def update(self, conn: Connection, case: Case) -> None:
        values = {k: v for k, v in _values(case).items() if k != "case_id"}
        conn.execute(update(objections).where(objections.c.case_id == case.case_id).values(**values))

    def log(self, conn: Connection, case_id: str, steps: Sequence[Step], *, actor: str, state: str,
            revision: int, at_ms: int) -> None:
        """Append ``steps`` to the case log and the audit log (one audit event per step)."""
        if not steps:
            return
        conn.execute(insert(objection_events), [
            {"case_id": case_id, "at_ms": at_ms, "actor": actor, "kind": s.kind, "state": state,
             "revision": revision, "detail": canonical_json(dict(s.detail))} for s in steps])
        self._audit.append(conn, [AuditEvent(actor=actor, action=f"objection.{s.kind}", subject=case_id,
                                             detail={**s.detail, "state": state}) for s in steps], at_ms=at_ms)

    def apply(self, case: Case, steps: Sequence[Step], *, actor: str, at_ms: int) -> None:
        """Update a case and log its steps in a transaction of their own (steps storing no revision)."""
        with translated("recording an objection step"), write_transaction(self._engine) as conn:
            self.update(conn, case)
            self.log(conn, case.case_id, steps, actor=actor, state=case.state, revision=0, at_ms=at_ms)

    # --- reading ------------------------------------------------------------------------------
    def find(self, case_id: str) -> Case | None:
        found = self._cases(select(*(objections.c[c] for c in _COLUMNS)).where(objections.c.case_id == case_id))
        return found[0] if found else None

    def get(self, case_id: str) -> Case:
        case = self.find(case_id)
        if case is None:
            raise NotFoundError(f"no objection case {case_id} at this node", field="case_id",
                                code="E_OBJECTION_UNKNOWN")
        return case

    def open_for(self, record_id: str) -> Case | None:
        o = objections.c
        found = self._cases(select(*(o[c] for c in _COLUMNS))
                            .where(o.record_id == record_id, o.state.in_([AWAITING_SOURCE, OVERDUE])))
        return found[0] if found else None

    def cases_for(self, record_id: str) -> list[Case]:
        o = objections.c
        return self._cases(select(*(o[c] for c in _COLUMNS)).where(o.record_id == record_id).order_by(o.case_id))

    def open_cases(self) -> list[Case]:
        o = objections.c
        return self._cases(select(*(o[c] for c in _COLUMNS)).where(o.state.in_([AWAITING_SOURCE, OVERDUE]))
                           .order_by(o.source_due, o.case_id))

    def cases(self, *, limit: int = 1000) -> list[Case]:
        o = objections.c
        return self._cases(select(*(o[c] for c in _COLUMNS)).order_by(o.filed_at_ms.desc(), o.case_id).limit(limit))

    def evidence(self, case_id: str) -> bytes | None:
        with translated("reading objection evidence"), self._engine.connect() as conn:
            value = conn.execute(select(objections.c.evidence).where(objections.c.case_id == case_id)).scalar()
        return None if value is None else bytes(value)

    def events(self, case_id: str) -> list[Event]:
        e = objection_events.c
        with translated("reading an objection log"), self._engine.connect() as conn:
            rows = conn.execute(select(objection_events).where(e.case_id == case_id).order_by(e.id)).all()
        return [Event({**row._mapping, "detail": json.loads(row.detail)}) for row in rows]

    def _cases(self, stmt: Any) -> list[Case]:
        with translated("reading objection cases"), self._engine.connect() as conn:
            rows = conn.execute(stmt).all()
        out = []
        for row in rows:
            values = dict(row._mapping)
            digest = values.get("evidence_digest")
            values["evidence_digest"] = None if digest is None else bytes(digest)
            out.append(Case(**values))
        return out


def _values(case: Case) -> dict[str, object]:
    return {c: getattr(case, c) for c in _COLUMNS}
