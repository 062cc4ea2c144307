import codecs
import pathlib
import re
import zipfile

import openpyxl
import pytest

from node.csvfile import detect_encoding
from node.errors import InputFileError
from node.tabular import HeaderMap, read_table

HEADERS = HeaderMap({"行政相对人名称": "CF_XDR_MC", "CF_XDR_MC": "CF_XDR_MC", "处罚决定日期": "CF_JDRQ",
                     "CF_JDRQ": "CF_JDRQ", "备注": "BZ", "BZ": "BZ"},
                    frozenset({"CF_XDR_MC", "CF_JDRQ"}))


def rows(path: pathlib.Path, **kw):
    return list(read_table(path, HEADERS, **kw))


def test_utf8_bom_csv_with_chinese_headers(tmp_path: pathlib.Path):
    p = tmp_path / "a.csv"
    p.write_bytes(codecs.BOM_UTF8 + "行政相对人名称,处罚决定日期\n某公司,2024-03-01\n".encode())
    [r] = rows(p)
    assert r.values == {"CF_XDR_MC": "某公司", "CF_JDRQ": "2024-03-01"} and r.row == 2


def test_gbk_file_is_detected(tmp_path: pathlib.Path):
    p = tmp_path / "gbk.csv"
    p.write_bytes("行政相对人名称,处罚决定日期\n杭州某某餐饮有限公司,2024/3/1\n".encode("gbk"))
    assert detect_encoding(p.read_bytes()) == "gb18030"
    assert rows(p)[0].values["CF_XDR_MC"] == "杭州某某餐饮有限公司"


def test_column_codes_are_accepted_case_insensitively(tmp_path: pathlib.Path):
    p = tmp_path / "codes.csv"
    p.write_text("cf_xdr_mc,CF_JDRQ,BZ\nA,20240301,\n", encoding="utf-8")
    assert rows(p)[0].values["CF_JDRQ"] == "20240301"


def test_unknown_header_is_named(tmp_path: pathlib.Path):
    p = tmp_path / "x.csv"
    p.write_text("行政相对人名称,处罚决定日期,颜色\nA,2024-01-01,红\n", encoding="utf-8")
    with pytest.raises(InputFileError, match="颜色") as err:
        rows(p)
    assert err.value.code == "E_INPUT_HEADER_UNKNOWN"


@pytest.mark.parametrize("header", ["罚款金额", "罚款金额（元）", "罚款金额(元)"])
def test_an_amount_column_without_its_unit_or_in_another_is_refused_naming_the_column_meant(
        tmp_path: pathlib.Path, header: str):
    # Read as 万元, a fine of 5000元 would be stored 10,000 times over.
    p = tmp_path / "x.csv"
    p.write_text(f"行政相对人名称,处罚决定日期,{header}\nA,2024-01-01,5000\n", encoding="utf-8")
    with_fine = HeaderMap({"行政相对人名称": "CF_XDR_MC", "处罚决定日期": "CF_JDRQ", "罚款金额（万元）": "CF_NR_FK"},
                          frozenset({"CF_XDR_MC", "CF_JDRQ"}))
    with pytest.raises(InputFileError) as err:
        list(read_table(p, with_fine))
    assert err.value.code == "E_INPUT_HEADER_UNKNOWN"
    assert header in err.value.message and "罚款金额(万元)" in err.value.message


def test_missing_required_header_is_named(tmp_path: pathlib.Path):
    p = tmp_path / "x.csv"
    p.write_text("行政相对人名称,备注\nA,\n", encoding="utf-8")
    with pytest.raises(InputFileError, match="CF_JDRQ") as err:
        rows(p)
    assert err.value.code == "E_INPUT_HEADER_MISSING"


def test_empty_file_is_a_clear_error(tmp_path: pathlib.Path):
    p = tmp_path / "empty.csv"
    p.write_bytes(b"")
    with pytest.raises(InputFileError, match="empty"):
        rows(p)


def test_row_with_extra_cells_is_a_row_problem_and_reading_goes_on(tmp_path: pathlib.Path):
    p = tmp_path / "x.csv"
    p.write_text("行政相对人名称,处罚决定日期\nA,2024-01-01,surplus\nB,2024-01-02\n", encoding="utf-8")
    first, second = rows(p)
    assert first.problem is not None and first.problem.code == "E_ROW_SHAPE" and first.problem.row == 2
    assert second.values["CF_XDR_MC"] == "B"


def test_undecodable_line_is_reported_by_row(tmp_path: pathlib.Path):
    p = tmp_path / "x.csv"
    p.write_bytes("行政相对人名称,处罚决定日期\nA,2024-01-01\n".encode() + b"\xff\xfe\xfa,2024\nC,2024-01-03\n")
    got = rows(p, encoding="utf-8")
    assert [r.problem.code if r.problem else r.values["CF_XDR_MC"] for r in got] == ["A", "E_ROW_ENCODING", "C"]


def test_blank_lines_are_skipped(tmp_path: pathlib.Path):
    p = tmp_path / "x.csv"
    p.write_text("\n行政相对人名称,处罚决定日期\n\n,\nA,2024-01-01\n", encoding="utf-8")
    assert [r.values["CF_XDR_MC"] for r in rows(p)] == ["A"]


def test_xlsx_with_date_cells(tmp_path: pathlib.Path):
    import datetime as dt

    p = tmp_path / "x.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["行政相对人名称", "处罚决定日期"])
    ws.append(["某公司", dt.datetime(2024, 3, 1)])
    wb.save(p)
    [r] = rows(p)
    assert r.values["CF_JDRQ"] == dt.datetime(2024, 3, 1) and r.row == 2


def test_not_an_xlsx_is_a_clear_error(tmp_path: pathlib.Path):
    p = tmp_path / "fake.xlsx"
    p.write_text("not a zip")
    with pytest.raises(InputFileError, match="is a text file"):
        rows(p)


def test_unsupported_suffix(tmp_path: pathlib.Path):
    p = tmp_path / "x.xls"
    p.write_bytes(b"\xd0\xcf\x11\xe0")
    with pytest.raises(InputFileError, match=r"\.xls"):
        rows(p)


def test_headers_marked_as_templates_mark_them_are_recognised(tmp_path: pathlib.Path):
    from node.catalog import load_catalog
    from node.provisioning import bundled_catalog

    item = load_catalog(bundled_catalog()).item("admin_penalty")
    headers = HeaderMap(item.header_map(), frozenset({"CF_XDR_MC"}))
    p = tmp_path / "marked.csv"
    p.write_text("*行政相对人名称, 罚款金额(万元) ,违法事实（必填）,ＣＦ＿ＷＳＨ\nA,1.5,事实,文号1\n", encoding="utf-8")
    [r] = list(read_table(p, headers))
    assert r.values == {"CF_XDR_MC": "A", "CF_NR_FK": "1.5", "CF_SY": "事实", "CF_WSH": "文号1"}


def test_a_row_number_column_is_read_past(tmp_path: pathlib.Path):
    p = tmp_path / "numbered.csv"
    p.write_text("序号,行政相对人名称,处罚决定日期\n1,A,2024-03-01\n2,B,2024-03-02\n", encoding="utf-8")
    assert [r.values for r in rows(p)] == [{"CF_XDR_MC": "A", "CF_JDRQ": "2024-03-01"},
                                          {"CF_XDR_MC": "B", "CF_JDRQ": "2024-03-02"}]


def test_title_rows_above_the_header_are_skipped_and_rows_keep_their_line_numbers(tmp_path: pathlib.Path):
    p = tmp_path / "titled.csv"
    p.write_text("行政处罚信息报送表,,\n填报单位：某局,,\n行政相对人名称,处罚决定日期,备注\nA,2024-03-01,\n",
                 encoding="gbk")
    [r] = rows(p)
    assert r.values["CF_XDR_MC"] == "A" and r.row == 4


def test_xlsx_title_row_is_skipped(tmp_path: pathlib.Path):
    p = tmp_path / "titled.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["行政处罚信息报送表"])
    ws.append(["*行政相对人名称", "*处罚决定日期"])
    ws.append(["某公司", "2024-03-01"])
    wb.save(p)
    [r] = rows(p)
    assert r.values == {"CF_XDR_MC": "某公司", "CF_JDRQ": "2024-03-01"} and r.row == 3


def test_a_header_row_with_one_unknown_column_is_still_refused_not_taken_for_a_title(tmp_path: pathlib.Path):
    p = tmp_path / "one.csv"
    p.write_text("颜色\n红\n", encoding="utf-8")
    with pytest.raises(InputFileError, match="颜色") as err:
        rows(p)
    assert err.value.code == "E_INPUT_HEADER_UNKNOWN"


def test_rows_are_numbered_as_the_spreadsheet_shows_them_when_a_cell_holds_line_breaks(tmp_path: pathlib.Path):
    p = tmp_path / "multiline.csv"
    p.write_text('行政相对人名称,处罚决定日期,备注\nA,2024-03-01,"第一行\n第二行\n第三行"\nB,2024-03-02,\n\nC,2024-03-03,\n',
                 encoding="utf-8")
    assert [(r.row, r.values["CF_XDR_MC"]) for r in rows(p)] == [(2, "A"), (3, "B"), (5, "C")]


def test_an_undecodable_byte_inside_a_multi_line_cell_is_its_rows_problem(tmp_path: pathlib.Path):
    p = tmp_path / "bad.csv"
    p.write_bytes('行政相对人名称,处罚决定日期,备注\nA,2024-03-01,"x\n'.encode() + b"\xff\xfe" +
                  b'"\nB,2024-03-02,\n')
    out = rows(p, encoding="utf-8")
    assert [(r.row, r.problem.code if r.problem else None) for r in out] == [(2, "E_ROW_ENCODING"), (3, None)]


@pytest.mark.parametrize("sep", ["\t", ";", "|"])
def test_tab_semicolon_and_pipe_separated_files_are_read(tmp_path: pathlib.Path, sep: str):
    p = tmp_path / "x.csv"
    p.write_text(f"行政相对人名称{sep}处罚决定日期\n某公司, 分公司{sep}2024-03-01\n", encoding="utf-8")
    [r] = rows(p)
    assert r.values == {"CF_XDR_MC": "某公司, 分公司", "CF_JDRQ": "2024-03-01"}


def test_a_comma_in_a_cell_of_a_comma_file_does_not_change_the_separator(tmp_path: pathlib.Path):
    p = tmp_path / "x.csv"
    p.write_text('行政相对人名称,处罚决定日期,备注\n"A;B\tC",2024-03-01,"x;y"\n', encoding="utf-8")
    [r] = rows(p)
    assert r.values["CF_XDR_MC"] == "A;B\tC" and r.values["BZ"] == "x;y"


def test_xlsx_data_on_the_sheet_after_the_instructions(tmp_path: pathlib.Path):
    p = tmp_path / "two.xlsx"
    wb = openpyxl.Workbook()
    notes = wb.active
    notes.title = "填报说明"
    notes.append(["本表填报说明", "带*为必填项"])
    data = wb.create_sheet("数据")
    data.append(["行政相对人名称", "处罚决定日期"])
    data.append(["某公司", "2024-03-01"])
    wb.save(p)
    [r] = rows(p)
    assert r.values == {"CF_XDR_MC": "某公司", "CF_JDRQ": "2024-03-01"} and r.row == 2


def test_xlsx_without_any_data_sheet_names_the_first_sheets_problem(tmp_path: pathlib.Path):
    p = tmp_path / "none.xlsx"
    wb = openpyxl.Workbook()
    wb.active.append(["颜色", "大小"])
    wb.create_sheet("空")
    wb.save(p)
    with pytest.raises(InputFileError, match="颜色") as err:
        rows(p)
    assert err.value.code == "E_INPUT_HEADER_UNKNOWN"


def _rewrite_sheet(src: pathlib.Path, dst: pathlib.Path, change) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            zout.writestr(info, change(data) if info.filename == "xl/worksheets/sheet1.xml" else data)


def _three_rows(p: pathlib.Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["行政相对人名称", "处罚决定日期", "备注"])
    for i in range(3):
        ws.append([f"公司{i}", "2024-03-01", f"备注{i}"])
    wb.save(p)


@pytest.mark.parametrize("dimension", [b"A1:B2", b"A1"])
def test_xlsx_rows_and_columns_past_a_wrong_recorded_size_are_still_read(tmp_path: pathlib.Path, dimension: bytes):
    good, bad = tmp_path / "good.xlsx", tmp_path / "bad.xlsx"
    _three_rows(good)
    _rewrite_sheet(good, bad, lambda d: re.sub(rb'<dimension ref="[^"]*"', b'<dimension ref="' + dimension + b'"', d))
    assert [r.values for r in rows(bad)] == [{"CF_XDR_MC": f"公司{i}", "CF_JDRQ": "2024-03-01", "BZ": f"备注{i}"}
                                            for i in range(3)]


def test_a_damaged_sheet_is_a_clear_file_error_not_a_traceback(tmp_path: pathlib.Path):
    good, bad = tmp_path / "good.xlsx", tmp_path / "bad.xlsx"
    _three_rows(good)
    _rewrite_sheet(good, bad, lambda d: d[:d.find(b'<row r="3"') + 60])
    with pytest.raises(InputFileError, match="damaged") as err:
        rows(bad)
    assert err.value.code == "E_INPUT_FORMAT"


def test_a_hidden_sheet_is_never_taken_for_the_data(tmp_path: pathlib.Path):
    p = tmp_path / "hidden.xlsx"
    wb = openpyxl.Workbook()
    example = wb.active
    example.title = "示例"
    example.append(["行政相对人名称", "处罚决定日期"])
    example.append(["示例公司(请删除)", "2024-01-01"])
    example.sheet_state = "hidden"
    data = wb.create_sheet("报送数据")
    data.append(["行政相对人名称", "处罚决定日期"])
    data.append(["某公司", "2024-03-01"])
    wb.save(p)
    assert [r.values["CF_XDR_MC"] for r in rows(p)] == ["某公司"]


def test_two_visible_sheets_of_rows_are_refused_before_any_row_is_read(tmp_path: pathlib.Path):
    p = tmp_path / "months.xlsx"
    wb = openpyxl.Workbook()
    for n, title in enumerate(("1月", "2月")):
        ws = wb.active if n == 0 else wb.create_sheet()
        ws.title = title
        ws.append(["行政相对人名称", "处罚决定日期"])
        ws.append([f"公司{n}", "2024-03-01"])
    wb.create_sheet("3月").append(["行政相对人名称", "处罚决定日期"])  # an empty copy of the template is fine
    wb.save(p)
    with pytest.raises(InputFileError, match=r"1月.*2月") as err:
        next(read_table(p, HEADERS))
    assert err.value.code == "E_INPUT_SHEETS"


def test_an_unclosed_quote_is_named_instead_of_swallowing_the_rows_below(tmp_path: pathlib.Path):
    p = tmp_path / "q.csv"
    p.write_text("行政相对人名称,处罚决定日期,备注\nA,2024-03-01,x\nB,2024-03-02,\"never closed\n"
                 "C,2024-03-03,y\nD,2024-03-04,z\n", encoding="utf-8")
    got = rows(p)
    assert got[0].values["CF_XDR_MC"] == "A"
    assert got[1].problem is not None and got[1].problem.code == "E_ROW_MALFORMED" and got[1].row == 3
    assert "4-5" in got[1].problem.message
    # The rows it took in are read again: none is lost, and every row is accounted for.
    assert [(r.row, r.values.get("CF_XDR_MC"), r.values.get("BZ")) for r in got[2:]] == [(4, "C", "y"), (5, "D", "z")]


def test_rows_below_an_unclosed_quote_are_read_again_until_the_end(tmp_path: pathlib.Path):
    lines = [f"公司{i},2024-03-01,备注{i}" for i in range(1, 3001)]
    lines[1] = '公司2,2024-03-01,"never closed'
    lines[2000] = '公司2001,"2024-03-01,oops'  # a second runaway further down
    p = tmp_path / "q.csv"
    p.write_text("行政相对人名称,处罚决定日期,备注\n" + "\n".join(lines) + "\n", encoding="utf-8")
    got = rows(p)
    assert len(got) == 3000 and [r.row for r in got] == list(range(2, 3002))
    refused = [r.row for r in got if r.problem is not None]
    assert refused == [3, 2002]
    assert all(r.values["CF_XDR_MC"] == f"公司{r.row - 1}" for r in got if r.problem is None)


def test_a_file_cut_inside_a_quoted_cell_refuses_its_last_row(tmp_path: pathlib.Path):
    p = tmp_path / "cut.csv"
    p.write_text('行政相对人名称,处罚决定日期,备注\nA,2024-03-01,x\nB,2024-03-02,"经核查，\n该案', encoding="utf-8")
    got = rows(p)
    assert got[0].problem is None
    assert got[1].problem is not None and got[1].problem.code == "E_ROW_MALFORMED" and "cut short" in got[1].problem.message


def test_a_row_short_of_cells_is_refused_naming_what_has_no_cell(tmp_path: pathlib.Path):
    p = tmp_path / "short.csv"
    p.write_text("行政相对人名称,处罚决定日期,备注,,\nA,2024-03-01,x\nB,2024-03-02\nC,2024-03-03,z,,\n",
                 encoding="utf-8")
    got = rows(p)
    assert [r.problem is None for r in got] == [True, False, True]  # trailing blank header cells need none
    assert got[1].problem is not None and got[1].problem.code == "E_ROW_SHAPE" and "BZ" in got[1].problem.message


def test_rows_with_only_their_number_filled_in_are_blank(tmp_path: pathlib.Path):
    p = tmp_path / "numbered.csv"
    p.write_text("序号,行政相对人名称,处罚决定日期,备注\n1,A,2024-03-01,x\n2,,,\n3,,,\n", encoding="utf-8")
    got = rows(p)
    assert [(r.row, r.values.get("CF_XDR_MC")) for r in got] == [(2, "A")]


def test_a_quoted_cell_with_line_breaks_is_not_taken_for_an_unclosed_quote(tmp_path: pathlib.Path):
    p = tmp_path / "q.csv"
    p.write_text('行政相对人名称,处罚决定日期,备注\nA,2024-03-01,"第一行\n第二行, 续"\n', encoding="utf-8")
    [r] = rows(p)
    assert r.problem is None and r.values["BZ"] == "第一行\n第二行, 续"


def test_a_gbk_line_pasted_into_a_utf8_file_is_refused_alone_even_early_in_the_file(tmp_path: pathlib.Path):
    # Within the part read to tell the encoding, as after it: the file is UTF-8, that row is not.
    good = "".join(f"杭州某某{i}有限公司,2024-01-01\n" for i in range(30))
    p = tmp_path / "mixed.csv"
    p.write_bytes(("行政相对人名称,处罚决定日期\n" + good).encode("utf-8") + "杭州另一公司,2024-01-02\n".encode("gbk")
                  + good.encode("utf-8"))
    got = rows(p)
    assert len(got) == 61 and [(r.row, r.problem.code) for r in got if r.problem] == [(32, "E_ROW_ENCODING")]
    assert got[0].values["CF_XDR_MC"] == "杭州某某0有限公司" and got[-1].values["CF_XDR_MC"] == "杭州某某29有限公司"


def test_a_gbk_file_whose_sample_ends_inside_a_character_is_detected(tmp_path: pathlib.Path):
    line = "行政相对人名称,处罚决定日期\n".encode("gbk")
    body = "杭州某某餐饮有限公司,2024/3/1\n".encode("gbk")
    data = line + body * 3000
    for cut in range(60_000, 60_010):  # wherever the sample ends, a character may be cut in two
        assert detect_encoding(data[:cut]) == "gb18030"


def _write_table(p: pathlib.Path, table: list[list[str]]) -> None:
    """``table`` as a UTF-8 CSV or, for ``.xlsx``, one sheet (an empty string: an empty cell)."""
    if p.suffix == ".csv":
        p.write_text("".join(",".join(r) + "\n" for r in table), encoding="utf-8")
        return
    wb = openpyxl.Workbook()
    for r in table:
        wb.active.append([c or None for c in r])
    wb.save(p)


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_a_value_under_a_blank_header_cell_refuses_its_row(tmp_path: pathlib.Path, suffix: str):
    p = tmp_path / f"blank{suffix}"
    _write_table(p, [["行政相对人名称", "处罚决定日期", ""], ["A", "2024-03-01", ""], ["B", "2024-03-02", "XK-001"]])
    got = rows(p)
    assert got[0].problem is None and got[0].values == {"CF_XDR_MC": "A", "CF_JDRQ": "2024-03-01"}
    assert got[1].problem is not None and got[1].problem.code == "E_ROW_SHAPE"
    # A spreadsheet keeps no empty trailing header cell: there, the value lies beyond the header.
    assert "column 3" in got[1].problem.message


def test_a_file_whose_lines_end_in_cr_alone_is_read(tmp_path: pathlib.Path):
    p = tmp_path / "mac.csv"
    p.write_bytes("行政相对人名称,处罚决定日期\r某公司,2024-03-01\r另一公司,2024-03-02\r".encode("gbk"))
    assert [(r.row, r.values["CF_XDR_MC"]) for r in rows(p)] == [(2, "某公司"), (3, "另一公司")]


@pytest.mark.parametrize("first", ["names", "codes"])
@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_a_second_header_row_naming_the_same_columns_is_read_past(tmp_path: pathlib.Path, first: str, suffix: str):
    names, codes = ["行政相对人名称", "处罚决定日期", "备注"], ["CF_XDR_MC", "CF_JDRQ", "BZ"]
    table = [names, codes] if first == "names" else [codes, names]
    table += [["某公司", "2024-03-01", ""], ["行政相对人名称", "2024-03-02", ""]]  # the last one is data
    p = tmp_path / f"two{suffix}"
    _write_table(p, table)
    got = rows(p)
    assert [(r.row, r.values.get("CF_XDR_MC")) for r in got] == [(3, "某公司"), (4, "行政相对人名称")]


_UNICODE_TEXT = "行政相对人名称\t处罚决定日期\t备注\n某公司\t2024-03-01\t第一行\n"


@pytest.mark.parametrize("name", ["utf-16", "UTF-16", "utf16", "utf_16"])
def test_utf16_is_read_whatever_the_encoding_is_called(tmp_path: pathlib.Path, name: str):
    p = tmp_path / "u.txt"
    p.write_bytes(_UNICODE_TEXT.encode("utf-16"))
    [r] = rows(p, encoding=name)
    assert (r.values["CF_XDR_MC"], r.values["BZ"]) == ("某公司", "第一行")


def test_utf16_without_a_bom_is_read_when_named(tmp_path: pathlib.Path):
    p = tmp_path / "u.txt"
    p.write_bytes(_UNICODE_TEXT.encode("utf-16-le"))
    [r] = rows(p, encoding="utf-16-le")
    assert r.values["CF_XDR_MC"] == "某公司"


@pytest.mark.parametrize("data, encoding", [
    (_UNICODE_TEXT.encode("utf-16")[:-1], None),  # one byte cut off the end
    (_UNICODE_TEXT.replace("\t", ",").encode("utf-8"), "utf-16"),  # a UTF-8 file said to be UTF-16
])
def test_a_file_that_is_not_the_utf16_it_seems_is_an_input_error(tmp_path: pathlib.Path, data: bytes,
                                                                 encoding: str | None):
    p = tmp_path / "u.txt"
    p.write_bytes(data)
    with pytest.raises(InputFileError) as caught:
        rows(p, encoding=encoding)
    assert caught.value.code == "E_INPUT_ENCODING" and "utf-16" in caught.value.message


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_a_broken_utf16_character_refuses_only_its_row(tmp_path: pathlib.Path, codec: str):
    # A lone surrogate (half of a character outside the BMP, the other half lost): as a bad UTF-8
    # line, only the row holding it is refused; rows before and after it are read.
    bom = codecs.BOM_UTF16_LE if codec == "utf-16-le" else codecs.BOM_UTF16_BE
    lone = "\ud842".encode(codec, "surrogatepass")
    p = tmp_path / "u.txt"
    p.write_bytes(bom + "行政相对人名称\t处罚决定日期\t备注\r\nA\t2024-03-01\tx\r\n".encode(codec)
                  + "B\t2024-03-02\t".encode(codec) + lone + "\r\nC\t2024-03-03\t\U00020bb7\r\n".encode(codec))
    got = rows(p)
    assert [(r.row, r.problem.code if r.problem else r.values["CF_XDR_MC"]) for r in got] == [
        (2, "A"), (3, "E_ROW_ENCODING"), (4, "C")]
    assert got[2].values["BZ"] == "\U00020bb7"  # a character outside the BMP, whole, is no fault


def test_a_bad_byte_in_a_file_with_lines_ended_by_cr_refuses_only_its_row(tmp_path: pathlib.Path):
    p = tmp_path / "mac.csv"
    p.write_bytes("行政相对人名称,处罚决定日期,备注\rA,2024-03-01,x\r".encode() + b"B,2024-03-02,\xff\xfe\r"
                  + b"C,2024-03-03,y\r")
    got = rows(p, encoding="utf-8")
    assert [(r.row, r.problem.code if r.problem else r.values["CF_XDR_MC"]) for r in got] == [
        (2, "A"), (3, "E_ROW_ENCODING"), (4, "C")]


def test_mac_excel_csv_ends_lines_with_cr_and_breaks_cells_with_lf(tmp_path: pathlib.Path):
    p = tmp_path / "mac.csv"
    p.write_bytes('行政相对人名称,处罚决定日期,备注\r某公司,2024-03-01,"第一行\n第二行"\r另一公司,2024-03-02,x\r'.encode())
    got = rows(p)
    assert [(r.values["CF_XDR_MC"], r.values["BZ"]) for r in got] == [("某公司", "第一行\n第二行"), ("另一公司", "x")]


def test_a_line_of_labelled_notes_above_the_header_is_read_past(tmp_path: pathlib.Path):
    p = tmp_path / "noted.csv"
    p.write_text("行政处罚信息报送表,,\n填报单位：杭州市上城区市场监督管理局,,填报日期：2026-03-01\n"
                 "行政相对人名称,处罚决定日期,备注\n某公司,2024-03-01,x\n", encoding="utf-8")
    [r] = rows(p)
    assert (r.row, r.values["CF_XDR_MC"]) == (4, "某公司")


_TWO_LEVEL = HeaderMap({"行政相对人名称": "CF_XDR_MC", "统一社会信用代码": "CF_XDR_SHXYM", "组织机构代码": "CF_XDR_ZZJG",
                        "处罚决定日期": "CF_JDRQ"}, frozenset({"CF_XDR_MC"}))


def test_a_header_in_two_rows_names_the_columns_under_its_group_cell(tmp_path: pathlib.Path):
    p = tmp_path / "two.csv"
    p.write_text("行政相对人名称,行政相对人代码,,处罚决定日期\n,统一社会信用代码,组织机构代码,\n"
                 "某公司,91330102MA2B3C4D5E,MA2B3C4D-5,2024-03-01\n", encoding="utf-8")
    [r] = list(read_table(p, _TWO_LEVEL))
    assert r.row == 3 and r.values == {"CF_XDR_MC": "某公司", "CF_XDR_SHXYM": "91330102MA2B3C4D5E",
                                       "CF_XDR_ZZJG": "MA2B3C4D-5", "CF_JDRQ": "2024-03-01"}


def test_a_header_naming_an_unknown_column_is_still_refused_naming_it(tmp_path: pathlib.Path):
    p = tmp_path / "bad.csv"
    p.write_text("行政相对人名称,颜色\n某公司,红\n", encoding="utf-8")
    with pytest.raises(InputFileError) as caught:
        rows(p)
    assert caught.value.code == "E_INPUT_HEADER_UNKNOWN" and "颜色" in caught.value.message


@pytest.mark.parametrize(("data", "says"), [(b"PK\x03\x04" + b"\x00" * 100, ".xlsx"),
                                            (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, ".xls")])
def test_a_workbook_named_csv_is_named_for_what_it_is(tmp_path: pathlib.Path, data: bytes, says: str):
    p = tmp_path / "renamed.csv"
    p.write_bytes(data)
    with pytest.raises(InputFileError) as caught:
        rows(p)
    assert caught.value.code == "E_INPUT_FORMAT" and says in caught.value.message


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_a_row_of_required_marks_under_the_header_is_no_record(tmp_path: pathlib.Path, suffix: str):
    p = tmp_path / f"notes{suffix}"
    _write_table(p, [["*行政相对人名称", "*处罚决定日期", "备注"], ["必填", "必填（YYYY-MM-DD）", "选填"],
                     ["某公司", "2024-03-01", "必填"]])  # a value that is a word of the notes is still data
    assert [(r.row, r.values, r.problem) for r in rows(p)] == [
        (3, {"CF_XDR_MC": "某公司", "CF_JDRQ": "2024-03-01", "BZ": "必填"}, None)]


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
@pytest.mark.parametrize("notes", [
    # The 双公示 templates' own row of instructions under the header.
    ["必填项，填写公民、法人及非法人组织名称", "必填项，填写做出行政处罚决定的具体日期，格式为YYYY/MM/DD", "选填项，填写其他需要补充的信息"],
    ["请填写行政相对人名称", "请填写处罚决定日期", "请填写备注"],  # each column's own name
    ["文本，最多200字", "日期型（YYYY-MM-DD）", ""],
    ["VARCHAR(200)", "DATE", "VARCHAR2(500)"],
    ["填写说明：带*为必填项", "", ""],  # a note across the columns, or an example row, by its label
    ["注：日期格式为YYYY-MM-DD", "", ""],
    ["示例", "2024-01-01", "这一行是示例"],
])
def test_a_row_explaining_the_columns_under_the_header_is_no_record(tmp_path: pathlib.Path, suffix: str,
                                                                    notes: list[str]):
    p = tmp_path / f"notes{suffix}"
    _write_table(p, [["*行政相对人名称", "*处罚决定日期", "备注"], notes, ["某公司", "2024-03-01", ""],
                     ["请填写公司", "2024-03-02", "此项必填"]])  # below the first record, every row is data
    assert [(r.row, r.values["CF_XDR_MC"], r.values.get("BZ") or "", r.problem) for r in rows(p)] == [
        (3, "某公司", "", None), (4, "请填写公司", "此项必填", None)]


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_a_record_right_under_the_header_is_not_taken_for_notes(tmp_path: pathlib.Path, suffix: str):
    # One cell of a record may hold a word of the notes: it takes most of them to make a row of notes.
    p = tmp_path / f"record{suffix}"
    _write_table(p, [["行政相对人名称", "处罚决定日期", "备注"], ["某公司", "2024-03-01", "未按规定填写年报"]])
    assert [(r.row, r.values["BZ"]) for r in rows(p)] == [(2, "未按规定填写年报")]


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_the_forms_closing_lines_under_the_data_are_no_records(tmp_path: pathlib.Path, suffix: str):
    p = tmp_path / f"footer{suffix}"
    _write_table(p, [["行政相对人名称", "处罚决定日期", "备注"], ["某公司", "2024-03-01", ""],
                     ["填表人：张三", "审核人：李四", "填报日期：2024年3月5日"], ["填表人：", "张三", ""],
                     ["", "", "填报单位（盖章）："], ["注：本表数据截至2024年3月5日", "", ""],
                     ["联想公司", "2024-03-02", ""]])
    assert [(r.row, r.values["CF_XDR_MC"]) for r in rows(p)] == [(2, "某公司"), (7, "联想公司")]


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_a_row_of_sums_under_the_data_is_no_record(tmp_path: pathlib.Path, suffix: str):
    p = tmp_path / f"total{suffix}"
    _write_table(p, [["行政相对人名称", "处罚决定日期", "备注"], ["合计公司", "2024-03-01", ""],
                     ["某公司", "2024-03-02", "合计"], ["合 计", "", "2条"], ["总计：2条", "", ""]])
    assert [(r.row, r.values["CF_XDR_MC"]) for r in rows(p)] == [(2, "合计公司"), (3, "某公司")]


_ENCRYPTED = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 500 + "EncryptedPackage".encode("utf-16-le")


@pytest.mark.parametrize(("name", "data", "says"), [
    ("renamed.xlsx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "old Excel 97-2003 (.xls)"),
    ("report.et", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "old Excel 97-2003 (.xls) or WPS (.et)"),
    ("locked.xlsx", _ENCRYPTED, "protected by a password"),
    ("export.xls", "<html><body><table><tr><td>行政相对人名称</td></tr></table>".encode(), "web page"),
    ("export.xls", b'<?xml version="1.0"?><Workbook xmlns="urn:schemas-microsoft-com:office:spreadsheet">',
     "Excel 2003 XML"),
    ("data.xlsx", "行政相对人名称,处罚决定日期\n某公司,2024-03-01\n".encode("gbk"), "name it .csv"),
    ("book.xls", b"PK\x03\x04" + b"\x00" * 100, "an .xlsx workbook named .xls"),
])
def test_a_file_named_as_a_workbook_that_is_no_xlsx_is_named_for_what_it_is(tmp_path: pathlib.Path, name: str,
                                                                            data: bytes, says: str):
    p = tmp_path / name
    p.write_bytes(data)
    with pytest.raises(InputFileError) as caught:
        rows(p)
    assert caught.value.code == "E_INPUT_FORMAT" and says in caught.value.message


def test_a_cell_exported_as_excels_text_formula_is_read_as_its_text(tmp_path: pathlib.Path):
    p = tmp_path / "export.csv"
    p.write_bytes('行政相对人名称,处罚决定日期,备注\r\n="某公司",="2024-03-01",\r\n'
                  '另一公司,2024-03-02,"=""引用"""\r\n第三公司,2024-03-03,"=""a"" b"\r\n'.encode("gbk"))
    assert [r.values for r in rows(p)] == [
        {"CF_XDR_MC": "某公司", "CF_JDRQ": "2024-03-01", "BZ": ""},
        {"CF_XDR_MC": "另一公司", "CF_JDRQ": "2024-03-02", "BZ": "引用"},
        {"CF_XDR_MC": "第三公司", "CF_JDRQ": "2024-03-03", "BZ": '="a" b'}]  # not a text formula: as written


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_a_refused_header_names_its_row(tmp_path: pathlib.Path, suffix: str):
    p = tmp_path / f"colours{suffix}"
    _write_table(p, [["行政处罚信息"], ["行政相对人名称", "处罚决定日期", "颜色"], ["A", "2024-03-01", "红"]])
    with pytest.raises(InputFileError) as err:
        rows(p)
    where = "row 2" if suffix == ".csv" else "sheet 「Sheet」 row 2"
    assert err.value.code == "E_INPUT_HEADER_UNKNOWN"
    assert err.value.message == f"{where}, read as the header: unknown column(s): 颜色"


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_a_header_below_more_title_rows_than_are_read_past_is_refused_saying_so(tmp_path: pathlib.Path,
                                                                                 suffix: str):
    p = tmp_path / f"deep{suffix}"
    _write_table(p, [[f"说明第{n}条"] for n in range(1, 13)] + [["行政相对人名称", "处罚决定日期"], ["A", "2024-03-01"]])
    with pytest.raises(InputFileError) as err:
        rows(p)
    assert "row 11, read as the header: unknown column(s): 说明第11条" in err.value.message
    assert "must come within the first 11 rows" in err.value.message


def test_a_file_without_a_header_is_refused_saying_what_the_header_is(tmp_path: pathlib.Path):
    p = tmp_path / "data.csv"
    p.write_text("某公司,2024-03-01\n", encoding="utf-8")
    with pytest.raises(InputFileError) as err:
        rows(p)
    assert err.value.message.startswith("row 1, read as the header: unknown column(s): 某公司, 2024-03-01; it names "
                                        "no column")


def test_a_file_of_nul_bytes_is_refused_saying_so(tmp_path: pathlib.Path):
    # What a copy that never finished leaves (the space reserved, nothing written): it read as a
    # header with one cell, refused for every required column missing.
    p = tmp_path / "zeros.csv"
    p.write_bytes(b"\x00" * 4096)
    with pytest.raises(InputFileError) as err:
        rows(p)
    assert err.value.code == "E_INPUT_EMPTY" and "NUL" in err.value.message


def test_a_file_in_no_encoding_the_node_can_tell_is_an_encoding_error(tmp_path: pathlib.Path):
    p = tmp_path / "binary.csv"
    p.write_bytes(bytes(range(128, 256)) * 64)
    with pytest.raises(InputFileError) as err:
        rows(p)
    assert err.value.code == "E_INPUT_ENCODING" and "--encoding" in err.value.message


@pytest.mark.parametrize("ending", ["\r\n\x1a", "\x1a", "\r\n\x1a\r\n"])
def test_the_end_of_file_mark_old_dos_exports_write_is_no_row(tmp_path: pathlib.Path, ending: str):
    # FoxPro, dBase and other DOS-era exports end the file with Ctrl-Z (0x1A); a spreadsheet shows no row for it.
    p = tmp_path / "dos.csv"
    p.write_bytes(("行政相对人名称,处罚决定日期\r\n某公司,2024-03-01\r\n另一公司,2024-03-02" + ending).encode("gbk"))
    got = rows(p)
    assert [(r.row, r.problem, r.values["CF_XDR_MC"], r.values["CF_JDRQ"]) for r in got] == [
        (2, None, "某公司", "2024-03-01"), (3, None, "另一公司", "2024-03-02")]


def test_an_end_of_file_mark_with_rows_after_it_is_still_refused_as_a_row(tmp_path: pathlib.Path):
    p = tmp_path / "joined.csv"
    p.write_bytes("行政相对人名称,处罚决定日期\r\n某公司,2024-03-01\r\n\x1a\r\n另一公司,2024-03-02\r\n".encode("gbk"))
    assert [(r.row, r.problem.code if r.problem else None) for r in rows(p)] == [
        (2, None), (3, "E_ROW_SHAPE"), (4, None)]


@pytest.mark.parametrize("bad", [b"\x80", b"\xff", b"\xa1"])  # Windows' euro sign (cp936), a stray byte, half a character
def test_a_gbk_file_with_one_bad_byte_near_its_start_refuses_only_that_row(tmp_path: pathlib.Path, bad: bytes):
    p = tmp_path / "gbk.csv"
    p.write_bytes("行政相对人名称,处罚决定日期\n杭州甲公司,2024/3/1\n".encode("gbk")
                  + "杭州乙公司".encode("gbk") + bad + b",2024/3/2\n" + "杭州丙公司,2024/3/3\n".encode("gbk"))
    got = rows(p)
    assert [r.problem.code if r.problem else r.values["CF_XDR_MC"] for r in got] == [
        "杭州甲公司", "E_ROW_ENCODING", "杭州丙公司"]
    assert got[1].row == 3


@pytest.mark.parametrize("numbers", [["1", "2", "3"], ["(1)", "(2)", "(3)"], ["（1）", "（2）", "（3）"],
                                     [1, 2, 3], [1.0, 2.0, 3.0], ["甲", "乙", "1"]])
@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_a_row_numbering_the_columns_under_the_header_is_no_record(tmp_path: pathlib.Path, suffix: str,
                                                                  numbers: list[object]):
    # Forms kept for statistics number their columns (栏次) in a row under the header.
    p = tmp_path / f"numbered{suffix}"
    table: list[list[object]] = [["行政相对人名称", "处罚决定日期", "备注"], numbers, ["某公司", "2024-03-01", ""]]
    if suffix == ".csv":
        p.write_text("".join(",".join(str(c) for c in r) + "\n" for r in table), encoding="utf-8")
    else:
        wb = openpyxl.Workbook()
        for r in table:
            wb.active.append([c if c != "" else None for c in r])
        wb.save(p)
    assert [(r.row, r.values["CF_XDR_MC"], r.problem) for r in rows(p)] == [(3, "某公司", None)]


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_numbers_not_counting_the_columns_under_the_header_are_still_a_row(tmp_path: pathlib.Path, suffix: str):
    p = tmp_path / f"numbers{suffix}"
    _write_table(p, [["行政相对人名称", "处罚决定日期", "备注"], ["1", "3", "2"], ["某公司", "2024-03-01", ""]])
    assert [r.row for r in rows(p)] == [2, 3]


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_a_header_cell_giving_the_name_and_the_code_together_is_that_column(tmp_path: pathlib.Path, suffix: str):
    p = tmp_path / f"both{suffix}"
    _write_table(p, [["行政相对人名称(CF_XDR_MC)", "CF_JDRQ（处罚决定日期）", "备注 BZ"], ["某公司", "2024-03-01", "无"]])
    assert [r.values for r in rows(p)] == [{"CF_XDR_MC": "某公司", "CF_JDRQ": "2024-03-01", "BZ": "无"}]


def test_a_header_cell_whose_name_and_code_disagree_is_refused(tmp_path: pathlib.Path):
    p = tmp_path / "mixed.csv"
    p.write_text("行政相对人名称(CF_JDRQ),处罚决定日期\n某公司,2024-03-01\n", encoding="utf-8")
    with pytest.raises(InputFileError) as caught:
        rows(p)
    assert caught.value.code == "E_INPUT_HEADER_UNKNOWN" and "行政相对人名称(CF_JDRQ)" in caught.value.message


@pytest.mark.parametrize("again", [["行政相对人名称", "处罚决定日期", "备注"], ["CF_XDR_MC", "CF_JDRQ", "BZ"]])
@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_the_header_again_between_records_is_no_record(tmp_path: pathlib.Path, suffix: str, again: list[str]):
    # Two exports pasted into one file: the second one's header sits between the records.
    p = tmp_path / f"pasted{suffix}"
    _write_table(p, [["行政相对人名称", "处罚决定日期", "备注"], ["甲公司", "2024-03-01", ""], again,
                     ["乙公司", "2024-03-02", ""]])
    assert [(r.row, r.values["CF_XDR_MC"], r.problem) for r in rows(p)] == [(2, "甲公司", None), (4, "乙公司", None)]


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_a_missing_required_column_is_named_as_the_file_names_its_columns_and_by_code(tmp_path: pathlib.Path,
                                                                                       suffix: str):
    p = tmp_path / f"missing{suffix}"
    _write_table(p, [["行政相对人名称", "备注"], ["某公司", ""]])
    with pytest.raises(InputFileError) as err:
        rows(p)
    assert err.value.code == "E_INPUT_HEADER_MISSING" and err.value.field == "CF_JDRQ"
    assert "处罚决定日期 (CF_JDRQ)" in err.value.message


def test_nul_bytes_where_the_next_row_should_be_say_the_file_was_not_written_to_the_end(tmp_path: pathlib.Path):
    # A copy or a save that stopped on a disk that had reserved the file's size: NUL bytes to its end.
    p = tmp_path / "cut.csv"
    p.write_bytes("行政相对人名称,处罚决定日期\nA,2024-01-01\nB,2024-01-02\n".encode() + b"\x00" * 4000)
    got = rows(p)
    assert [r.values.get("CF_XDR_MC") for r in got[:2]] == ["A", "B"]
    assert len(got) == 3 and got[2].problem is not None and got[2].row == 4
    assert got[2].problem.code == "E_ROW_MALFORMED" and "NUL" in got[2].problem.message


def test_quoted_cells_with_a_space_after_each_separator_are_read(tmp_path: pathlib.Path):
    # How some database tools and scripts write CSV: "a", "b".
    p = tmp_path / "spaced.csv"
    p.write_text('"行政相对人名称", "处罚决定日期", "备注"\n"甲公司, 分店", "2024-01-01", ""\n', encoding="utf-8")
    assert [r.values for r in rows(p)] == [{"CF_XDR_MC": "甲公司, 分店", "CF_JDRQ": "2024-01-01", "BZ": ""}]


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_a_title_row_of_a_few_cells_that_name_no_column_is_read_past(tmp_path: pathlib.Path, suffix: str):
    # The form's title and its month, or the unit and its seal, side by side above the header.
    p = tmp_path / f"titled{suffix}"
    _write_table(p, [["行政处罚信息公示表", "", "2026年11月"], ["单位：某局", "（盖章）", ""],
                     ["行政相对人名称", "处罚决定日期", "备注"], ["某公司", "2024-03-01", ""]])
    assert [(r.row, r.values["CF_XDR_MC"]) for r in rows(p)] == [(4, "某公司")]
