"""node/codelist.py: the codes of a 核查 list, read as a department's file holds them."""

from __future__ import annotations

import pathlib

from node.codelist import read_codes

ORG = "91350100M000100Y43"  # the standard's worked example (DOMAIN §2)
ORG2 = "91330100MA27XL0E2K"


def test_a_gb18030_list_of_codes_is_read(tmp_path: pathlib.Path) -> None:
    p = tmp_path / "codes.csv"
    p.write_bytes("名称,统一社会信用代码\n杭州某某公司,91330102MA2K3L4P5Q\n".encode("gb18030"))
    assert read_codes(p) == ["91330102MA2K3L4P5Q"]


def test_a_list_of_codes_in_gbk_or_with_a_bom_is_read(tmp_path: pathlib.Path) -> None:
    p = tmp_path / "codes.txt"
    p.write_bytes(f"统一社会信用代码\n{ORG}\n".encode("gbk"))
    assert read_codes(p) == [ORG]
    p.write_bytes(f"{ORG}\n{ORG2}\n".encode("utf-8-sig"))
    assert read_codes(p) == [ORG, ORG2]
