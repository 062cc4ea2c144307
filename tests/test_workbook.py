"""node/workbook.py: what a department's workbook holds beyond its cell values."""

from __future__ import annotations

import datetime as dt
import pathlib
import zipfile

import openpyxl
import pytest

from node.errors import InputFileError
from node.tabular import HeaderMap, read_table

HEADERS = HeaderMap({"行政相对人名称": "CF_XDR_MC", "失信程度": "CF_SXCD", "公示截止期": "CF_GSJZQ", "备注": "BZ",
                     "处罚决定日期": "CF_JDRQ"}, frozenset({"CF_XDR_MC"}))
HEADER = ["行政相对人名称", "失信程度", "公示截止期", "备注"]


def rows(path: pathlib.Path):
    return list(read_table(path, HEADERS))


def _parts(path: pathlib.Path) -> dict[str, bytes]:
    """The workbook's files by name, to be edited as a program other than openpyxl would write them."""
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def _calculated(parts: dict[str, bytes]) -> dict[str, bytes]:
    """As a spreadsheet program saves a workbook it calculated: without openpyxl's calculate-on-load flag."""
    parts["xl/workbook.xml"] = parts["xl/workbook.xml"].replace(b' fullCalcOnLoad="1"', b"")
    return parts


def _save_parts(path: pathlib.Path, parts: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as z:
        for n, data in parts.items():
            z.writestr(n, data)


def _with_cached_value(path: pathlib.Path, cell: str, value: str) -> None:
    """Give one formula cell the result a spreadsheet program would have saved with it."""
    parts = _calculated(_parts(path))
    sheet = parts["xl/worksheets/sheet1.xml"].decode()
    at = sheet.index(f'<c r="{cell}"')
    end = sheet.index("</c>", at)
    cell_xml = sheet[at:end].replace("<c ", '<c t="str" ', 1).replace("<v />", "").replace("<v/>", "")
    parts["xl/worksheets/sheet1.xml"] = (sheet[:at] + cell_xml + f"<v>{value}</v>" + sheet[end:]).encode()
    _save_parts(path, parts)


def test_a_formula_never_calculated_refuses_its_row_naming_the_field(tmp_path: pathlib.Path):
    p = tmp_path / "formulas.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(HEADER)
    ws.append(["公司1", '=IF(1>0,"严重","一般")', None, "x"])
    ws.append(["公司2", "一般", None, '="备"&"注"'])
    ws.append(["公司3", '=IF(1>0,"严重","一般")', None, "y"])
    wb.save(p)
    _with_cached_value(p, "B4", "严重")  # saved by a spreadsheet program: its result is there
    got = rows(p)
    assert [(r.row, r.problem.code if r.problem else None, r.problem.field if r.problem else None) for r in got] == [
        (2, "E_FIELD_FORMULA", "CF_SXCD"), (3, "E_FIELD_FORMULA", "BZ"), (4, None, None)]
    assert got[2].values["CF_SXCD"] == "严重"
    assert got[0].problem is not None and got[0].problem.message.startswith("失信程度 (CF_SXCD): the cell holds a formula")


def test_an_empty_template_sheet_before_the_data_sheet_gives_way(tmp_path: pathlib.Path):
    p = tmp_path / "sheets.xlsx"
    wb = openpyxl.Workbook()
    wb.active.title = "模板"
    wb.active.append(HEADER)
    data = wb.create_sheet("2026年3月")
    data.append(HEADER)
    data.append(["公司1", "一般", None, "x"])
    wb.save(p)
    assert [r.values["CF_XDR_MC"] for r in rows(p)] == ["公司1"]


def test_two_sheets_with_rows_are_still_refused(tmp_path: pathlib.Path):
    p = tmp_path / "sheets.xlsx"
    wb = openpyxl.Workbook()
    for title in ("一月", "二月"):
        ws = wb.create_sheet(title)
        ws.append(HEADER)
        ws.append(["公司1", "一般", None, "x"])
    del wb["Sheet"]
    wb.save(p)
    with pytest.raises(InputFileError) as caught:
        rows(p)
    assert caught.value.code == "E_INPUT_SHEETS"


def test_rows_with_only_their_number_filled_in_are_blank(tmp_path: pathlib.Path):
    p = tmp_path / "numbered.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["序号", *HEADER])
    ws.append([1, "公司1", "一般", None, "x"])
    for n in (2, 3, 4):
        ws.append([n])
    wb.save(p)
    assert [(r.row, r.values["CF_XDR_MC"]) for r in rows(p)] == [(2, "公司1")]


def test_a_header_in_two_rows_under_a_merged_group_cell(tmp_path: pathlib.Path):
    p = tmp_path / "two.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws["A1"], ws["B1"], ws["D1"] = "行政相对人名称", "处罚信息", "备注"
    ws.merge_cells("B1:C1")
    ws.merge_cells("A1:A2")
    ws.merge_cells("D1:D2")
    ws["B2"], ws["C2"] = "失信程度", "公示截止期"
    ws.append(["公司1", "严重", "2028-04-14", "x"])
    wb.save(p)
    [r] = rows(p)
    assert r.row == 3 and r.values == {"CF_XDR_MC": "公司1", "CF_SXCD": "严重", "CF_GSJZQ": "2028-04-14", "BZ": "x"}


def test_a_workbook_whose_data_sheet_is_hidden_says_so(tmp_path: pathlib.Path):
    p = tmp_path / "hidden.xlsx"
    wb = openpyxl.Workbook()
    wb.active.append(["数据见隐藏表"])
    data = wb.create_sheet("数据")
    data.append(HEADER)
    data.append(["公司1", "一般", None, "x"])
    data.sheet_state = "hidden"
    wb.save(p)
    with pytest.raises(InputFileError) as caught:
        rows(p)
    assert "「数据」" in caught.value.message and "unhide" in caught.value.message


def test_a_value_beyond_the_header_names_its_column(tmp_path: pathlib.Path):
    p = tmp_path / "wide.xlsx"
    wb = openpyxl.Workbook()
    wb.active.append(HEADER)
    wb.active.append(["公司1", "一般", None, "x", None, "多余"])
    wb.save(p)
    [r] = rows(p)
    assert r.problem is not None and r.problem.code == "E_ROW_SHAPE" and "column 6" in r.problem.message


def test_a_workbook_in_the_1904_date_system_dates_its_bare_serials_from_1904(tmp_path: pathlib.Path):
    from openpyxl.utils.datetime import CALENDAR_MAC_1904

    from node.values import parse_date, parse_decimal

    p = tmp_path / "mac.xlsx"
    wb = openpyxl.Workbook()
    wb.epoch = CALENDAR_MAC_1904
    ws = wb.active
    ws.append(["行政相对人名称", "处罚决定日期", "公示截止期", "备注"])
    # A date typed as a date (formatted), and one pasted as its bare serial (General format):
    # in this workbook 43890 is 2024-03-01; in the 1900 system it would be 2020-02-29.
    ws.append(["公司1", dt.date(2024, 3, 1), 43890, 12.5])
    wb.save(p)
    [row] = rows(p)
    assert parse_date(row.values["CF_JDRQ"]) == "2024-03-01"
    assert parse_date(row.values["CF_GSJZQ"]) == "2024-03-01"
    assert parse_decimal(row.values["BZ"]) == parse_decimal(12.5)  # a number stays the number it is
    wb.epoch = openpyxl.utils.datetime.CALENDAR_WINDOWS_1900
    wb.save(p)
    [row] = rows(p)
    assert parse_date(row.values["CF_GSJZQ"]) == "2020-02-29"


def test_a_row_of_sums_with_its_formula_under_the_data_is_no_record(tmp_path: pathlib.Path):
    p = tmp_path / "total.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["序号", *HEADER])
    ws.append([1, "公司1", "一般", None, "罚款0.5万元"])
    ws.append([2, "公司2", "一般", None, None])
    ws.append(["合计", None, None, None, 0.5])  # the sum a spreadsheet saved for =SUM(E2:E3)
    wb.save(p)
    assert [(r.row, r.values["CF_XDR_MC"]) for r in rows(p)] == [(2, "公司1"), (3, "公司2")]


def test_a_template_sheet_holding_only_its_required_marks_gives_way_to_the_data_sheet(tmp_path: pathlib.Path):
    p = tmp_path / "marks.xlsx"
    wb = openpyxl.Workbook()
    wb.active.title = "模板"
    wb.active.append(HEADER)
    wb.active.append(["必填", "选填", "选填", "选填"])
    data = wb.create_sheet("2026年3月")
    data.append(HEADER)
    data.append(["必填", "选填", "选填", "选填"])
    data.append(["公司1", "一般", None, None])
    wb.save(p)
    assert [(r.row, r.values["CF_XDR_MC"]) for r in rows(p)] == [(3, "公司1")]


def _one_row_workbook(path: pathlib.Path, last: object = "x") -> pathlib.Path:
    """A well-formed workbook: the header and one row, its last cell ``last``."""
    wb = openpyxl.Workbook()
    wb.active.append(HEADER)
    wb.active.append(["公司1", "一般", "2025-01-01", last])
    wb.save(path)
    return path


def test_a_workbook_with_a_part_that_would_unpack_to_far_more_than_any_real_one_is_refused(tmp_path: pathlib.Path):
    real = _one_row_workbook(tmp_path / "real.xlsx")
    bomb = tmp_path / "bomb.xlsx"
    sheet = "xl/worksheets/sheet1.xml"
    with zipfile.ZipFile(real) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            if info.filename != sheet:
                out.writestr(info, src.read(info))
                continue
            text = src.read(info)
            with out.open(sheet, "w") as part:  # the same sheet with 96 MB of blanks before its rows
                part.write(text[:text.index(b"<sheetData")])
                for _ in range(96):
                    part.write(b" " * (1 << 20))
                part.write(text[text.index(b"<sheetData"):])
    assert rows(real)[0].values["CF_XDR_MC"] == "公司1"
    with pytest.raises(InputFileError) as refused:
        rows(bomb)
    assert refused.value.code == "E_INPUT_FORMAT" and sheet in refused.value.message


def _rewritten(src: pathlib.Path, dst: pathlib.Path, part: str, old: bytes, new: bytes) -> None:
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as out:
        for info in z.infolist():
            data = z.read(info)
            if info.filename == part:
                assert old in data
                data = data.replace(old, new, 1)
            out.writestr(info, data)


def test_a_workbook_whose_styles_openpyxl_cannot_take_is_a_file_error_not_a_traceback(tmp_path: pathlib.Path):
    # Some exporters write a fill with no pattern (<fill/>): openpyxl raises TypeError ("expected
    # <class 'openpyxl.styles.fills.Fill'>") while it opens the workbook.
    real = _one_row_workbook(tmp_path / "real.xlsx")
    with zipfile.ZipFile(real) as z:
        styles = z.read("xl/styles.xml")
    start = styles.index(b"<fill>")
    odd = tmp_path / "odd-styles.xlsx"
    _rewritten(real, odd, "xl/styles.xml", styles[start:styles.index(b"</fill>", start) + 7], b"<fill/>")
    with pytest.raises(InputFileError) as refused:
        rows(odd)
    assert refused.value.code == "E_INPUT_FORMAT" and "odd-styles.xlsx" in refused.value.message


def test_a_workbook_saved_as_strict_open_xml_is_refused_saying_so(tmp_path: pathlib.Path):
    # Excel's "Strict Open XML Spreadsheet" is an .xlsx in other namespaces: openpyxl finds no sheet in
    # it, and the file read as one without a header row.
    real = _one_row_workbook(tmp_path / "real.xlsx")
    strict = tmp_path / "strict.xlsx"
    _rewritten(real, strict, "xl/workbook.xml", b"http://schemas.openxmlformats.org/spreadsheetml/2006/main",
               b"http://purl.oclc.org/ooxml/spreadsheetml/main")
    with pytest.raises(InputFileError) as refused:
        rows(strict)
    assert refused.value.code == "E_INPUT_FORMAT" and "Strict Open XML" in refused.value.message


def test_a_cell_naming_a_shared_string_the_workbook_lacks_is_a_file_error_not_a_traceback(tmp_path: pathlib.Path):
    real = _one_row_workbook(tmp_path / "real.xlsx", 7)
    bad = tmp_path / "bad-strings.xlsx"
    # The number in D2 becomes a reference to shared string 999, which does not exist.
    _rewritten(real, bad, "xl/worksheets/sheet1.xml", b'<c r="D2" t="n"><v>7</v>', b'<c r="D2" t="s"><v>999</v>')
    with pytest.raises(InputFileError) as refused:
        rows(bad)
    assert refused.value.code == "E_INPUT_FORMAT" and "bad-strings.xlsx" in refused.value.message


@pytest.mark.parametrize("filtered", [False, True])
def test_a_hidden_or_filtered_out_row_is_read_with_a_warning_naming_it(tmp_path: pathlib.Path, filtered: bool):
    p = tmp_path / "hidden.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(HEADER)
    for i in range(1, 5):
        ws.append([f"公司{i}", "一般", None, "x" if i % 2 else "y"])
    ws.row_dimensions[3].hidden = True  # 公司2
    ws.row_dimensions[5].hidden = True  # 公司4
    if filtered:  # Excel hides the rows its filter leaves out the same way, with the filter on the sheet
        ws.auto_filter.ref = "A1:D5"
        ws.auto_filter.add_filter_column(3, ["x"])
    wb.save(p)
    got = rows(p)
    assert [(r.row, r.values["CF_XDR_MC"], r.problem, r.warning.code if r.warning else None) for r in got] == [
        (2, "公司1", None, None), (3, "公司2", None, "W_ROW_HIDDEN"), (4, "公司3", None, None),
        (5, "公司4", None, "W_ROW_HIDDEN")]
    warning = got[1].warning
    assert warning is not None and warning.warning and warning.row == 3
    assert ("filtered out" in warning.message) is filtered and "read like every other row" in warning.message


def _as_excel_saves_strings(path: pathlib.Path, texts: dict[str, str]) -> None:
    """Keep every text cell in a shared string table, as Excel does, each written as the XML in
    ``texts`` (by its value) or plainly."""
    import re

    parts = _parts(path)
    strings: list[str] = []

    def shared(m: re.Match[str]) -> str:
        strings.append(texts.get(m[2], m[2]))
        return f'<c r="{m[1]}" t="s"><v>{len(strings) - 1}</v></c>'

    sheet = re.sub(r'<c r="(\w+)" t="inlineStr"><is><t>(.*?)</t></is></c>', shared,
                   parts["xl/worksheets/sheet1.xml"].decode())
    parts["xl/worksheets/sheet1.xml"] = sheet.encode()
    parts["xl/sharedStrings.xml"] = ('<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
                                     + "".join(f"<si><t>{s}</t></si>" for s in strings) + "</sst>").encode()
    parts["[Content_Types].xml"] = parts["[Content_Types].xml"].replace(b"</Types>", (
        b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.'
        b'spreadsheetml.sharedStrings+xml"/></Types>'))
    parts["xl/_rels/workbook.xml.rels"] = parts["xl/_rels/workbook.xml.rels"].replace(b"</Relationships>", (
        b'<Relationship Id="rIdStrings" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
        b'sharedStrings" Target="sharedStrings.xml"/></Relationships>'))
    _save_parts(path, parts)


def test_characters_excel_writes_as_escapes_are_read_as_themselves(tmp_path: pathlib.Path):
    # XML cannot hold a carriage return or most control characters, so Excel writes them as _xHHHH_
    # (a line break pasted from Windows text: "_x000D_" then LF). Read literally, the escape became
    # part of a name, a 文号 or a fact. It escapes nothing else: "_x4E2D_" in a cell is text.
    p = tmp_path / "escaped.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(HEADER)
    ws.append(["公司1", "严重", None, "备注一"])
    ws.append(["公司2", "一般", None, "备注二"])
    ws.append(["公司3", "一般", None, "备注三"])
    wb.save(p)
    _as_excel_saves_strings(p, {"公司1": "杭州某某_x000D_\n有限公司", "备注一": "第一行_x000D_\n第二行",
                                "公司2": "公司2_x000d_", "备注二": "编号_x4E2D_",
                                "备注三": "Tab_x0009_键", "公司3": "公司_x0000_3"})
    got = rows(p)
    assert [(r.row, r.values["CF_XDR_MC"], r.values["BZ"]) for r in got] == [
        (2, "杭州某某\r\n有限公司", "第一行\r\n第二行"), (3, "公司2\r", "编号_x4E2D_"), (4, "公司3", "Tab\t键")]


def test_a_formula_whose_saved_result_is_empty_text_is_an_empty_cell_not_an_uncalculated_one(tmp_path: pathlib.Path):
    # =IF(C2="","",…) left empty: Excel saves its result as an empty string (t="str", <v/>). Only a
    # formula with no result saved at all is one a spreadsheet program never calculated.
    p = tmp_path / "empty_results.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    for cells in (HEADER, *([f"公司{i}", '=IF(1>2,"严重","")', None, "x"] for i in (1, 2, 3))):
        ws.append(cells)
    wb.save(p)
    parts = _calculated(_parts(p))
    sheet = parts["xl/worksheets/sheet1.xml"].decode()
    for cell, saved in (("B2", "<v/>"), ("B3", "<v></v>")):
        at = sheet.index(f'<c r="{cell}"')
        end = sheet.index("</c>", at)
        body = sheet[at:end].replace("<v />", "").replace("<v/>", "").replace(f'<c r="{cell}"', f'<c r="{cell}" t="str"', 1)
        sheet = sheet[:at] + body + saved + sheet[end:]
    parts["xl/worksheets/sheet1.xml"] = sheet.encode()
    _save_parts(p, parts)
    got = rows(p)
    assert [(r.row, r.problem.code if r.problem else None, r.values.get("CF_SXCD") or None) for r in got] == [
        (2, None, None), (3, None, None), (4, "E_FIELD_FORMULA", None)]


def test_the_total_row_of_a_table_in_chinese_excel_is_no_record(tmp_path: pathlib.Path):
    # A table's 汇总行 (Table Design → Total Row) is labelled 汇总 in Chinese Excel and WPS, its cells SUBTOTALs.
    from openpyxl.worksheet.table import Table

    p = tmp_path / "table.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    for cells in (HEADER, ["公司1", "严重", None, "x"], ["公司2", "一般", None, "y"], ["汇总", None, None, 2]):
        ws.append(cells)
    ws.add_table(Table(displayName="行政处罚", ref="A1:D4", totalsRowCount=1))
    wb.save(p)
    assert [(r.row, r.values["CF_XDR_MC"], r.problem) for r in rows(p)] == [(2, "公司1", None), (3, "公司2", None)]


def test_a_formula_never_calculated_is_found_whatever_order_its_cell_attributes_come_in(tmp_path: pathlib.Path):
    # XML leaves attribute order free, and writers differ: style or type before the reference.
    p = tmp_path / "attribute_order.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(HEADER)
    ws.append(["公司1", '=IF(1>0,"严重","一般")', None, "x"])
    wb.save(p)
    parts = _parts(p)
    parts["xl/worksheets/sheet1.xml"] = parts["xl/worksheets/sheet1.xml"].replace(b'<c r="B2"', b'<c s="0" r="B2"')
    _save_parts(p, parts)
    got = rows(p)
    assert [(r.row, r.problem.code if r.problem else None, r.problem.field if r.problem else None) for r in got] == [
        (2, "E_FIELD_FORMULA", "CF_SXCD")]


def test_an_unknown_column_the_sheet_hides_is_refused_saying_it_is_hidden(tmp_path: pathlib.Path):
    p = tmp_path / "hidden_column.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["行政相对人名称", "内部编号", "处罚决定日期"])
    ws.append(["某公司", "N-1", "2024-03-01"])
    ws.column_dimensions["B"].hidden = True
    wb.save(p)
    with pytest.raises(InputFileError) as err:
        rows(p)
    assert err.value.code == "E_INPUT_HEADER_UNKNOWN"
    assert "内部编号" in err.value.message and "hidden" in err.value.message and "column B" in err.value.message
