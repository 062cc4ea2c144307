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
    yield from _federation(tmp_path)


@pytest.fixture
def federation_on_each_store(tmp_path: pathlib.Path, db_url: str):
    """The same, the district's store on SQLite and on PostgreSQL."""
    yield from _federation(tmp_path, db_url)


def _federation(tmp_path: pathlib.Path, store_url: str = ""):
    district_cfg = init_node(tmp_path / "district", node_id="district:330106", level="district", store_url=store_url)
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


def test_a_revision_refused_for_another_body_neither_closes_a_conflict_nor_is_noted_as_a_fact(federation):
    """The city revoked B's record (its revision 2, come down to the district: stored there without
    a fact noted) while B, not knowing, sends its own revision 2 agreeing with A. That body is refused
    (E_REVISION_CONFLICT): the district holds B's amount 2, so the conflict stays open and the facts
    index does not take the refused amount."""
    from node.conflicts import Conflicts
    from node.lifecycle.revisions import Change, Reviser
    from node.routing import Router

    district, a, b = federation
    learn(district, a)
    learn(district, b)
    [row] = list(penalty_rows(1, source_unit=UNIT_A, division="330106"))
    row.update(CF_CFLB="罚款", CF_NR="罚款", CF_NR_FK="1.00")
    assert district.inbox.receive(reported(a, UNIT_A, [row]), sender=DEPT_A)[0].outcome == "accepted"
    [first_b] = reported(b, UNIT_B, [{**row, "CF_SJLYDM": UNIT_B, "CF_NR_FK": "2.00"}])
    assert district.inbox.receive([first_b], sender=DEPT_B)[0].outcome == "accepted"
    conflicts = Conflicts(district.store.engine, actor=district.config.id)
    [opened] = conflicts.list_conflicts()
    head = district.store.records.get(opened.record_b)
    assert head is not None
    from_above = Reviser(node_id="city:330100", catalog=district.catalog, signer=district.signer,
                         store=district.store, router=Router(district.config.id, None), clock=lambda: 1)
    [revoked], _ = from_above.commit([Change(head, "revoked", "处罚决定已撤销")], action="revise", subject="t")
    assert revoked.revision == 2
    agreeing = _body(first_b)
    agreeing.revision = 2
    [amount] = [f for f in agreeing.fields if f.name == "CF_NR_FK"]
    amount.value = "1"
    [receipt] = district.inbox.receive(resigned(b, [agreeing]), sender=DEPT_B)
    assert receipt.problem is not None and receipt.problem.code == "E_REVISION_CONFLICT"
    [still] = conflicts.list_conflicts()
    assert (still.id, still.state, still.differences) == (opened.id, "open", {"CF_NR_FK": ["1", "2"]})
    with district.store.engine.connect() as conn:
        noted = {unit: (rev, json.loads(subst)["CF_NR_FK"]) for unit, rev, subst in conn.execute(
            sa.text("select source_unit, revision, substance from facts"))}
    assert noted == {UNIT_A: (1, "1"), UNIT_B: (1, "2")}


def resigned(dept, bodies: list[pb.RecordBody]) -> list[pb.SignedRecord]:
    """``bodies`` as ``dept`` would sign them: valid signatures over whatever the bodies say."""
    data = [b.SerializeToString() for b in bodies]
    sigs = dept.signer.sign_origin(data, now_ms=dept.ingest._clock())
    return [pb.SignedRecord(body=d, chain=[s]) for d, s in zip(data, sigs, strict=True)]


def _body(rec: pb.SignedRecord) -> pb.RecordBody:
    return pb.RecordBody.FromString(rec.body)


@pytest.mark.parametrize(("header", "value"), [
    ("subject_code", "91330106MA2AAAA213"),  # another company: it would be listed under that one
    ("subject_kind", "legal_person"),  # a person called a legal person: the ID number would go unmasked
    ("subject_name", "别的公司"),
    ("decision_date", "2020-01-01"),
])
def test_a_signed_body_whose_header_contradicts_its_fields_is_refused(federation, header: str, value: str):
    district, a, _b = federation
    learn(district, a)
    rows = list(penalty_rows(40, source_unit=UNIT_A, division="330106", seed=3))
    people = [r for r in rows if r["CF_XDR_LB"] == "自然人"]
    row = people[0] if header == "subject_kind" else rows[0]
    [honest] = reported(a, UNIT_A, [row])
    body = _body(honest)
    assert getattr(body, header) != value
    setattr(body, header, value)
    [receipt] = district.inbox.receive(resigned(a, [body]), sender=DEPT_A)
    assert receipt.outcome == "rejected" and receipt.problem is not None
    assert (receipt.problem.code, receipt.problem.field) == ("E_BODY_HEADER", header)
    assert district.inbox.receive([honest], sender=DEPT_A)[0].outcome == "accepted"


@pytest.mark.parametrize(("field", "raw"), [("CF_JDRQ", "{y}/{m}/{d}"), ("CF_XDR_MC", "{name}\u200b")])
def test_a_field_not_written_as_validation_writes_it_is_refused(federation, field: str, raw: str):
    # What is disclosed must be what was checked: an origin signs normalised values only.
    district, a, _b = federation
    learn(district, a)
    [honest] = reported(a, UNIT_A, list(penalty_rows(1, source_unit=UNIT_A, division="330106", seed=5)))
    body = _body(honest)
    fields = {f.name: f for f in body.fields}
    value = fields[field].value
    y, m, d = value.split("-") if field == "CF_JDRQ" else ("", "", "")
    fields[field].value = raw.format(y=y, m=m, d=d, name=value)
    [receipt] = district.inbox.receive(resigned(a, [body]), sender=DEPT_A)
    assert receipt.outcome == "rejected" and receipt.problem is not None
    assert (receipt.problem.code, receipt.problem.field) == ("E_BODY_NOT_NORMALISED", field)
    assert district.inbox.receive([honest], sender=DEPT_A)[0].outcome == "accepted"


@pytest.mark.parametrize(("extra", "value"), [
    ("CF_XDR_MC", "别的公司"),  # the view would show both names; validation kept only the last
    ("CF_WSH", None),  # the same value again: still not what an origin writes
    ("CF_XDR_ZJHM_2", "110101199003070011"),  # no field of the item: disclosed as sent, never checked
])
def test_a_signed_body_giving_a_field_twice_or_one_the_item_lacks_is_refused(federation, extra: str,
                                                                             value: str | None):
    district, a, _b = federation
    learn(district, a)
    [honest] = reported(a, UNIT_A, list(penalty_rows(1, source_unit=UNIT_A, division="330106", seed=5)))
    body = _body(honest)
    given = {f.name: f.value for f in body.fields}
    body.fields.insert(0, pb.Field(name=extra, value=value if value is not None else given[extra]))
    [receipt] = district.inbox.receive(resigned(a, [body]), sender=DEPT_A)
    assert receipt.outcome == "rejected" and receipt.problem is not None
    assert (receipt.problem.code, receipt.problem.field) == ("E_BODY_NOT_NORMALISED", extra)
    assert district.inbox.receive([honest], sender=DEPT_A)[0].outcome == "accepted"


def test_a_header_naming_an_allowed_unit_over_fields_of_another_is_refused(federation):
    district, _a, b = federation  # DEPT_B may report for UNIT_B only
    learn(district, b)
    [row] = list(penalty_rows(1, source_unit=UNIT_B, division="330106"))
    [rec] = reported(b, UNIT_B, [row])
    body = _body(rec)
    fields = {f.name: f for f in body.fields}
    fields["CF_SJLYDM"].value = UNIT_A  # the fields say another unit; the header still says UNIT_B
    body.record_id = district.catalog.item("admin_penalty").code  # recomputed below
    from node.records import make_record_id
    from node.validation import Validator
    checked = Validator(district.catalog).check(district.catalog.item("admin_penalty"),
                                                {f.name: f.value for f in body.fields})
    body.record_id = make_record_id("admin_penalty", checked.source_unit, checked.key)
    [receipt] = district.inbox.receive(resigned(b, [body]), sender=DEPT_B)
    assert receipt.outcome == "rejected" and receipt.problem is not None
    assert (receipt.problem.code, receipt.problem.field) == ("E_BODY_HEADER", "source_unit")


def test_a_child_may_not_revise_a_record_that_came_up_through_another(federation):
    district, a, b = federation  # DEPT_A may report for any unit; the record is B's
    learn(district, a)
    learn(district, b)
    [rec] = reported(b, UNIT_B, list(penalty_rows(1, source_unit=UNIT_B, division="330106")))
    assert district.inbox.receive([rec], sender=DEPT_B)[0].outcome == "accepted"
    forged = _body(rec)
    forged.revision, forged.origin_node, forged.status = 1000, DEPT_A, "revoked"
    [receipt] = district.inbox.receive(resigned(a, [forged]), sender=DEPT_A)
    assert receipt.outcome == "rejected" and receipt.problem is not None
    assert (receipt.problem.code, receipt.problem.field) == ("E_NOT_RECORD_PATH", "record_id")
    head = district.store.records.get(forged.record_id)
    assert head is not None and (head.revision, head.status) == (1, "active")
    # its own child still revises it
    own = _body(rec)
    own.revision, own.status = 2, "revoked"
    assert district.inbox.receive(resigned(b, [own]), sender=DEPT_B)[0].outcome == "accepted"


def test_a_header_longer_than_a_node_keeps_is_refused_alone(federation):
    # PostgreSQL refused such a row, and with it the whole batch, which replay could not mend.
    district, a, _b = federation
    learn(district, a)
    records = reported(a, UNIT_A, list(penalty_rows(3, source_unit=UNIT_A, division="330106")))
    long_one = _body(records[1])
    long_one.catalog_version = "v" * 65  # nothing else checks it
    receipts = district.inbox.receive([records[0], *resigned(a, [long_one]), records[2]], sender=DEPT_A)
    assert [r.outcome for r in receipts] == ["accepted", "rejected", "accepted"]
    assert receipts[1].problem is not None
    assert (receipts[1].problem.code, receipts[1].problem.field) == ("E_BODY_HEADER", "catalog_version")


def test_a_header_holding_a_nul_is_refused_alone(federation_on_each_store):
    # PostgreSQL refuses a NUL in any text column, and with it the whole batch (E_STORE_CONSTRAINT:
    # the sender dead-letters the good records too); SQLite would have kept it.
    district, a, _b = federation_on_each_store
    learn(district, a)
    records = reported(a, UNIT_A, list(penalty_rows(3, source_unit=UNIT_A, division="330106")))
    with_nul = _body(records[1])
    with_nul.catalog_version += "\x00"  # nothing else checks it
    receipts = district.inbox.receive([records[0], *resigned(a, [with_nul]), records[2]], sender=DEPT_A)
    assert [r.outcome for r in receipts] == ["accepted", "rejected", "accepted"]
    assert receipts[1].problem is not None
    assert (receipts[1].problem.code, receipts[1].problem.field) == ("E_BODY_HEADER", "catalog_version")
    assert "NUL" in receipts[1].problem.message


@pytest.mark.parametrize("revision", [0, 1_000_000_001, 2**32 - 1])
def test_a_revision_out_of_range_is_refused(federation, revision: int):
    district, a, _b = federation
    learn(district, a)
    [rec] = reported(a, UNIT_A, list(penalty_rows(1, source_unit=UNIT_A, division="330106")))
    body = _body(rec)
    body.revision = revision
    [receipt] = district.inbox.receive(resigned(a, [body]), sender=DEPT_A)
    assert receipt.problem is not None and receipt.problem.code == "E_REVISION_RANGE"


def test_a_body_over_the_size_limit_is_refused_and_the_rest_kept(federation):
    district, a, _b = federation
    learn(district, a)
    records = reported(a, UNIT_A, list(penalty_rows(2, source_unit=UNIT_A, division="330106")))
    # An unknown field (99, length-delimited) of 1 MiB: valid protobuf, signed, far over any catalogue length.
    fat = records[0].body + b"\x9a\x06" + bytes([0x80, 0x80, 0x40]) + b"x" * (1 << 20)
    [big] = resigned(a, [pb.RecordBody.FromString(fat)])
    receipts = district.inbox.receive([big, records[1]], sender=DEPT_A)
    assert [r.outcome for r in receipts] == ["rejected", "accepted"]
    assert receipts[0].problem is not None and receipts[0].problem.code == "E_BODY_TOO_LARGE"


def test_one_revision_twice_in_a_batch_is_accepted_once_and_a_different_body_for_it_refused(federation):
    district, a, _b = federation
    learn(district, a)
    [rec] = reported(a, UNIT_A, list(penalty_rows(1, source_unit=UNIT_A, division="330106")))
    other = _body(rec)
    other.reported_at_ms += 1  # another body for the same record id and revision
    [twin] = resigned(a, [other])
    receipts = district.inbox.receive([rec, rec, twin], sender=DEPT_A)
    assert [r.outcome for r in receipts] == ["accepted", "duplicate", "rejected"]
    assert receipts[2].problem is not None and receipts[2].problem.code == "E_REVISION_CONFLICT"
    assert [r.outcome for r in district.inbox.receive([twin, rec], sender=DEPT_A)] == ["rejected", "duplicate"]


def inspection_rows(unit: str, n: int) -> list[dict[str, str]]:
    """行政检查结果 (class C, routed up to the city only) of the companies ``penalty_rows`` names."""
    return [{"JC_XDR_MC": r["CF_XDR_MC"], "JC_XDR_LB": "法人及非法人组织", "JC_XDR_SHXYM": r["CF_XDR_SHXYM"],
             "JC_JCBH": f"检{i}", "JC_JCSX": "日常检查", "JC_JCRQ": "2026-03-01", "JC_JCJG": "未发现问题",
             "JC_JCBM": "杭州市西湖区市场监督管理局", "JC_JCBMDM": unit, "JC_SJLY": "杭州市西湖区市场监督管理局",
             "JC_SJLYDM": unit}
            for i, r in enumerate(penalty_rows(3 * n, source_unit=unit, division="330106"))
            if r["CF_XDR_LB"] == "法人及非法人组织"][:n]


def test_a_record_whose_rule_stops_below_this_level_is_refused(tmp_path: pathlib.Path):
    # A child on an older or altered catalogue (or a faulty one) must not put class-C records
    # that the catalogue keeps at the city into the province's store.
    province_cfg = init_node(tmp_path / "p", node_id="province:330000", level="province")
    dept_cfg = init_node(tmp_path / "d", node_id=DEPT_A, level="department", unit=UNIT_A,
                         ca_dir=tmp_path / "p" / "ca")
    data = yaml.safe_load(province_cfg.read_text())
    data["children"] = [{"id": DEPT_A}]
    province_cfg.write_text(yaml.safe_dump(data, allow_unicode=True))
    with build_node(load_config(province_cfg)) as province, build_node(load_config(dept_cfg)) as dept:
        learn(province, dept)
        item = dept.catalog.item("admin_inspection")
        outcomes = dept.ingest.ingest_batch(item, [SourceRow(i + 2, r) for i, r in
                                                   enumerate(inspection_rows(UNIT_A, 2))], source="t", batch_id="b")
        assert [o.outcome for o in outcomes] == ["accepted"] * 2
        records = [pb.SignedRecord.FromString(r.signed) for r in dept.store.records.iter_revisions()]
        receipts = province.inbox.receive(records, sender=DEPT_A)
        assert [(r.outcome, r.problem.code if r.problem else "") for r in receipts] == \
            [("rejected", "E_NOT_ROUTED_HERE")] * 2
        assert province.store.records.counts().get("admin_inspection", 0) == 0
