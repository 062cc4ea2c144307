"""What a cell holds before its field's converter reads it: the first look :mod:`node.validation` takes.

A department's cell may say "no value" in words (无, /, null: the cell counts as empty, so a
required field written so is missing, not filled), hold a spreadsheet's error value (#N/A: a
formula failed), or hold Chinese text whose GBK or UTF-8 bytes a latin1 connection turned into
Latin letters (º¼ÖÝ for 杭州). The first is nothing; the other two are problems naming the field.
"""

from __future__ import annotations

import re
from typing import Final

from node.catalog import Item
from node.errors import Problem
from node.identifiers import NEEDS_NORMALIZING, NEEDS_NORMALIZING_PROSE

__all__ = ["BLANKS", "DIRT", "DIRT_PROSE", "NOT_VALUES", "NO_VALUE", "SHORT", "SPREADSHEET_ERRORS", "is_value",
           "latin1_shaped", "misread", "misread_as_latin1"]

# What departments write in a cell that has no value ("无", "/", "-", "null"): an empty cell, so a
# required field so written is missing, not filled. Compared after normalisation (full width folded).
_NO_VALUE_ASCII = ("/", "-", "--", "null", "NULL", "Null", "none", "None", "NONE", "N/A", "n/a", "NA")
_FULL_WIDTH = {c: c + 0xFEE0 for c in range(0x21, 0x7F)}
NO_VALUE: Final = frozenset({"无", "—", "——", *_NO_VALUE_ASCII, *(v.translate(_FULL_WIDTH) for v in _NO_VALUE_ASCII)})
# Error values a spreadsheet shows when a formula failed: never data.
SPREADSHEET_ERRORS: Final = frozenset({"#N/A", "#VALUE!", "#REF!", "#DIV/0!", "#NUM!", "#NAME?", "#NULL!",
                                       "#SPILL!", "#CALC!", "#GETTING_DATA"})
NOT_VALUES: Final = NO_VALUE | SPREADSHEET_ERRORS
BLANKS: Final = " \t\r\n\u3000\u00a0"  # stripped before a cell is compared with NOT_VALUES
SHORT: Final = max(len(v) for v in NOT_VALUES) + 4  # longer cells are values: no lookup
# The fast path's test for "nothing to normalise", widened by U+00A1-U+00FF: a cell with a latin1
# letter or sign takes the slow path, where one made only of such characters is tested for Chinese
# read through a latin1 connection (mojibake). One character class, so no cost on other cells.
_LATIN1: Final = "\u00a1-\u00ff]"
_SHOWN: Final = 40  # characters of a garbled cell (and of what it should read) a message shows
DIRT: Final = re.compile(NEEDS_NORMALIZING.pattern[:-1] + _LATIN1)
DIRT_PROSE: Final = re.compile(NEEDS_NORMALIZING_PROSE.pattern[:-1] + _LATIN1)


def misread(cell: str, code: str, item: Item, problems: list[Problem], row: int) -> bool:
    """True (after its problem) for a cell of Chinese text garbled by a latin1 connection."""
    found = misread_as_latin1(cell)
    if found is None:
        return False
    charset, text = found
    # UTF-8 read as latin1 holds C1 controls (U+0080-U+009F): shown escaped, not written into a result file.
    shown = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in cell[:_SHOWN])
    shown, text = shown + ("…" if len(cell) > _SHOWN else ""), text[:_SHOWN] + ("…" if len(text) > _SHOWN else "")
    problems.append(Problem("E_FIELD_ENCODING", code, f'{item.field(code).label}: "{shown}" is {charset} '
                            f'text read as latin1 (it reads "{text}"); read the source with its own character set '
                            f"({charset}, e.g. the database connection's charset), not latin1", row))
    return True


def is_value(cell: str, code: str, item: Item, problems: list[Problem], invalid: set[str], row: int) -> bool:
    """False for a placeholder (the cell counts as empty) or a spreadsheet error (a problem)."""
    s = cell.strip(BLANKS)
    if s in NO_VALUE:
        return False
    if s in SPREADSHEET_ERRORS:
        problems.append(Problem("E_FIELD_SPREADSHEET_ERROR", code, f"{item.field(code).label}: the cell holds "
                                f"the spreadsheet error {s} (a formula failed), not a value", row))
        invalid.add(code)
        return False
    return True


# MySQL's and MariaDB's latin1 is Windows-1252: bytes 0x80-0x9F read as € ‚ ƒ „ … † ‡ ˆ ‰ Š ‹ Œ Ž
# ‘ ’ “ ” • – — ˜ ™ š › œ ž Ÿ (past U+00FF; the five bytes it leaves undefined read as U+0081 …).
# Nearly every UTF-8 Chinese character, and GBK's extension (喆 is 0x86 0xB4), has such a byte.
_WINDOWS_1252: Final = {bytes([b]).decode("cp1252"): chr(b) for b in range(0x80, 0xA0)
                        if b not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)}
_AS_BYTES: Final = str.maketrans(_WINDOWS_1252)
# Stops at the first character no latin1 reading gives: in Chinese text, the first one.
_NOT_LATIN1: Final = re.compile("[^\x00-\xff" + "".join(_WINDOWS_1252) + "]")


def latin1_shaped(value: str) -> bool:
    """True when every character of ``value`` is one a latin1 connection can give (ISO 8859-1,
    or Windows-1252 as MySQL and MariaDB read latin1): the values :func:`misread` looks at."""
    return _NOT_LATIN1.search(value) is None


# CJK ideographs (unified, extension A, compatibility): what a garbled Chinese value reads as.
_CJK: Final = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_ASCII_LETTERS: Final = re.compile("[A-Za-z]")


def misread_as_latin1(value: str) -> tuple[str, str] | None:
    """(charset, text) when ``value`` is Chinese text whose GBK or UTF-8 bytes were read as latin1.

    A legacy database written in GBK and read through a latin1 connection gives
    ``º¼ÖÝÕÅÈý`` for 杭州张三. Callers pass only values with a character in U+0080-U+00FF and
    otherwise only ASCII or Windows-1252's letters (:func:`latin1_shaped`: such a value holds no
    Chinese, so it cannot be Chinese read correctly).
    Its latin1 bytes are the source's bytes: garbled when they decode strictly as UTF-8 into
    text with Chinese in it, or as GBK into text that is mostly Chinese, every character made of
    two non-ASCII bytes. Western text passes: an accented letter stands between ASCII letters
    (``Société``: é and t would be one GBK character), and where two meet (``Größe``: öß) one
    ideograph among the Latin letters is not Chinese text.
    """
    raw = value.translate(_AS_BYTES).encode("latin1")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return ("UTF-8", text) if _CJK.search(text) else None
    try:
        text = raw.decode("gbk")
    except UnicodeDecodeError:
        return None
    high = len(raw) - len(value.encode("ascii", "ignore"))
    cjk = len(_CJK.findall(text))
    if (high % 2 == 0 and len(text) == len(value) - high // 2  # no ASCII byte inside a character
            and cjk >= 2 and 2 * cjk >= len(_ASCII_LETTERS.findall(text))):
        return "GBK", text
    return None
