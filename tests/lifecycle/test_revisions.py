"""Revisions made here (Reviser) against PostgreSQL writers that share their locks."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import Connection, Engine, text

from node.catalog import Catalog
from node.conflicts import Conflicts, Fact, observe
from node.identity import LoadedIdentity
from node.lifecycle.revisions import Change, Reviser
from node.store import AuditEvent, AuditLog, RecordRow
from tests.lifecycle.kit import DEPT, DISTRICT, Clock, make_kit


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_revision_whose_case_step_is_audited_does_not_deadlock_with_a_batch_being_checked_for_conflicts(
        engine: Engine, ids: dict[str, LoadedIdentity], catalog: Catalog, clock: Clock) -> None:
    # An objection answered here logs its case step (the audit log) in a callback; conflict
    # detection ran after it, so the revision held the audit chain and waited for detection while
    # a child's batch held detection and waited for the chain: PostgreSQL ended one as a deadlock.
    kit = make_kit(engine, DEPT, parent=DISTRICT, ids=ids, catalog=catalog, clock=clock)
    rid = kit.import_penalties(1)[0]
    head = kit.store.records.get(rid)
    assert head is not None
    reviser = Reviser(node_id=kit.node_id, catalog=kit.catalog, signer=kit.signer, store=kit.store,
                      router=kit.router, clock=kit.clock, conflicts=Conflicts(engine, actor=kit.node_id))
    logged, go_on = threading.Event(), threading.Event()
    outcome: list[object] = []

    def case_step(conn: Connection, _rows: list[RecordRow]) -> None:
        AuditLog(engine).append(conn, [AuditEvent(kit.node_id, "objection.answered", f"{rid}@2")])
        logged.set()
        go_on.wait()

    def revise() -> None:
        try:
            outcome.append(reviser.commit([Change(head, "corrected", "异议核实更正")], action="objection.revision",
                                          subject=f"{rid}@2", also=[case_step]))
        except Exception as exc:  # surfaced in the assertion below
            outcome.append(exc)

    thread = threading.Thread(target=revise)
    thread.start()
    logged.wait()
    batch = engine.connect()
    batch.begin()
    batch_outcome: list[BaseException] = []

    def check_a_batch() -> None:
        try:
            observe(batch, [Fact("admin_penalty", "k", "11330102MB0000019G", "admin_penalty-x", 1, {"CF_NR_FK": "1"})])
            AuditLog(engine).append(batch, [AuditEvent("dept:330102:hbj", "receive", "b")])
        except Exception as exc:  # surfaced in the assertion below
            batch_outcome.append(exc)

    checking = threading.Thread(target=check_a_batch)
    checking.start()
    with engine.connect() as watcher:  # until the batch waits for a lock the revision holds
        while not watcher.execute(text("select count(*) from pg_stat_activity where datname = current_database() "
                                       "and wait_event_type = 'Lock'")).scalar():
            watcher.rollback()
    go_on.set()
    thread.join()
    checking.join()
    if not batch_outcome:
        batch.commit()
    batch.close()
    assert not isinstance(outcome[0], BaseException), outcome[0]
    assert batch_outcome == []
    assert AuditLog(engine).verify() == []
