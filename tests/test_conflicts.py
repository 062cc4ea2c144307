"""Two source units disagreeing about one fact: flagged, kept, resolved (real store, real ingest)."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import subprocess
import sys
import threading
from typing import Any

import pytest
from sqlalchemy import func, select, text

from node import identity
from node.app import Node, build_node
from node.config import load_config
from node.conflicts import Conflicts, Fact, differences, observe, substance
from node.errors import UsageError
from node.provisioning import init_node
from node.sampledata import penalty_rows, unit_uscc
from node.store.tables import conflicts, facts
from node.tabular import SourceRow
from node.values import CHINA

UNIT_A = unit_uscc("330100", "MB000101")
UNIT_B = unit_uscc("330102", "MB000202")
REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return identity.init_ca(tmp_path_factory.mktemp("ca"))


def make(tmp_path: pathlib.Path, ca_dir: pathlib.Path, level: str = "city") -> tuple[pathlib.Path, Node]:
    node_id = "city:330100" if level == "city" else "dept:330102:scjgj"
    cfg = init_node(tmp_path / level, node_id=node_id, level=level, unit=UNIT_B if level == "department" else "",
                    ca_dir=ca_dir)
    return cfg, build_node(load_config(cfg))


def reported_by(row: dict[str, str], unit: str, **changes: str) -> dict[str, str]:
    return {**row, "CF_SJLYDM": unit, "CF_SJLY": f"单位{unit[-4:]}", **changes}


def ingest(node: Node, rows: list[dict[str, str]], source: str = "test") -> list[Any]:
    item = node.catalog.item("admin_penalty")
    return node.ingest.ingest_batch(item, [SourceRow(i + 1, r) for i, r in enumerate(rows)], source=source,
                                    batch_id=source)


def fined(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [r for r in rows if r.get("CF_NR_FK")]


def test_a_second_unit_with_another_amount_opens_a_conflict_and_both_records_stay(tmp_path, ca_dir):
    _cfg, city = make(tmp_path, ca_dir)
    base = fined(list(penalty_rows(20, source_unit=UNIT_A)))[:3]
    a = [reported_by(r, UNIT_A) for r in base]
    b = [reported_by(base[0], UNIT_B, CF_NR_FK="99.99"),  # disagrees on the amount
         reported_by(base[1], UNIT_B),  # agrees
         reported_by(base[2], UNIT_B, CF_SY="经查，另一种措辞。")]  # only free text differs: no conflict
    assert {o.outcome for o in ingest(city, a, "a.csv")} == {"accepted"}
    out_b = ingest(city, b, "b.csv")
    assert {o.outcome for o in out_b} == {"accepted"}
    conflicts = Conflicts(city.store.engine, actor=city.config.id)
    found = conflicts.list_conflicts()
    assert len(found) == 1
    c = found[0]
    assert (c.source_unit_a, c.source_unit_b) == (UNIT_A, UNIT_B)
    assert c.differences == {"CF_NR_FK": [base[0]["CF_NR_FK"], "99.99"]}
    assert c.record_b == out_b[0].record_id
    assert city.store.records.get(c.record_a) is not None and city.store.records.get(c.record_b) is not None
    # Re-importing the same reports changes nothing: no second conflict.
    ingest(city, a, "a.csv")
    ingest(city, b, "b.csv")
    assert len(conflicts.list_conflicts(state=None)) == 1
    city.close()


def test_a_revision_that_agrees_closes_the_conflict_as_agreed(tmp_path, ca_dir):
    _cfg, city = make(tmp_path, ca_dir)
    base = fined(list(penalty_rows(10, source_unit=UNIT_A)))[0]
    ingest(city, [reported_by(base, UNIT_A)])
    ingest(city, [reported_by(base, UNIT_B, CF_JDRQ="2024-01-02", CF_NR_FK="1.00")])
    conflicts = Conflicts(city.store.engine, actor=city.config.id)
    (c,) = conflicts.list_conflicts()
    assert set(c.differences) == {"CF_JDRQ", "CF_NR_FK"}
    ingest(city, [reported_by(base, UNIT_B, CF_NR_FK="1.00")])  # B corrects the date only
    (c,) = conflicts.list_conflicts()
    assert set(c.differences) == {"CF_NR_FK"} and c.revision_b == 2
    ingest(city, [reported_by(base, UNIT_B)])  # and then the amount: the units agree
    assert conflicts.list_conflicts() == []
    (closed,) = conflicts.list_conflicts(state="agreed")
    assert closed.resolved_at_ms is not None
    city.close()


def test_two_units_disagreeing_inside_one_batch_are_caught(tmp_path, ca_dir):
    _cfg, city = make(tmp_path, ca_dir)
    base = fined(list(penalty_rows(10, source_unit=UNIT_A)))[0]
    ingest(city, [reported_by(base, UNIT_A), reported_by(base, UNIT_B, CF_NR_FK="7.00")])
    assert len(Conflicts(city.store.engine, actor=city.config.id).list_conflicts()) == 1
    city.close()


def test_resolve_via_the_cli_is_recorded_and_audited(tmp_path, ca_dir):
    cfg, city = make(tmp_path, ca_dir)
    base = fined(list(penalty_rows(10, source_unit=UNIT_A)))[0]
    ingest(city, [reported_by(base, UNIT_A)])
    ingest(city, [reported_by(base, UNIT_B, CF_NR_FK="3.00")])
    city.close()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "node", "--config", str(cfg), *args], capture_output=True,
                              text=True, cwd=REPO, check=False)

    listed = cli("conflicts", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (c,) = json.loads(listed.stdout)
    refused = cli("conflicts", "resolve", str(c["id"]), "--keep", "nonsense", "--note", "x")
    assert refused.returncode == 2 and "--keep must be one of" in refused.stderr
    done = cli("conflicts", "resolve", str(c["id"]), "--keep", c["record_a"], "--note", "决定书原件核对：以A为准",
               "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"] == "resolved"
    assert json.loads(cli("conflicts", "list", "--json").stdout) == []
    everything = json.loads(cli("conflicts", "list", "--all", "--json").stdout)
    assert everything[0]["kept_record_id"] == c["record_a"] and everything[0]["resolved_by"] == "city:330100"
    again = cli("conflicts", "resolve", str(c["id"]), "--keep", c["record_a"], "--note", "again")
    assert again.returncode == 1 and "E_CONFLICT_CLOSED" in again.stderr
    node = build_node(load_config(cfg))
    actions = [e.action for e in node.store.audit.iter()]
    assert "conflict.resolve" in actions
    node.close()


def test_resolve_needs_a_note(tmp_path, ca_dir):
    _cfg, city = make(tmp_path, ca_dir)
    with pytest.raises(UsageError, match="note"):
        Conflicts(city.store.engine, actor="x").resolve(1, keep="r", note=" ")
    city.close()


def test_a_department_reporting_for_itself_keeps_no_fact_index(tmp_path, ca_dir):
    _cfg, dept = make(tmp_path, ca_dir, level="department")
    ingest(dept, [reported_by(r, UNIT_B) for r in penalty_rows(5, source_unit=UNIT_B)])
    with dept.store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(facts)).scalar_one() == 0
    dept.close()


def test_substance_compares_structured_fields_both_reports_fill(tmp_path, ca_dir):
    _cfg, city = make(tmp_path, ca_dir)
    item = city.catalog.item("admin_penalty")
    a = substance(item, [("CF_WSH", "x"), ("CF_SJLYDM", UNIT_A), ("CF_NR_FK", "1.5"), ("CF_SY", "text"),
                         ("CF_JDRQ", "2024-01-01")])
    b = substance(item, [("CF_WSH", "x"), ("CF_SJLYDM", UNIT_B), ("CF_SY", "other"), ("CF_JDRQ", "2024-01-01")])
    assert a == {"CF_NR_FK": "1.5", "CF_JDRQ": "2024-01-01"}
    assert differences(a, b) == {}  # an omitted amount is not a contradiction
    city.close()


def test_a_redelivered_or_late_older_report_neither_reopens_nor_overwrites(tmp_path, ca_dir):
    from node.conflicts import Fact, observe

    _cfg, city = make(tmp_path, ca_dir)
    conflicts = Conflicts(city.store.engine, actor=city.config.id)

    def seen(*facts: Fact) -> None:
        with city.store.engine.begin() as conn:
            observe(conn, list(facts))

    a1 = Fact("admin_penalty", "罚1\x1f91330100MA27XL0E2K", UNIT_A, "ra", 1, {"CF_NR_FK": "1"})
    b1 = Fact("admin_penalty", "罚1\x1f91330100MA27XL0E2K", UNIT_B, "rb", 1, {"CF_NR_FK": "2"})
    b2 = Fact("admin_penalty", "罚1\x1f91330100MA27XL0E2K", UNIT_B, "rb", 2, {"CF_NR_FK": "1"})
    seen(a1, b1)
    (c,) = conflicts.list_conflicts()
    conflicts.resolve(c.id, keep="ra", note="checked with both units")
    seen(b1)  # the same report redelivered: the resolved conflict stays resolved
    assert conflicts.list_conflicts() == []
    seen(b2)  # B agrees now
    seen(b1)  # and its older revision arrives late: nothing reopens, the newer substance stays
    assert conflicts.list_conflicts() == []
    with city.store.engine.connect() as conn:
        kept = conn.execute(select(facts.c.revision).where(facts.c.source_unit == UNIT_B)).scalar_one()
    assert kept == 2
    city.close()


def test_a_correction_answered_at_the_node_holding_the_conflict_closes_it(tmp_path, ca_dir):
    """Both units report to the city itself; B's source answers an objection there by correcting the
    amount to A's. Its revision is made by the city (not received from a child) and must count as B's
    report as much as one arriving from below."""
    cfg, city = make(tmp_path, ca_dir)
    decided = (dt.datetime.now(CHINA).date() - dt.timedelta(days=10)).isoformat()  # in its disclosure period
    base = {**fined(list(penalty_rows(10, source_unit=UNIT_A)))[0], "CF_JDRQ": decided, "CF_YXQ": "2099-12-31"}
    ingest(city, [reported_by(base, UNIT_A)])
    [b] = ingest(city, [reported_by(base, UNIT_B, CF_NR_FK="3.00")])
    head = city.store.records.get(b.record_id)
    assert head is not None
    city.close()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "node", "--config", str(cfg), *args, "--json"],
                              capture_output=True, text=True, cwd=REPO, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    (opened,) = json.loads(cli("conflicts", "list").stdout)
    cli("objection", "file", b.record_id, "--by", head.subject_code, "--reason", "罚款金额有误")
    answered = cli("objection", "answer", f"{b.record_id}@{head.revision + 1}", "correct",  # the 存疑 mark's
                   "--field", f"CF_NR_FK={base['CF_NR_FK']}", "--note", "核对决定书原件，金额更正")
    assert json.loads(answered.stdout)["case"]["outcome"] == "corrected"
    assert json.loads(cli("conflicts", "list").stdout) == []
    (closed,) = json.loads(cli("conflicts", "list", "--all").stdout)
    assert (closed["id"], closed["state"]) == (opened["id"], "agreed")


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_units_reporting_one_fact_differently_at_the_same_moment_open_a_conflict(engine) -> None:
    # Two children's batches committing at once: on PostgreSQL neither saw the other's uncommitted
    # fact, both were kept, and the disagreement was never flagged (SQLite's write lock orders them).
    def fact(unit: str, amount: str) -> Fact:
        return Fact("admin_penalty", "杭上市监罚〔2026〕7号", unit, f"admin_penalty-{unit[-6:]}", 1, {"CF_NR_FK": amount})

    first = engine.connect()
    first.begin()
    observe(first, [fact(UNIT_A, "1.5")])
    errors: list[BaseException] = []

    def second() -> None:
        try:
            with engine.begin() as conn:
                observe(conn, [fact(UNIT_B, "2.5")])
        except BaseException as exc:  # surfaced in the assertion below
            errors.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    with engine.connect() as watcher:  # until the second has observed, or waits to
        while thread.is_alive() and not watcher.execute(text(
                "select count(*) from pg_stat_activity where datname = current_database() "
                "and wait_event_type = 'Lock'")).scalar():
            watcher.rollback()
    first.commit()
    first.close()
    thread.join()
    assert errors == []
    with engine.connect() as conn:
        opened = conn.execute(select(conflicts.c.source_unit_a, conflicts.c.source_unit_b, conflicts.c.state)).all()
    assert [tuple(row) for row in opened] == [(UNIT_A, UNIT_B, "open")]
