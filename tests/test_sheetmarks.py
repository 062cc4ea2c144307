"""Formula results a workbook's writer only put there as placeholders are not read as values."""

import pathlib

import openpyxl

from tests.test_workbook import HEADER, _parts, _save_parts, rows


def _written_by_a_library(p: pathlib.Path, cached: dict[str, str], *, calculate_on_load: bool) -> None:
    # What XlsxWriter writes: each formula with a result it did not compute (0, or a value the program
    # passed), and the workbook's flag asking the spreadsheet program to calculate everything on opening.
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(HEADER)
    ws.append(["公司1", '=IF(1>0,"严重","一般")', None, "x"])
    ws.append(["公司2", "一般", None, "=1+1"])
    ws.append(["公司3", "一般", None, "y"])
    wb.save(p)
    parts = _parts(p)
    sheet = parts["xl/worksheets/sheet1.xml"].decode()
    for cell, value in cached.items():
        at = sheet.index(f'<c r="{cell}"')
        end = sheet.index("</c>", at)
        body = sheet[at:end].replace("<v />", "").replace("<v/>", "")
        if not value.isdigit():
            body = body.replace("<c ", '<c t="str" ', 1)
        sheet = sheet[:at] + body + f"<v>{value}</v>" + sheet[end:]
    parts["xl/worksheets/sheet1.xml"] = sheet.encode()
    if not calculate_on_load:
        parts["xl/workbook.xml"] = parts["xl/workbook.xml"].replace(b' fullCalcOnLoad="1"', b"")
    assert (b'fullCalcOnLoad="1"' in parts["xl/workbook.xml"]) is calculate_on_load
    _save_parts(p, parts)


def test_formula_results_of_a_workbook_to_be_calculated_on_opening_refuse_their_rows(tmp_path: pathlib.Path):
    p = tmp_path / "xlsxwriter.xlsx"
    _written_by_a_library(p, {"B2": "0", "D3": "0"}, calculate_on_load=True)
    got = rows(p)
    assert [(r.row, r.problem.code if r.problem else None, r.problem.field if r.problem else None) for r in got] == [
        (2, "E_FIELD_FORMULA", "CF_SXCD"), (3, "E_FIELD_FORMULA", "BZ"), (4, None, None)]


def test_formula_results_of_a_workbook_a_spreadsheet_program_calculated_are_read(tmp_path: pathlib.Path):
    p = tmp_path / "saved.xlsx"
    _written_by_a_library(p, {"B2": "严重", "D3": "2"}, calculate_on_load=False)
    got = rows(p)
    assert [(r.row, r.problem, r.values.get("CF_SXCD"), r.values.get("BZ")) for r in got] == [
        (2, None, "严重", "x"), (3, None, "一般", 2), (4, None, "一般", "y")]
