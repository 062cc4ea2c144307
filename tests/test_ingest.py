"""``node/ingest.py``: committing prepared batches while other writers store revisions too."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from node.app import Node, build_node
from node.config import load_config
from node.errors import StoreError
from node.provisioning import init_node
from node.records import decode_body
from node.sampledata import penalty_rows
from node.tabular import SourceRow

UNIT = "11330102MB0000019G"


@pytest.fixture
def node(tmp_path: pathlib.Path) -> Iterator[Node]:
    """A department node on SQLite, its source unit UNIT."""
    n = build_node(load_config(init_node(tmp_path / "n", node_id="dept:330102:scjgj", level="department", unit=UNIT)))
    try:
        yield n
    finally:
        n.close()


def test_a_revision_another_writer_stored_first_refuses_the_batch_instead_of_dropping_the_change(
        node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    item = node.catalog.item("admin_penalty")
    row = dict(next(iter(penalty_rows(1, source_unit=UNIT, seed=5))))
    [first] = node.ingest.ingest_batch(item, [SourceRow(2, row)], source="a.csv", batch_id="b1")
    assert (first.outcome, first.revision) == ("accepted", 1)

    ours, theirs = {**row, "CF_NR_FK": "7"}, {**row, "CF_NR_FK": "8"}
    real_heads = node.store.records.heads
    raced: list[bool] = []

    def heads_then_another_writer(ids: Any) -> Any:
        seen = real_heads(ids)
        if not raced:  # between our read of the heads and our commit, revision 2 is stored
            raced.append(True)
            [other] = node.ingest.ingest_batch(item, [SourceRow(2, theirs)], source="b.csv", batch_id="b2")
            assert (other.outcome, other.revision) == ("accepted", 2)
        return seen

    monkeypatch.setattr(node.store.records, "heads", heads_then_another_writer)
    with pytest.raises(StoreError) as race:
        node.ingest.ingest_batch(item, [SourceRow(2, ours)], source="a.csv", batch_id="b3",
                                 meta={"adapter.x.position": "after-row-2"})
    assert race.value.code == "E_REVISION_RACE" and race.value.retryable
    assert node.store.meta.get("adapter.x.position") is None  # the position did not move past it
    [again] = node.ingest.ingest_batch(item, [SourceRow(2, ours)], source="a.csv", batch_id="b4")
    assert (again.outcome, again.revision) == ("accepted", 3)


def test_problems_of_a_row_naming_no_unit_are_the_nodes_units_and_close_when_it_is_fixed(
        node: Node) -> None:
    item = node.catalog.item("admin_penalty")
    row = dict(next(iter(penalty_rows(1, source_unit=UNIT, seed=5))))
    bare = {k: v for k, v in row.items() if k not in ("CF_SJLYDM", "CF_SJLY")}
    [refused] = node.ingest.ingest_batch(item, [SourceRow(7, bare)], source="m_types", batch_id="b1")
    assert refused.outcome == "rejected"
    listed = node.store.rejections.list_rejections(UNIT)  # what `rejections list --source UNIT` shows
    assert {r.field for r in listed} == {"CF_SJLYDM", "CF_SJLY"}
    [fixed] = node.ingest.ingest_batch(item, [SourceRow(7, row)], source="m_types", batch_id="b2")
    assert fixed.outcome == "accepted"
    assert node.store.rejections.list_rejections(UNIT) == []


def test_a_fact_given_twice_with_other_values_stays_refused_until_the_source_says_which(
        node: Node) -> None:
    item = node.catalog.item("admin_penalty")
    row = dict(next(iter(penalty_rows(1, source_unit=UNIT, seed=5))))
    other = {**row, "CF_NR": "罚款人民币伍仟元。"}  # the same decision, another content
    out = node.ingest.ingest_batch(item, [SourceRow(2, row), SourceRow(3, other)], source="f.csv", batch_id="b1")
    assert [o.outcome for o in out] == ["accepted", "rejected"]
    [open_] = node.store.rejections.list_rejections(UNIT)  # on the worklist, not closed by row 2
    assert (open_.code, open_.row) == ("E_DUPLICATE_KEY", 3)
    # The source says which: the other content, reported again, is the record's next revision.
    [fixed] = node.ingest.ingest_batch(item, [SourceRow(3, other)], source="f.csv", batch_id="b2")
    assert (fixed.outcome, fixed.revision) == ("accepted", 2)
    assert node.store.rejections.list_rejections(UNIT) == []


def test_an_individual_business_reported_under_its_uscc_at_last_retires_its_stand_in_record(node: Node) -> None:
    from node.identifiers import make_uscc

    item = node.catalog.item("admin_penalty")
    base = dict(next(iter(penalty_rows(1, source_unit=UNIT, seed=5))))
    stand_in = {**base, "CF_XDR_LB": "个体工商户", "CF_XDR_SHXYM": "00000000000000000X", "CF_XDR_GSZC": "330102600123456",
                "CF_FRDB": "", "CF_FR_ZJLX": "", "CF_FR_ZJHM": ""}
    [old] = node.ingest.ingest_batch(item, [SourceRow(2, stand_in)], source="a.csv", batch_id="b1")
    assert old.outcome == "accepted", old.problems
    uscc = make_uscc("9", "2", "330102", "MA2C0002")
    [new] = node.ingest.ingest_batch(item, [SourceRow(2, {**stand_in, "CF_XDR_SHXYM": uscc})], source="a.csv",
                                     batch_id="b2")
    assert new.outcome == "accepted" and new.record_id != old.record_id
    head = node.store.records.get(old.record_id)
    assert head is not None and (head.revision, head.status) == (2, "revoked")
    assert new.record_id in decode_body(head.body).reason
    assert [r.status for r in node.store.records.current_for_subject(uscc)] == ["active"]
    # Reported again: a duplicate, and nothing more to retire.
    [again] = node.ingest.ingest_batch(item, [SourceRow(2, {**stand_in, "CF_XDR_SHXYM": uscc})], source="a.csv",
                                       batch_id="b3")
    assert again.outcome == "duplicate" and node.store.records.get(old.record_id).revision == 2  # type: ignore[union-attr]


def test_a_file_import_takes_a_batch_again_when_another_writer_numbered_its_revision_first(
        node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    item = node.catalog.item("admin_penalty")
    row = dict(next(iter(penalty_rows(1, source_unit=UNIT, seed=6))))
    [first] = node.ingest.ingest_batch(item, [SourceRow(2, row)], source="a.csv", batch_id="b1")
    ours, theirs = {**row, "CF_NR_FK": "7"}, {**row, "CF_NR_FK": "8"}
    real_heads = node.store.records.heads
    raced: list[bool] = []

    def heads_then_another_writer(ids: Any) -> Any:
        seen = real_heads(ids)
        if not raced:
            raced.append(True)
            node.ingest.ingest_batch(item, [SourceRow(2, theirs)], source="b.csv", batch_id="b2")
        return seen

    monkeypatch.setattr(node.store.records, "heads", heads_then_another_writer)
    summary = node.ingest.import_rows(item, [SourceRow(2, ours)], source="a.csv")
    assert (summary.accepted, summary.rejected) == (1, 0)
    head = node.store.records.heads([first.record_id])[first.record_id]
    assert head.revision == 3  # ours, on top of the other writer's revision 2: neither lost
