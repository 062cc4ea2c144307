import codecs
import pathlib

import openpyxl
import pytest

from node.errors import InputFileError
from node.tabular import HeaderMap, detect_encoding, read_table

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
    with pytest.raises(InputFileError, match="颜色"):
        rows(p)


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
    with pytest.raises(InputFileError, match="not a readable"):
        rows(p)


def test_unsupported_suffix(tmp_path: pathlib.Path):
    p = tmp_path / "x.xls"
    p.write_bytes(b"\xd0\xcf\x11\xe0")
    with pytest.raises(InputFileError, match=r"\.xls"):
        rows(p)
