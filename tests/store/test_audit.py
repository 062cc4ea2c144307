"""Hash-chained logs: every kind of tampering is reported, on real SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import itertools
import threading

import pytest
from sqlalchemy import Engine, text

from node.store import AuditEvent, AuditLog, QueryLog, QueryLogEntry
from node.store.audit import GENESIS, HashChainLog
from node.store.tables import audit_log


def _fill(engine: Engine, n: int = 6) -> AuditLog:
    log = AuditLog(engine)
    for i in range(1, n + 1):
        log.record(AuditEvent("city:330100", "import", f"batch-{i}", {"n": i, "名": "值"}), at_ms=1000 + i)
    return log


def _sql(engine: Engine, statement: str, **params: object) -> None:
    with engine.begin() as conn:
        conn.execute(text(statement), params)


def test_intact_log_verifies_and_reads_back(engine: Engine) -> None:
    log = _fill(engine)
    assert log.verify() == []
    entries = list(log.iter())
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5, 6]
    assert entries[0].detail == {"n": 1, "名": "值"} and entries[0].at_ms == 1001
    assert [e.seq for e in log.iter(after_seq=4)] == [5, 6]
    raw = list(log.chain.iter(engine))
    assert raw[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(raw))


def test_empty_log_verifies(engine: Engine) -> None:
    assert AuditLog(engine).verify() == []
    assert QueryLog(engine).verify() == []


def test_edited_detail_is_reported_at_its_seq(engine: Engine) -> None:
    log = _fill(engine)
    _sql(engine, "UPDATE audit_log SET detail = :d WHERE seq = 3", d='{"n":999}')
    problems = log.verify()
    assert [p.seq for p in problems] == [3]
    assert "edited" in problems[0].reason


def test_edit_with_recomputed_hash_breaks_the_next_link(engine: Engine) -> None:
    log = _fill(engine)
    chain = log.chain
    row = next(e for e in chain.iter(engine) if e.seq == 3)
    forged = dict(row.values, detail='{"n":999}')
    new_hash = chain.digest(row.prev_hash, 3, row.at_ms, [forged[f] for f in chain.fields])
    _sql(engine, "UPDATE audit_log SET detail = :d, hash = :h WHERE seq = 3", d='{"n":999}', h=new_hash)
    assert [p.seq for p in log.verify()] == [4]


def test_deleted_middle_row_is_reported(engine: Engine) -> None:
    log = _fill(engine)
    _sql(engine, "DELETE FROM audit_log WHERE seq = 3")
    problems = log.verify()
    assert problems and problems[0].seq == 3
    assert "missing" in problems[0].reason


def test_swapped_rows_are_reported(engine: Engine) -> None:
    log = _fill(engine)
    # Move row 4's content (and hashes) to seq 3 and vice versa, keeping the seq numbers in place.
    cols = "at_ms, actor, action, subject, detail, prev_hash, hash"
    with engine.begin() as conn:
        r3 = conn.execute(text(f"SELECT {cols} FROM audit_log WHERE seq = 3")).one()._asdict()
        r4 = conn.execute(text(f"SELECT {cols} FROM audit_log WHERE seq = 4")).one()._asdict()
        assignments = ", ".join(f"{c} = :{c}" for c in r3)
        conn.execute(text(f"UPDATE audit_log SET {assignments} WHERE seq = 3"), r4)
        conn.execute(text(f"UPDATE audit_log SET {assignments} WHERE seq = 4"), r3)
    assert {p.seq for p in log.verify()} >= {3, 4}


def test_truncated_tail_is_reported(engine: Engine) -> None:
    log = _fill(engine)
    _sql(engine, "DELETE FROM audit_log WHERE seq >= 5")
    problems = log.verify()
    assert [p.seq for p in problems] == [5]
    assert "truncated" in problems[0].reason


def test_appending_after_truncation_keeps_the_evidence(engine: Engine) -> None:
    log = _fill(engine)
    _sql(engine, "DELETE FROM audit_log WHERE seq >= 5")
    log.record(AuditEvent("city:330100", "import", "later"))
    assert [e.seq for e in log.iter()][-1] == 7  # continues after the anchored head
    problems = log.verify()
    assert problems and problems[0].seq == 5 and "missing" in problems[0].reason


def test_deleted_head_anchor_is_reported(engine: Engine) -> None:
    log = _fill(engine)
    _sql(engine, "DELETE FROM meta WHERE key = 'chain:audit_log'")
    assert [p.reason for p in log.verify()] == ["the chain head is missing from meta"]


def test_undecodable_entry_writes_nothing(engine: Engine) -> None:
    log = _fill(engine, 2)
    with pytest.raises(TypeError):
        log.record(AuditEvent("a", "b", "c"), AuditEvent("a", "b", "c", {"x": {1, 2}}))
    assert [e.seq for e in log.iter()] == [1, 2] and log.verify() == []


def test_query_log_round_trip_and_tamper(engine: Engine) -> None:
    qlog = QueryLog(engine)
    qlog.record(QueryLogEntry("gov:330100:fgw", "gov", "审批核查", "91330100MA0000001X",
                              ("admin_penalty", "admin_license"), 3, {"region": "330100"}, at_ms=5))
    qlog.record(QueryLogEntry("agency:1", "agency", "", "91330100MA0000002X", (), 0))
    got = list(qlog.iter())
    assert got[0].items == ("admin_penalty", "admin_license") and got[0].result_count == 3 and got[0].seq == 1
    assert got[0].purpose == "审批核查" and got[0].detail == {"region": "330100"} and got[0].at_ms == 5
    assert qlog.verify() == []
    _sql(engine, "UPDATE query_log SET result_count = 0 WHERE seq = 1")
    assert [p.seq for p in qlog.verify()] == [1]


def test_concurrent_appenders_keep_one_chain(engine: Engine) -> None:
    logs = [AuditLog(engine) for _ in range(4)]
    start = threading.Barrier(len(logs))
    errors: list[BaseException] = []

    def run(log: AuditLog, i: int) -> None:
        start.wait()
        try:
            for j in range(25):
                log.record(AuditEvent(f"t{i}", "act", f"{j}"))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(log, i)) for i, log in enumerate(logs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [e.seq for e in logs[0].iter()] == list(range(1, 101))
    assert logs[0].verify() == []


def test_generic_chain_over_another_field_set(engine: Engine) -> None:
    chain = HashChainLog(audit_log, ("actor", "action", "subject", "detail"))
    with engine.begin() as conn:
        assert chain.append(conn, [{"at_ms": 1, "actor": "a", "action": "b", "subject": "c", "detail": "{}"}]) == [1]
    assert chain.head(engine)[0] == 1
    assert chain.verify(engine) == []


def test_an_entry_hash_is_the_documented_encoding_so_existing_chains_keep_verifying() -> None:
    # Stored logs hold these hashes: the encoding (type tag, big-endian length or value) never changes.
    chain = HashChainLog(audit_log, ("actor", "n"))
    encoded = (b"i" + (7).to_bytes(8, "big") + b"i" + (1000).to_bytes(8, "big")
               + b"s" + len("城市".encode()).to_bytes(4, "big") + "城市".encode() + b"i" + (-2).to_bytes(8, "big", signed=True))
    assert chain.digest(GENESIS, 7, 1000, ["城市", -2]) == hashlib.sha256(GENESIS + encoded).digest()
    with pytest.raises(TypeError):
        chain.digest(GENESIS, 7, 1000, ["城市", True])
