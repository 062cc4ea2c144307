"""A second export pasted under the first with its columns in another order is not read under the first header."""

import pathlib

import pytest

from node.errors import InputFileError
from tests.test_tabular import _write_table, rows


@pytest.mark.parametrize("again", [["处罚决定日期", "行政相对人名称", "备注"], ["CF_JDRQ", "CF_XDR_MC", "BZ"],
                                   ["备注", "行政相对人名称", "处罚决定日期"]])
@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_the_header_again_in_another_order_stops_the_file_there_naming_its_row(tmp_path: pathlib.Path, suffix: str,
                                                                              again: list[str]):
    # Read under the first header, the second export's names would land in its dates and back again.
    p = tmp_path / f"pasted{suffix}"
    _write_table(p, [["行政相对人名称", "处罚决定日期", "备注"], ["甲公司", "2024-03-01", ""], again,
                     ["2024-03-02", "乙公司", ""]])
    read: list[object] = []
    with pytest.raises(InputFileError) as err:
        for r in rows_lazily(p):
            read.append(r)
    assert err.value.code == "E_INPUT_HEADER_AGAIN"
    assert "row 3" in err.value.message and "another order" in err.value.message
    assert [(r.row, r.values["CF_XDR_MC"]) for r in read] == [(2, "甲公司")]  # what came before is read


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_a_record_whose_values_happen_to_be_column_names_is_still_a_record(tmp_path: pathlib.Path, suffix: str):
    p = tmp_path / f"odd{suffix}"
    _write_table(p, [["行政相对人名称", "处罚决定日期", "备注"], ["甲公司", "2024-03-01", "处罚决定日期"]])
    assert [(r.row, r.values["BZ"]) for r in rows(p)] == [(2, "处罚决定日期")]


def rows_lazily(p: pathlib.Path):  # type: ignore[no-untyped-def]
    from node.tabular import read_table
    from tests.test_tabular import HEADERS

    return read_table(p, HEADERS)
