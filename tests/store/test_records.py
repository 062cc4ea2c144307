"""RecordStore against real SQLite and PostgreSQL: idempotence, heads, outbox, atomicity."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import Connection, Engine, Table, func, select, text

from node.errors import StoreError
from node.store import AuditEvent, AuditLog, OutboxEntry, RecordRow, RecordStore, RejectionKey, RejectionRow
from node.store.meta import Meta, put_value
from node.store.tables import audit_log, outbox, record_heads, record_revisions, rejections

MakeRow = Callable[..., RecordRow]


def _count(engine: Engine, table: Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_append_stores_rows_and_reads_them_back(engine: Engine, make_row: MakeRow) -> None:
    store = RecordStore(engine)
    rows = [make_row(f"r{i}") for i in range(3)]
    result = store.append(rows)
    assert result.stored == [r.key for r in rows]
    assert result.duplicates == [] and result.conflicts == []
    assert store.get("r1") == rows[1]
    assert store.get("r1", 1) == rows[1]
    assert store.get("r1", 2) is None
    assert store.get("nope") is None
    assert store.history("r2") == [rows[2]]
    heads = store.heads(["r0", "r2", "missing"])
    assert set(heads) == {"r0", "r2"}
    assert heads["r0"].revision == 1 and heads["r0"].body_digest == rows[0].body_digest
    assert heads["r0"].content_digest == rows[0].content_digest
    assert store.counts() == {"admin_penalty": 3}


def test_duplicate_with_same_digest_is_reported_without_second_row_or_outbox_entry(
    engine: Engine, make_row: MakeRow
) -> None:
    store = RecordStore(engine)
    row = make_row("r1")
    entry = OutboxEntry("r1", 1, "city:330100", "up")
    assert store.append([row], outbox=[entry]).stored == [("r1", 1)]
    again = store.append([row], outbox=[entry])
    assert again.stored == [] and again.duplicates == [("r1", 1)] and again.conflicts == []
    assert _count(engine, record_revisions) == 1
    assert _count(engine, outbox) == 1


def test_repeat_inside_one_batch_is_a_duplicate(engine: Engine, make_row: MakeRow) -> None:
    row = make_row("r1")
    result = RecordStore(engine).append([row, row], outbox=[OutboxEntry("r1", 1, "city:330100", "up")])
    assert result.stored == [("r1", 1)] and result.duplicates == [("r1", 1)]
    assert _count(engine, outbox) == 1


def test_conflicting_body_at_same_revision_is_a_conflict(engine: Engine, make_row: MakeRow) -> None:
    store = RecordStore(engine)
    original = make_row("r1", value="a")
    store.append([original])
    result = store.append([make_row("r1", value="b")], outbox=[OutboxEntry("r1", 1, "city:330100", "up")])
    assert result.conflicts == [("r1", 1)] and result.stored == [] and result.duplicates == []
    assert store.get("r1") == original  # never silently changed
    assert _count(engine, outbox) == 0


def test_conflict_inside_one_batch(engine: Engine, make_row: MakeRow) -> None:
    result = RecordStore(engine).append([make_row("r1", value="a"), make_row("r1", value="b")])
    assert result.stored == [("r1", 1)] and result.conflicts == [("r1", 1)]


def test_heads_follow_highest_revision_even_out_of_order(engine: Engine, make_row: MakeRow) -> None:
    store = RecordStore(engine)
    rev2 = make_row("r1", 2, value="new", status="corrected", subject="S2")
    rev1 = make_row("r1", 1, value="old", subject="S2")
    store.append([rev2])
    store.append([rev1])
    head = store.heads(["r1"])["r1"]
    assert (head.revision, head.status, head.body_digest) == (2, "corrected", rev2.body_digest)
    assert store.current_for_subject("S2") == [rev2]
    assert store.get("r1") == rev2
    assert store.history("r1") == [rev1, rev2]
    rev3 = make_row("r1", 3, value="newest", status="revoked", subject="S2")
    store.append([rev3, make_row("r1", 1, value="old", subject="S2")])
    assert store.heads(["r1"])["r1"].revision == 3


def test_both_revisions_in_one_batch_advance_head_to_the_highest(engine: Engine, make_row: MakeRow) -> None:
    store = RecordStore(engine)
    store.append([make_row("r1", 2, value="b"), make_row("r1", 1, value="a")])
    assert store.heads(["r1"])["r1"].revision == 2


def test_outbox_entries_only_for_stored_rows(engine: Engine, make_row: MakeRow) -> None:
    store = RecordStore(engine)
    store.append([make_row("old")])
    rows = [make_row("old"), make_row("new")]
    entries = [OutboxEntry("old", 1, "city:330100", "up"), OutboxEntry("new", 1, "city:330100", "up"),
               OutboxEntry("new", 1, "province:330000", "up2"), OutboxEntry("ghost", 1, "city:330100", "up")]
    result = store.append(rows, outbox=entries)
    assert result.stored == [("new", 1)] and result.duplicates == [("old", 1)]
    with engine.connect() as conn:
        got = conn.execute(select(outbox.c.record_id, outbox.c.destination, outbox.c.state)
                           .order_by(outbox.c.id)).all()
    assert [tuple(r) for r in got] == [("new", "city:330100", "pending"), ("new", "province:330000", "pending")]


def test_current_for_subject_filters_by_items(engine: Engine, make_row: MakeRow) -> None:
    store = RecordStore(engine)
    a = make_row("a", subject="S", item="admin_penalty")
    b = make_row("b", subject="S", item="admin_license")
    c = make_row("c", subject="OTHER")
    store.append([a, b, c])
    assert store.current_for_subject("S") == [b, a]  # ordered by item
    assert store.current_for_subject("S", ["admin_penalty"]) == [a]
    assert store.current_for_subject("NOBODY") == []
    assert store.counts() == {"admin_penalty": 2, "admin_license": 1}


def test_append_is_atomic_when_an_audit_event_cannot_be_encoded(engine: Engine, make_row: MakeRow) -> None:
    store = RecordStore(engine)
    bad = AuditEvent("dept:1", "import", "batch-1", {"not json": object()})
    rejection = RejectionRow("batch-1", "f.csv", "U", "admin_penalty", 3, "K", "CF_WSH", "E_X", "bad")
    with pytest.raises(TypeError):
        store.append([make_row("r1"), make_row("r2")], outbox=[OutboxEntry("r1", 1, "city:330100", "up")],
                     audit=[AuditEvent("dept:1", "import", "batch-1"), bad], rejections=[rejection])
    for table in (record_revisions, record_heads, outbox, rejections, audit_log):
        assert _count(engine, table) == 0, table.name
    assert store.append([make_row("r1")]).stored == [("r1", 1)]  # and the store still works


def test_database_errors_are_wrapped_and_roll_back(engine: Engine, make_row: MakeRow) -> None:
    store = RecordStore(engine)
    row = make_row("r1")
    broken = make_row("r2")._replace(body_digest=None)
    with pytest.raises(StoreError) as caught:
        store.append([row, broken])
    assert caught.value.code == "E_STORE_CONSTRAINT" and not caught.value.retryable
    assert _count(engine, record_revisions) == 0


def test_audit_events_and_rejections_are_written_with_the_batch(engine: Engine, make_row: MakeRow) -> None:
    store = RecordStore(engine)
    rejection = RejectionRow("b1", "f.csv", "U", "admin_penalty", 7, "K1", "CF_WSH", "E_FIELD_REQUIRED", "missing")
    store.append([make_row("r1")], audit=[AuditEvent("dept:1", "import", "b1", {"stored": 1})],
                 rejections=[rejection], now_ms=123)
    entries = list(AuditLog(engine).iter())
    assert [(e.seq, e.at_ms, e.action, e.subject, e.detail) for e in entries] == [(1, 123, "import", "b1", {"stored": 1})]
    assert AuditLog(engine).verify() == []
    # A corrected version of the fact closes the rejection, in the same transaction.
    store.append([make_row("r2")], close_rejections=[RejectionKey("admin_penalty", "U", "K1", "r2")], now_ms=456)
    with engine.connect() as conn:
        closed = conn.execute(select(rejections.c.closed_at_ms, rejections.c.closed_by_record_id)).one()
    assert tuple(closed) == (456, "r2")


def test_rejections_only_batch(engine: Engine) -> None:
    rejection = RejectionRow("b1", "f.csv", "U", "admin_penalty", 7, "K1", "CF_WSH", "E_FIELD_REQUIRED", "missing")
    result = RecordStore(engine).append([], rejections=[rejection])
    assert result.stored == [] and _count(engine, rejections) == 1


def test_concurrent_appenders_of_the_same_batch_store_each_record_once(engine: Engine, make_row: MakeRow) -> None:
    rows = [make_row(f"r{i:04d}") for i in range(300)]
    entries = [OutboxEntry(r.record_id, 1, "city:330100", "up") for r in rows]
    # Each thread has its own RecordStore and so its own pooled connection (two PG connections).
    stores = [RecordStore(engine) for _ in range(4)]
    start = threading.Barrier(len(stores))
    results: list[object] = [None] * len(stores)

    def run(i: int) -> None:
        start.wait()
        audit = [AuditEvent(f"t{i}", "import", f"batch-{i}")]
        try:
            results[i] = stores[i].append(rows, outbox=entries, audit=audit)
        except Exception as exc:  # surfaced in the assertion below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored: list[tuple[str, int]] = []
    for r in results:
        assert not isinstance(r, BaseException), r
        stored.extend(r.stored)  # type: ignore[attr-defined]
        assert sorted(r.stored + r.duplicates) == [x.key for x in rows]  # type: ignore[attr-defined]
    assert sorted(stored) == [r.key for r in rows]
    assert _count(engine, record_revisions) == len(rows)
    assert _count(engine, outbox) == len(rows)
    assert _count(engine, audit_log) == len(stores)
    assert AuditLog(engine).verify() == []


def test_rebuild_heads_recomputes_the_current_view(engine: Engine, make_row: MakeRow) -> None:
    store = RecordStore(engine)
    store.append([make_row("a", 1), make_row("a", 2, value="x"), make_row("b", 1)])
    before = store.heads(["a", "b"])
    with engine.begin() as conn:
        conn.execute(record_heads.delete().where(record_heads.c.record_id == "a"))
    assert store.rebuild_heads() == 2
    assert store.heads(["a", "b"]) == before


def test_heads_lookup_is_chunked(engine: Engine, make_row: MakeRow) -> None:
    store = RecordStore(engine)
    rows = [make_row(f"r{i:05d}") for i in range(1200)]
    store.append(rows)
    heads = store.heads([r.record_id for r in rows] + ["missing"])
    assert len(heads) == 1200


def test_iter_revisions_streams_every_revision(engine: Engine, make_row: MakeRow) -> None:
    store = RecordStore(engine)
    template = make_row("x")
    rows = [template._replace(record_id=f"r{i:05d}", revision=1 + i % 2) for i in range(10_000)]
    for start in range(0, len(rows), 2000):
        store.append(rows[start : start + 2000])
    seen = 0
    previous: tuple[str, int] | None = None
    iterator = store.iter_revisions(batch=777)
    first = next(iterator)  # a generator: pages are read as they are consumed
    for row in [first, *iterator]:
        assert previous is None or row.key > previous
        previous = row.key
        seen += 1
    assert seen == 10_000


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_batch_waiting_on_a_row_does_not_hold_the_audit_chain_against_its_holder(
        engine: Engine, make_row: MakeRow) -> None:
    # As `conflicts resolve` (a conflict row, then the audit log) meets a received batch whose
    # conflict detection updates that row: had the batch taken the chain first, each would wait
    # for the other, and PostgreSQL would end one of them as a deadlock.
    Meta(engine).put("shared-row", "before")
    store = RecordStore(engine)
    holder = engine.connect()
    holder.begin()
    put_value(holder, "shared-row", "holder")
    outcome: list[object] = []

    def touch_the_shared_row(conn: Connection) -> None:
        put_value(conn, "shared-row", "batch")

    def batch() -> None:
        try:
            outcome.append(store.append([make_row("r1")], audit=[AuditEvent("dept:1", "import", "b1")],
                                        also=[touch_the_shared_row]))
        except Exception as exc:  # surfaced in the assertion below
            outcome.append(exc)

    thread = threading.Thread(target=batch)
    thread.start()
    with engine.connect() as watcher:
        deadline = time.monotonic() + 30
        while not watcher.execute(text("select count(*) from pg_stat_activity where datname = current_database() "
                                       "and wait_event_type = 'Lock'")).scalar():
            watcher.rollback()
            assert time.monotonic() < deadline, "the batch never waited for the row"
    try:
        AuditLog(engine).append(holder, [AuditEvent("operator", "conflict.resolve", "1")])
        holder.commit()
    finally:
        holder.close()
    thread.join()
    assert not isinstance(outcome[0], BaseException), outcome[0]
    assert _count(engine, audit_log) == 2 and AuditLog(engine).verify() == []
    assert Meta(engine).get("shared-row") == "batch"
