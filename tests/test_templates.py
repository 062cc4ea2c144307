"""Reporting templates: CSV with a BOM for Excel, XLSX with a bold header and a 说明 sheet."""

from __future__ import annotations

import csv
import pathlib

import openpyxl
import pytest

from node.catalog import Catalog, load_catalog, template_headers
from node.errors import UsageError
from node.templates import write_template

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(ROOT / "exchange_config" / "catalog")


def test_csv_template_has_a_bom_and_the_chinese_headers(catalog: Catalog, tmp_path: pathlib.Path) -> None:
    item = catalog.item("admin_penalty")
    out = tmp_path / "penalty.csv"
    write_template(item, "csv", out)
    assert out.read_bytes().startswith(b"\xef\xbb\xbf")
    with out.open(encoding="utf-8-sig", newline="") as fh:
        assert list(csv.reader(fh)) == [template_headers(item)]


def test_xlsx_template_has_bold_headers_and_a_notes_sheet(catalog: Catalog, tmp_path: pathlib.Path) -> None:
    item = catalog.item("admin_license")
    out = tmp_path / "license.xlsx"
    write_template(item, "xlsx", out)
    wb = openpyxl.load_workbook(out)
    sheet, notes = wb.worksheets
    assert [c.value for c in sheet[1]] == template_headers(item)
    assert all(c.font.b for c in sheet[1])
    assert notes.title == "说明"
    rows = {r[0]: r for r in notes.iter_rows(min_row=2, values_only=True)}
    assert rows["XK_ZT"][1:5] == ("当前状态", "必填", "枚举", "1;2")
    assert rows["XK_XDR_SHXYM"][2].startswith("条件必填: 行政相对人类别为法人及非法人组织/个体工商户")


def test_xlsx_template_keeps_identifiers_as_text_and_offers_the_values_of_a_list(catalog: Catalog,
                                                                               tmp_path: pathlib.Path) -> None:
    item = catalog.item("admin_penalty")
    out = tmp_path / "penalty.xlsx"
    write_template(item, "xlsx", out)
    sheet = openpyxl.load_workbook(out).worksheets[0]
    letter = {c.value: c.column_letter for c in sheet[1]}
    for name in ("统一社会信用代码", "证件号码", "组织机构代码", "工商注册号"):  # an ID typed as a number loses digits
        assert sheet.column_dimensions[letter[name]].number_format == "@", name
    assert sheet.column_dimensions[letter["处罚决定日期"]].number_format != "@"
    lists = {str(v.sqref).split(":")[0]: v for v in sheet.data_validations.dataValidation}
    kind = lists[f"{letter['行政相对人类别']}2"]
    assert kind.type == "list" and kind.formula1 == '"法人及非法人组织,自然人,个体工商户"' and not kind.showErrorMessage
    assert f"{letter['处罚类别']}2" not in lists  # several values per cell: no single choice


def test_unknown_template_format_is_a_usage_error(catalog: Catalog, tmp_path: pathlib.Path) -> None:
    with pytest.raises(UsageError):
        write_template(catalog.item("admin_penalty"), "ods", tmp_path / "x.ods")  # type: ignore[arg-type]
