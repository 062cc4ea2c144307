"""Outbox draining and dead letters, on real SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable

from sqlalchemy import Engine

from node.store import InboundDeadLetters, Outbox, OutboxEntry, RecordRow, RecordStore

MakeRow = Callable[..., RecordRow]
CITY = "city:330100"
PROVINCE = "province:330000"


def _seed(engine: Engine, make_row: MakeRow, n: int = 5, *, now_ms: int = 1_000) -> list[RecordRow]:
    rows = [make_row(f"r{i}") for i in range(n)]
    entries = [OutboxEntry(r.record_id, 1, CITY, "up") for r in rows] + [OutboxEntry("r0", 1, PROVINCE, "up2")]
    RecordStore(engine).append(rows, outbox=entries, now_ms=now_ms)
    return rows


def test_claim_returns_due_rows_in_order_with_their_signed_bytes(engine: Engine, make_row: MakeRow) -> None:
    rows = _seed(engine, make_row)
    box = Outbox(engine)
    items = box.claim(CITY, 3, now_ms=1_000)
    assert [i.record_id for i in items] == ["r0", "r1", "r2"]
    assert [i.id for i in items] == sorted(i.id for i in items)
    assert items[0].signed == rows[0].signed and items[0].revision == 1 and items[0].rule_id == "up"
    assert all(i.attempts == 1 and i.destination == CITY for i in items)
    assert box.claim(CITY, 10, now_ms=999) == []  # nothing is due before it was created


def test_claimed_rows_are_leased_not_handed_out_twice(engine: Engine, make_row: MakeRow) -> None:
    _seed(engine, make_row)
    box = Outbox(engine, lease_ms=30_000)
    first = box.claim(CITY, 3, now_ms=2_000)
    second = box.claim(CITY, 10, now_ms=2_000)
    assert {i.id for i in first}.isdisjoint(i.id for i in second) and len(second) == 2
    # A claimer that died: its rows come back once the lease has run out, counted as a new attempt.
    again = box.claim(CITY, 10, now_ms=2_000 + 30_000)
    assert {i.id for i in again} == {i.id for i in first + second}
    assert all(i.attempts == 2 for i in again)


def test_done_retry_and_depth(engine: Engine, make_row: MakeRow) -> None:
    _seed(engine, make_row)
    box = Outbox(engine)
    assert box.depth() == 6 and box.depth(CITY) == 5 and box.depth(PROVINCE) == 1
    items = box.claim(CITY, 5, now_ms=1_000)
    assert box.done([items[0].id, items[1].id]) == 2
    assert box.depth(CITY) == 3
    assert box.retry([items[2].id], "E_PEER_UNAVAILABLE: down", next_attempt_ms=50_000) == 1
    assert box.claim(CITY, 5, now_ms=49_999) == []  # the others are still leased until 61_000
    later = box.claim(CITY, 5, now_ms=50_000)
    assert [(i.id, i.attempts) for i in later] == [(items[2].id, 2)]
    assert box.done([items[0].id]) == 0  # already done: not counted again


def test_dead_letters_and_replay(engine: Engine, make_row: MakeRow) -> None:
    _seed(engine, make_row)
    box = Outbox(engine)
    items = box.claim(CITY, 2, now_ms=1_000)
    assert box.dead([i.id for i in items], "E_SIGNER_UNTRUSTED", "refused by city", now_ms=7) == 2
    assert box.depth(CITY) == 3
    letters = box.dead_letters("outbox")
    assert [(d.record_id, d.destination_or_sender, d.reason, d.created_at_ms, d.replayed_at_ms) for d in letters] == [
        ("r0", CITY, "E_SIGNER_UNTRUSTED", 7, None), ("r1", CITY, "E_SIGNER_UNTRUSTED", 7, None)]
    status = box.status()
    assert status[CITY] == {"pending": 3, "dead": 2, "oldest_ms": 1_000}
    assert status[PROVINCE] == {"pending": 1, "dead": 0, "oldest_ms": 1_000}

    assert box.replay([letters[0].id], now_ms=9) == 1
    assert box.replay([letters[0].id], now_ms=10) == 0  # replayed once only
    assert box.depth(CITY) == 4
    back = [i for i in box.claim(CITY, 10, now_ms=9) if i.record_id == "r0"]
    assert len(back) == 1 and back[0].attempts == 1  # a fresh start
    assert box.dead_letters("outbox", include_replayed=False)[0].record_id == "r1"
    assert box.dead_letters("outbox")[0].replayed_at_ms == 9


def test_inbound_dead_letters_keep_the_payload(engine: Engine) -> None:
    inbound = InboundDeadLetters(engine)
    letter_id = inbound.add("district:330106", "E_SIGNATURE_INVALID", "bad chain", b"\x01\x02",
                            record_id="r9", revision=2, now_ms=5)
    got = inbound.letters()
    assert [(d.id, d.kind, d.payload, d.revision) for d in got] == [(letter_id, "inbound", b"\x01\x02", 2)]
    assert Outbox(engine).dead_letters("outbox") == []
    assert Outbox(engine).replay([letter_id]) == 0  # not an outbox letter
    assert inbound.mark_replayed([letter_id], now_ms=6) == 1
    assert inbound.letters() == [] and inbound.letters(include_replayed=True)[0].replayed_at_ms == 6


def test_purge_done_keeps_pending_rows(engine: Engine, make_row: MakeRow) -> None:
    _seed(engine, make_row)
    box = Outbox(engine)
    box.done([i.id for i in box.claim(CITY, 2, now_ms=1_000)])
    assert box.purge_done(before_ms=1_001) == 2
    assert box.depth() == 4


def test_concurrent_claimers_never_share_a_row(engine: Engine, make_row: MakeRow) -> None:
    rows = [make_row(f"r{i:04d}") for i in range(400)]
    RecordStore(engine).append(rows, outbox=[OutboxEntry(r.record_id, 1, CITY, "up") for r in rows], now_ms=1)
    boxes = [Outbox(engine) for _ in range(4)]
    start = threading.Barrier(len(boxes))
    claimed: list[list[int]] = [[] for _ in boxes]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        start.wait()
        try:
            while items := boxes[i].claim(CITY, 7, now_ms=10):
                claimed[i].extend(item.id for item in items)
                boxes[i].done([item.id for item in items])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(boxes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    every = [x for ids in claimed for x in ids]
    assert len(every) == len(set(every)) == 400
    assert boxes[0].depth() == 0


def test_the_same_record_refused_again_while_its_letter_waits_is_one_letter(engine: Engine) -> None:
    inbound = InboundDeadLetters(engine)
    first = inbound.add("district:330106", "E_SIGNATURE_INVALID", "bad chain", b"x", record_id="r1", revision=2)
    again = inbound.add("district:330106", "E_SIGNATURE_INVALID", "bad chain", b"x", record_id="r1", revision=2)
    other = inbound.add("district:330106", "E_ITEM_NOT_ALLOWED", "not allowed", b"x", record_id="r1", revision=2)
    assert again == first and other != first
    inbound.mark_replayed([first])
    assert inbound.add("district:330106", "E_SIGNATURE_INVALID", "bad chain", b"x", record_id="r1",
                       revision=2) not in (first, other)  # refused again after a replay: a new letter


def test_resuming_makes_leased_and_waiting_rows_due_now_and_leaves_the_rest(engine: Engine, make_row: MakeRow) -> None:
    _seed(engine, make_row)
    box = Outbox(engine, lease_ms=60_000)
    leased = box.claim(CITY, 2, now_ms=2_000)  # held by a run that was then killed
    waiting = box.claim(CITY, 1, now_ms=2_000)
    box.retry([waiting[0].id], "E_PEER_UNAVAILABLE: down", next_attempt_ms=900_000)
    box.done([i.id for i in box.claim(PROVINCE, 1, now_ms=2_000)])
    assert box.resume(now_ms=3_000) == 3  # the two leased and the one waiting; done rows stay done
    due = box.claim(CITY, 10, now_ms=3_000)
    assert {i.id for i in due} == {i.id for i in leased + waiting} | {i.id for i in due if i.attempts == 1}
    assert len(due) == 5 and box.depth(PROVINCE) == 0
