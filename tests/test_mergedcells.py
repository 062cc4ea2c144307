"""node/mergedcells.py: merged blocks of a workbook's data rows, read as the spreadsheet shows them."""

from __future__ import annotations

import pathlib

import openpyxl

from node.tabular import HeaderMap, read_table

HEADERS = HeaderMap({"行政相对人名称": "CF_XDR_MC", "失信程度": "CF_SXCD", "公示截止期": "CF_GSJZQ", "备注": "BZ"},
                    frozenset({"CF_XDR_MC"}))
HEADER = ["行政相对人名称", "失信程度", "公示截止期", "备注"]


def rows(path: pathlib.Path):
    return list(read_table(path, HEADERS))


def test_a_merged_block_gives_its_value_to_every_row_it_covers(tmp_path: pathlib.Path):
    p = tmp_path / "merged.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["2026年3月行政处罚"])
    ws.merge_cells("A1:D1")  # a merged title is not data
    ws.append(HEADER)
    for i in range(1, 4):
        ws.append([f"公司{i}", "严重" if i == 1 else None, "2028-04-14" if i == 1 else None, f"备注{i}"])
    ws.append(["公司4", "一般", None, "x"])
    ws.merge_cells("B3:B5")  # 失信程度 of rows 3-5
    ws.merge_cells("C3:C5")  # and their 公示截止期
    wb.save(p)
    got = rows(p)
    assert [(r.row, r.values["CF_XDR_MC"], r.values.get("CF_SXCD"), r.values.get("CF_GSJZQ")) for r in got] == [
        (3, "公司1", "严重", "2028-04-14"), (4, "公司2", "严重", "2028-04-14"), (5, "公司3", "严重", "2028-04-14"),
        (6, "公司4", "一般", None)]


def test_a_row_of_sums_whose_label_is_merged_across_columns_is_no_record(tmp_path: pathlib.Path):
    p = tmp_path / "total.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(HEADER)
    ws.append(["公司1", "一般", None, None])
    ws.append(["合计", None, None, 1])
    ws.merge_cells("A3:C3")
    wb.save(p)
    assert [(r.row, r.values["CF_XDR_MC"]) for r in rows(p)] == [(2, "公司1")]


def test_a_block_merged_across_fields_refuses_its_rows_naming_them(tmp_path: pathlib.Path):
    # One text shown across 失信程度, 公示截止期 and 备注 is the value of one of them, and which one
    # cannot be known: copied into each, 公示截止期 and 备注 would say 严重.
    p = tmp_path / "across.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    for cells in (HEADER, ["公司1", "严重", None, None], ["公司2", "严重", None, None], ["公司3", "一般", None, "y"]):
        ws.append(cells)
    ws.merge_cells("B2:D3")
    wb.save(p)
    got = rows(p)
    assert [(r.row, r.problem.code if r.problem else None, r.problem.field if r.problem else None) for r in got] == [
        (2, "E_ROW_SHAPE", "CF_SXCD"), (3, "E_ROW_SHAPE", "CF_SXCD"), (4, None, None)]
    assert "失信程度, 公示截止期, 备注" in got[0].problem.message and "merged" in got[0].problem.message
    assert got[2].values == {"CF_XDR_MC": "公司3", "CF_SXCD": "一般", "CF_GSJZQ": None, "BZ": "y"}
