"""``node/cells.py``: what a cell holds before its field reads it."""

from __future__ import annotations

import pytest

from node.cells import NOT_VALUES, misread_as_latin1


@pytest.mark.parametrize(("text", "charset"), [("杭州张三餐饮有限公司", "gbk"), ("杭州张三", "utf-8")])
def test_chinese_bytes_read_as_latin1_are_recognised_with_what_they_say(text: str, charset: str) -> None:
    garbled = text.encode(charset).decode("latin1")
    assert misread_as_latin1(garbled) == ("GBK" if charset == "gbk" else "UTF-8", text)


@pytest.mark.parametrize("name", ["Société Générale", "Müller GmbH", "Größe", "Comunicações", "25°C", "Ñandú"])
def test_western_text_is_not_taken_for_garbled_chinese(name: str) -> None:
    assert misread_as_latin1(name) is None


def test_placeholders_and_spreadsheet_errors_are_not_values() -> None:
    assert {"无", "/", "null", "ＮＵＬＬ", "#N/A", "#DIV/0!"} <= NOT_VALUES
    assert "0" not in NOT_VALUES and "否" not in NOT_VALUES
