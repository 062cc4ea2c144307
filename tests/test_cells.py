"""``node/cells.py``: what a cell holds before its field reads it."""

from __future__ import annotations

import pytest

from node.cells import NOT_VALUES, latin1_shaped, misread_as_latin1


@pytest.mark.parametrize(("text", "charset"), [("杭州张三餐饮有限公司", "gbk"), ("杭州张三", "utf-8")])
def test_chinese_bytes_read_as_latin1_are_recognised_with_what_they_say(text: str, charset: str) -> None:
    garbled = text.encode(charset).decode("latin1")
    assert misread_as_latin1(garbled) == ("GBK" if charset == "gbk" else "UTF-8", text)


def _as_mariadb_reads_latin1(raw: bytes) -> str:
    """Bytes as MySQL/MariaDB read a latin1 column: Windows-1252, its five undefined bytes as U+0081 …"""
    return "".join(bytes([b]).decode("cp1252", errors="ignore") or chr(b) for b in raw)


@pytest.mark.parametrize(("text", "charset"), [("杭州张三餐饮有限公司", "utf-8"), ("张喆堃", "gbk"),
                                               ("杭州市张喆堃餐饮店", "gbk")])
def test_chinese_bytes_read_as_windows_1252_are_recognised_with_what_they_say(text: str, charset: str) -> None:
    garbled = _as_mariadb_reads_latin1(text.encode(charset))
    assert max(garbled) > "\xff"  # holds ž, œ, † …: past what an ISO 8859-1 reading gives
    assert latin1_shaped(garbled)
    assert misread_as_latin1(garbled) == ("GBK" if charset == "gbk" else "UTF-8", text)


@pytest.mark.parametrize("name", ["Société Générale", "Müller GmbH", "Größe", "Comunicações", "25°C", "Ñandú",
                                  "Škoda Auto a.s.", "Œuvres d’Art", "Price 5€ – 10€", "“Müller” GmbH",
                                  "Ærøskøbing Café — “Nord”", "Ÿvonne Žižek"])
def test_western_text_is_not_taken_for_garbled_chinese(name: str) -> None:
    assert latin1_shaped(name) and misread_as_latin1(name) is None


def test_placeholders_and_spreadsheet_errors_are_not_values() -> None:
    assert {"无", "/", "null", "ＮＵＬＬ", "#N/A", "#DIV/0!"} <= NOT_VALUES
    assert "0" not in NOT_VALUES and "否" not in NOT_VALUES
