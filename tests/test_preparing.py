"""node/preparing.py: a prepared batch crosses from the worker intact."""

from __future__ import annotations

import pickle

from node.catalog import load_catalog
from node.preparing import Prepared, PreparedBatch, Preparer
from node.provisioning import bundled_catalog
from node.sampledata import penalty_rows, unit_uscc
from node.tabular import SourceRow
from node.validation import Validator

UNIT = unit_uscc("330102", "MB000001")


def _prepared(rows: list[SourceRow]) -> PreparedBatch:
    catalog = load_catalog(bundled_catalog())
    preparer = Preparer(node_id="dept:330102:scjgj", catalog=catalog,
                        validator=Validator(catalog, source_unit=UNIT), clock=lambda: 1_733_000_000_000)
    return preparer.prepare(catalog.item("admin_penalty"), rows, source="p.csv", batch_id="b1")


def test_a_pickled_batch_comes_back_equal_with_its_warnings_and_refusals() -> None:
    rows = []
    for i, values in enumerate(penalty_rows(300, source_unit=UNIT, bad_every=7), start=2):
        if i % 5 == 0:
            values = {**values, "NOT_A_FIELD": "x"}  # accepted, with a warning
        rows.append(SourceRow(i, values))
    batch = _prepared(rows)
    assert batch.rejections and any(p.warnings for p in batch.prepared) and any(not p.warnings for p in batch.prepared)

    back = pickle.loads(pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL))

    assert back == batch
    assert all(type(p) is Prepared for p in back.prepared)
    assert [p.record_id for p in back.prepared] == [p.record_id for p in batch.prepared]


def test_a_pickled_batch_of_refusals_only_comes_back_equal() -> None:
    batch = _prepared([SourceRow(2, {"CF_WSH": "x"})])
    assert not batch.prepared and batch.rejections

    assert pickle.loads(pickle.dumps(batch)) == batch


def test_a_persons_fact_given_twice_with_other_values_is_refused_without_writing_out_the_id_number() -> None:
    person = next(r for r in penalty_rows(50, source_unit=UNIT) if r.get("CF_XDR_LB") == "自然人")
    id_number = person["CF_XDR_ZJHM"]
    batch = _prepared([SourceRow(2, person), SourceRow(3, {**person, "CF_SY": "另一事实"})])
    [refusal] = batch.rejections
    assert refusal.code == "E_DUPLICATE_KEY" and "row 2" in refusal.message
    # Problem messages show ID numbers masked (docs/catalogue.md), as the ID checks' own do.
    assert id_number not in refusal.message and id_number[:4] + "*" * 10 + id_number[-4:] in refusal.message
    assert person["CF_WSH"] in refusal.message


def test_a_companys_fact_given_twice_with_other_values_names_its_code_in_full() -> None:
    company = next(r for r in penalty_rows(50, source_unit=UNIT) if r.get("CF_XDR_LB") == "法人及非法人组织")
    batch = _prepared([SourceRow(2, company), SourceRow(3, {**company, "CF_SY": "另一事实"})])
    [refusal] = batch.rejections
    assert refusal.code == "E_DUPLICATE_KEY" and company["CF_XDR_SHXYM"] in refusal.message


def test_the_files_warning_on_a_row_goes_with_the_rows_own_problems_whether_accepted_or_refused() -> None:
    from node.errors import Problem

    def hidden(row: int) -> Problem:
        return Problem("W_ROW_HIDDEN", "", f"row {row} is hidden in the sheet", row=row, warning=True)

    good, bad = list(penalty_rows(2, source_unit=UNIT))
    batch = _prepared([SourceRow(2, good, warning=hidden(2)),
                       SourceRow(3, {**bad, "CF_JDRQ": "2024-02-30"}, warning=hidden(3))])
    [accepted] = batch.prepared
    assert accepted.row == 2 and [p.code for p in accepted.warnings] == ["W_ROW_HIDDEN"]
    refused = batch.outcomes[1]
    assert refused.outcome == "rejected" and [p.code for p in refused.problems][:1] == ["W_ROW_HIDDEN"]
    assert [r.code for r in batch.rejections] == ["E_FIELD_DATE"]  # a warning is no refusal to list
