"""Conflicts between sources as revisions move both ways (seed 003 篇1 第十二条).

A real city, district and two departments with different source units (dev CA, SQLite stores),
records moved by hand: up through the Inbox, down through the downward channel.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from node.app import Node, build_node
from node.config import load_config
from node.conflicts import Conflicts
from node.demo.layout import FederationLayout, NodePlan, provision
from node.downward import Downward
from node.forwarding import HopSigner
from node.records import pb
from node.sampledata import penalty_rows, unit_uscc, write_csv
from node.tabular import SourceRow
from node.transport.wire import fpb, submit_request

CITY, DISTRICT = "city:330100", "district:330102"
DEPT_A, DEPT_B = "dept:330102:scjgj", "dept:330102:swj"
UNIT_A, UNIT_B = unit_uscc("330102", "MB000001"), unit_uscc("330102", "MB000002")


@pytest.fixture
def tree(tmp_path: pathlib.Path) -> Iterator[dict[str, Node]]:
    layout = FederationLayout((NodePlan(CITY), NodePlan(DISTRICT, CITY), NodePlan(DEPT_A, DISTRICT, UNIT_A),
                               NodePlan(DEPT_B, DISTRICT, UNIT_B)))
    fed = provision(tmp_path, layout)
    nodes = {nid: build_node(load_config(cfg)) for nid, cfg in fed.configs.items()}
    try:
        yield nodes
    finally:
        for node in nodes.values():
            node.close()


def fact(unit: str, **changes: str) -> dict[str, str]:
    """One fined penalty, as ``unit`` reports it."""
    row = next(r for r in penalty_rows(10, source_unit=UNIT_A, seed=7) if r.get("CF_NR_FK"))
    return {**row, "CF_SJLYDM": unit, "CF_SJLY": f"单位{unit[-4:]}", **changes}


def report(nodes: dict[str, Node], dept: str, row: dict[str, str], tmp: pathlib.Path) -> str:
    """``dept`` imports ``row``; it goes up to the city. Returns the record id."""
    csv = tmp / f"{dept.replace(':', '_')}-{len(list(tmp.iterdir()))}.csv"
    write_csv(csv, nodes[dept].catalog.item("admin_penalty"), [row])
    nodes[dept].import_file(csv, "admin_penalty")
    up(nodes, dept, DISTRICT)
    up(nodes, DISTRICT, CITY)
    (rid,) = {r.record_id for r in nodes[dept].store.records.iter_revisions()
              if r.source_unit == row["CF_SJLYDM"]}
    return rid


def up(nodes: dict[str, Node], child: str, parent: str) -> None:
    items = nodes[child].store.outbox.claim(parent, 100, 10**13)
    if not items:
        return
    payload, certs = HopSigner(nodes[child].signer, nodes[child].trust).prepare(items)
    nodes[parent].inbox.learn_certificates(certs)
    request = pb.SubmitRequest.FromString(submit_request(payload))
    assert {r.outcome for r in nodes[parent].inbox.receive(request.records, sender=child)} == {"accepted"}
    nodes[child].store.outbox.done([i.id for i in items])


def down(nodes: dict[str, Node], parent: str, child: str) -> None:
    items = nodes[parent].store.outbox.claim(child, 100, 10**13)
    payload, certs = HopSigner(nodes[parent].signer, nodes[parent].trust).prepare(items)
    nodes[parent].store.outbox.done([i.id for i in items])
    for p in payload:
        assert "stored" in Downward(nodes[child]).apply(parent, fpb.DownMessage(records=submit_request([p], certs)))


def conflicts(node: Node, state: str | None = "open") -> list[tuple[str, str, str]]:
    found = Conflicts(node.store.engine, actor=node.config.id).list_conflicts(state=state)
    return [(c.record_a, c.record_b, c.state) for c in found]


def two_reports(tree: dict[str, Node], tmp_path: pathlib.Path, **b_changes: str) -> tuple[str, str]:
    csvs = tmp_path / "csv"
    csvs.mkdir(exist_ok=True)
    return report(tree, DEPT_A, fact(UNIT_A), csvs), report(tree, DEPT_B, fact(UNIT_B, **b_changes), csvs)


def test_a_record_its_source_revokes_closes_its_conflict_as_revoked(tree: dict[str, Node],
                                                                    tmp_path: pathlib.Path) -> None:
    a, b = two_reports(tree, tmp_path, CF_NR_FK="99.99")
    assert conflicts(tree[CITY]) == [(a, b, "open")] and conflicts(tree[DISTRICT]) == [(a, b, "open")]
    Downward(tree[DEPT_B]).revise(b, status="revoked", reason="撤销：金额录入错误")  # the source, up the tree
    up(tree, DEPT_B, DISTRICT)
    up(tree, DISTRICT, CITY)
    for nid in (CITY, DISTRICT):
        assert conflicts(tree[nid]) == [], nid
        (closed,) = Conflicts(tree[nid].store.engine, actor=nid).list_conflicts(state="revoked")
        assert (closed.record_b, closed.revision_b) == (b, 2) and b in closed.note, nid


def test_a_record_revoked_at_the_platform_closes_its_conflict_there_and_opens_none_again(
        tree: dict[str, Node], tmp_path: pathlib.Path) -> None:
    a, b = two_reports(tree, tmp_path, CF_NR_FK="99.99")
    Downward(tree[CITY]).revise(b, status="revoked", reason="撤销：金额录入错误")
    assert conflicts(tree[CITY]) == [] and conflicts(tree[CITY], "revoked")[0][:2] == (a, b)
    # A's next revision, still saying the other amount, has nothing standing to disagree with.
    csvs = tmp_path / "csv"
    report(tree, DEPT_A, fact(UNIT_A, CF_JDRQ="2024-01-03"), csvs)
    assert conflicts(tree[CITY]) == []


def test_a_revision_that_comes_down_from_the_parent_updates_the_childs_conflicts(
        tree: dict[str, Node], tmp_path: pathlib.Path) -> None:
    a, b = two_reports(tree, tmp_path, CF_NR_FK="99.99")
    Downward(tree[CITY]).revise(b, status="revoked", reason="撤销：金额录入错误")
    down(tree, CITY, DISTRICT)
    assert conflicts(tree[DISTRICT]) == []
    (closed,) = Conflicts(tree[DISTRICT].store.engine, actor=DISTRICT).list_conflicts(state="revoked")
    assert (closed.record_a, closed.record_b, closed.revision_b) == (a, b, 2)


def test_a_resolved_conflict_is_not_opened_again_by_a_revision_that_says_the_same(
        tree: dict[str, Node], tmp_path: pathlib.Path) -> None:
    a, b = two_reports(tree, tmp_path, CF_NR_FK="99.99")
    city = Conflicts(tree[CITY].store.engine, actor=CITY)
    (c,) = city.list_conflicts()
    city.resolve(c.id, keep=a, note="核对决定书原件，以A为准")
    # The record not kept changes status only (its period ends): the operator decided on exactly this.
    Downward(tree[CITY]).revise(b, status="expired", reason="公示期满")
    assert conflicts(tree[CITY]) == []
    down(tree, CITY, DISTRICT)
    down(tree, DISTRICT, DEPT_B)
    # Its source then reports another amount: a new difference, for the operator to look at again.
    report(tree, DEPT_B, fact(UNIT_B, CF_NR_FK="88.88"), tmp_path / "csv")
    (again,) = city.list_conflicts()
    assert again.id != c.id and again.differences["CF_NR_FK"][1] == "88.88"


def ingest_at(node: Node, rows: list[dict[str, str]]) -> None:
    item = node.catalog.item("admin_penalty")
    out = node.ingest.ingest_batch(item, [SourceRow(i + 1, r) for i, r in enumerate(rows)], source="t", batch_id="t")
    assert {o.outcome for o in out} == {"accepted"}


def test_three_units_disagreeing_give_one_conflict_per_pair_and_one_agreeing_closes_its_pairs(
        tree: dict[str, Node]) -> None:
    city, unit_c = tree[CITY], unit_uscc("330100", "MB000303")
    ingest_at(city, [fact(UNIT_A), fact(UNIT_B, CF_NR_FK="2.00"), fact(unit_c, CF_NR_FK="3.00")])
    found = Conflicts(city.store.engine, actor=CITY).list_conflicts()
    assert sorted((c.source_unit_a, c.source_unit_b) for c in found) == sorted(
        [(UNIT_A, UNIT_B), (UNIT_A, unit_c), (UNIT_B, unit_c)])
    ingest_at(city, [fact(unit_c, CF_NR_FK="2.00")])  # C now says what B says
    left = Conflicts(city.store.engine, actor=CITY).list_conflicts()
    assert [(c.source_unit_a, c.source_unit_b, c.differences["CF_NR_FK"][1]) for c in left] == [
        (UNIT_A, UNIT_B, "2"), (UNIT_A, unit_c, "2")]
    (agreed,) = Conflicts(city.store.engine, actor=CITY).list_conflicts(state="agreed")
    assert (agreed.source_unit_a, agreed.source_unit_b) == (UNIT_B, unit_c)


def test_a_unit_revising_its_own_record_never_conflicts_with_itself(tree: dict[str, Node]) -> None:
    city = tree[CITY]
    ingest_at(city, [fact(UNIT_A)])
    ingest_at(city, [fact(UNIT_A, CF_NR_FK="2.00", CF_JDRQ="2024-01-03")])
    ingest_at(city, [fact(UNIT_A, CF_NR_FK="3.00")])
    assert Conflicts(city.store.engine, actor=CITY).list_conflicts(state=None) == []
    assert max(r.revision for r in city.store.records.iter_revisions()) == 3  # three revisions, one record
