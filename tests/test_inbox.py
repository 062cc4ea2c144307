"""Receiving signed records from children: verify, authorise, re-check, store once, flag conflicts."""

from __future__ import annotations

import json
import pathlib

import pytest
import sqlalchemy as sa
import yaml

from node.app import build_node
from node.catalog import load_catalog
from node.config import load_config
from node.conflicts import fact_of
from node.provisioning import bundled_catalog, init_node
from node.records import pb
from node.sampledata import penalty_rows, unit_uscc
from node.tabular import SourceRow

UNIT_A = unit_uscc("330106", "MB000001")
UNIT_B = unit_uscc("330106", "MB000002")
DEPT_A, DEPT_B = "dept:330106:scjgj", "dept:330106:hbj"


@pytest.fixture
def federation(tmp_path: pathlib.Path):
    """A district with two registered department children, sharing one dev CA."""
    district_cfg = init_node(tmp_path / "district", node_id="district:330106", level="district")
    ca = tmp_path / "district" / "ca"
    a_cfg = init_node(tmp_path / "a", node_id=DEPT_A, level="department", unit=UNIT_A, ca_dir=ca)
    b_cfg = init_node(tmp_path / "b", node_id=DEPT_B, level="department", unit=UNIT_B, ca_dir=ca)
    data = yaml.safe_load(district_cfg.read_text())
    data["children"] = [{"id": DEPT_A}, {"id": DEPT_B, "units": [UNIT_B]}]
    district_cfg.write_text(yaml.safe_dump(data, allow_unicode=True))
    nodes = [build_node(load_config(p)) for p in (district_cfg, a_cfg, b_cfg)]
    yield nodes
    for n in nodes:
        n.close()


def reported(dept, unit: str, rows: list[dict[str, str]]) -> list[pb.SignedRecord]:
    """What a department holds (and would forward) after importing ``rows``."""
    item = load_catalog(bundled_catalog()).item("admin_penalty")
    dept.ingest.ingest_batch(item, [SourceRow(i + 2, r) for i, r in enumerate(rows)], source="t", batch_id="b")
    out = []
    for row in dept.store.records.iter_revisions():
        rec = pb.SignedRecord()
        rec.ParseFromString(row.signed)
        out.append(rec)
    return out


def learn(district, dept) -> None:
    assert district.inbox.learn_certificates([dept.identity.signing_cert_der]) == []


def test_records_from_a_child_are_stored_once(federation):
    district, a, _b = federation
    learn(district, a)
    records = reported(a, UNIT_A, list(penalty_rows(5, source_unit=UNIT_A, division="330106")))
    first = district.inbox.receive(records, sender=DEPT_A)
    assert [r.outcome for r in first] == ["accepted"] * 5
    again = district.inbox.receive(records, sender=DEPT_A)
    assert [r.outcome for r in again] == ["duplicate"] * 5
    with district.store.engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from record_revisions")).scalar() == 5


def test_one_flipped_byte_is_refused_and_the_rest_of_the_batch_kept(federation):
    district, a, _b = federation
    learn(district, a)
    records = reported(a, UNIT_A, list(penalty_rows(3, source_unit=UNIT_A, division="330106")))
    body = bytearray(records[1].body)
    body[-3] ^= 1
    records[1].body = bytes(body)
    outcomes = district.inbox.receive(records, sender=DEPT_A)
    assert [r.outcome for r in outcomes] == ["accepted", "rejected", "accepted"]
    assert outcomes[1].problem is not None and outcomes[1].problem.code.startswith("E_")


def test_a_node_that_is_not_a_child_is_refused(federation):
    district, a, _b = federation
    learn(district, a)
    records = reported(a, UNIT_A, list(penalty_rows(1, source_unit=UNIT_A, division="330106")))
    [receipt] = district.inbox.receive(records, sender="dept:330106:other")
    assert receipt.problem is not None and receipt.problem.code == "E_SENDER_NOT_CHILD"


def test_a_record_relayed_by_another_child_is_refused(federation):
    district, _a, b = federation
    learn(district, b)
    rows = list(penalty_rows(1, source_unit=UNIT_B, division="330106"))
    records = reported(b, UNIT_B, rows)
    assert district.inbox.receive(records, sender=DEPT_B)[0].outcome == "accepted"
    [receipt] = district.inbox.receive(records, sender=DEPT_A)  # relayed by the wrong child
    assert receipt.problem is not None and receipt.problem.code == "E_SENDER_MISMATCH"


def test_two_units_disagreeing_on_one_fact_are_flagged_at_the_parent(federation):
    district, a, b = federation
    learn(district, a)
    learn(district, b)
    [row] = list(penalty_rows(1, source_unit=UNIT_A, division="330106"))
    row.update(CF_CFLB="罚款", CF_NR="罚款", CF_NR_FK="1.00")
    other = {**row, "CF_SJLYDM": UNIT_B, "CF_CFJGDM": UNIT_B, "CF_NR_FK": "2.00"}
    assert district.inbox.receive(reported(a, UNIT_A, [row]), sender=DEPT_A)[0].outcome == "accepted"
    assert district.inbox.receive(reported(b, UNIT_B, [other]), sender=DEPT_B)[0].outcome == "accepted"
    with district.store.engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from conflicts")).scalar() == 1
        noted = sorted((r.source_unit, r.fact_key, json.loads(r.substance))
                       for r in conn.execute(sa.text("select source_unit, fact_key, substance from facts")))
    # The facts noted on receipt are those of the stored bodies (what ingest would note).
    item = district.catalog.item("admin_penalty")
    stored = [fact_of(item, r.body) for r in district.store.records.iter_revisions()]
    assert len(noted) == 2 and noted == sorted((f.source_unit, f.display_key, dict(f.substance)) for f in stored)
