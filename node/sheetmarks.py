"""What the values of a workbook's sheet do not show, read from its XML: merged blocks, formulas
never calculated, hidden rows.

openpyxl's read-only sheets (the only kind that reads a big workbook in bounded memory) keep no
merged cells and no row dimensions, and give a formula without a saved result as an empty cell;
:mod:`node.workbook` needs all three to read rows as the department saw them. The sheet's XML is
scanned once more, in chunks.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

__all__ = ["SheetMarks", "hidden_columns", "sheet_marks"]


class SheetMarks(NamedTuple):
    """What the values of a read-only sheet do not show: merged blocks, formulas never calculated,
    hidden rows (openpyxl's read-only sheets keep no row dimensions)."""

    merged: list[tuple[int, int, int, int]]  # first row, first column (0-based), last row, last column
    uncalculated: dict[int, list[int]]  # row -> columns (0-based) of formulas without a saved result
    hidden: frozenset[int] = frozenset()  # rows hidden by hand, by a filter or in a collapsed group
    filtered: bool = False  # the sheet has a filter (autoFilter): a hidden row is most likely filtered out


_NS = rb"(?:\w+:)?"
_MERGE = re.compile(rb"<" + _NS + rb'mergeCell ref="([A-Z]{1,3})(\d+):([A-Z]{1,3})(\d+)"')
# A cell holding a formula and no value (or an empty one): a workbook written by a library, whose
# results only a spreadsheet program computes. Read for its value, it looks empty. An empty value
# in a cell typed as text (t="str") is a result, the empty string (=IF(C2="","",…)), which Excel
# saves so: the cell's attributes and the empty value (group 1) tell the two apart. Formulas are
# found first (few cells have one), then their cell's tag, whose attributes come in any order.
_FORMULA = re.compile(rb"<" + _NS + rb"f[\s>/]")
_UNCALCULATED_END = re.compile(
    rb"(?:<" + _NS + rb"f[^>]*/>|<" + _NS + rb"f[^>]*>[^<]*</" + _NS + rb"f>)"
    rb"(<" + _NS + rb"v\s*/>|<" + _NS + rb"v></" + _NS + rb"v>)?</" + _NS + rb"c>")
_CELL_TAG = re.compile(rb"<" + _NS + rb"c\s[^<>]*>")
_CELL_REF = re.compile(rb'\sr="([A-Z]{1,3})(\d+)"')
_TEXT_RESULT = re.compile(rb'\st="str"')
# A row element marked hidden (Excel writes hidden="1" for rows hidden by hand, filtered out by an
# autoFilter or folded in a collapsed group), and its number. The attribute is searched for (a
# literal: fast), then its element's name: a scan for every <row> cost half as much again.
_HIDDEN = re.compile(rb'hidden="(?:1|true)"')
_ROW_START = re.compile(rb"<" + _NS + rb"row\s")
_ROW_NUMBER = re.compile(rb'\sr="(\d+)"')
# A column definition (<col min="2" max="2" hidden="1"/>), in the <cols> part before the sheet's data.
_COL = re.compile(rb"<" + _NS + rb"col\s[^>]*>")
_COL_MIN = re.compile(rb'\smin="(\d+)"')
_COL_MAX = re.compile(rb'\smax="(\d+)"')
_MAX_COLUMNS = 16384
_CHUNK = 1 << 20
_OVERLAP = 1 << 16  # longer than any cell with a formula (Excel caps formulas at 8,192 characters)


def sheet_marks(ws: Any, *, placeholders: bool = False) -> SheetMarks:
    """Scan a sheet's XML for merged blocks, uncalculated formulas and hidden rows, in chunks (bounded memory).

    ``placeholders``: the workbook asks to be calculated when it is opened (``fullCalcOnLoad``), so
    the results saved with its formulas are whatever its writer put there (XlsxWriter saves 0 for
    each): every formula counts as never calculated. A spreadsheet program that calculates the
    workbook clears the flag when it saves it (ECMA-376 Part 1, 18.2.2 calcPr).
    """
    from openpyxl.utils import column_index_from_string

    merged: set[tuple[int, int, int, int]] = set()
    uncalculated: dict[int, set[int]] = {}
    hidden: set[int] = set()
    filtered = False
    try:
        source = ws._get_source()  # read-only sheets keep their XML in the archive: read it once more
    except (AttributeError, KeyError):
        return SheetMarks([], {})
    with source:
        tail = b""
        while True:
            chunk = source.read(_CHUNK)
            text = tail + chunk
            for m in _MERGE.finditer(text):
                merged.add((int(m[2]), column_index_from_string(m[1].decode()) - 1,
                            int(m[4]), column_index_from_string(m[3].decode()) - 1))
            for m in _FORMULA.finditer(text):
                end = None if placeholders else _UNCALCULATED_END.match(text, m.start())
                if end is None and not placeholders:
                    continue  # its result is saved
                tag = text[text.rfind(b"<", 0, m.start()):m.start()]  # a formula is its cell's first child
                if not _CELL_TAG.fullmatch(tag) or (ref := _CELL_REF.search(tag)) is None:
                    continue
                if end is not None and end[1] and _TEXT_RESULT.search(tag):
                    continue  # an empty text result, saved
                uncalculated.setdefault(int(ref[2]), set()).add(column_index_from_string(ref[1].decode()) - 1)
            for m in _HIDDEN.finditer(text):
                start = text.rfind(b"<", 0, m.start())  # the tag's name is matched with whitespace after
                tag = text[start:text.find(b">", m.end()) + 1]
                if (text[m.start() - 1:m.start()].isspace() and _ROW_START.match(tag)
                        and (number := _ROW_NUMBER.search(tag)) is not None):
                    hidden.add(int(number[1]))
            filtered = filtered or b"<autoFilter" in text or b":autoFilter" in text
            if not chunk:
                break
            tail = text[-_OVERLAP:]  # matches found again in it are the same cells (sets)
    return SheetMarks(sorted(merged), {row: sorted(cols) for row, cols in uncalculated.items()}, frozenset(hidden),
                      filtered)


def hidden_columns(ws: Any) -> frozenset[int]:
    """The columns (0-based) a sheet hides: read only to say why a refused header names a column
    the sender cannot see, so only the head of the sheet's XML, where <cols> comes, is read."""
    try:
        source = ws._get_source()
    except (AttributeError, KeyError):
        return frozenset()
    with source:
        head = source.read(_CHUNK)
    end = head.find(b"sheetData")
    hidden: set[int] = set()
    for m in _COL.finditer(head if end < 0 else head[:end]):
        tag = m[0]
        if _HIDDEN.search(tag) and (low := _COL_MIN.search(tag)) and (high := _COL_MAX.search(tag)):
            hidden.update(range(int(low[1]) - 1, min(int(high[1]), _MAX_COLUMNS)))
    return frozenset(hidden)
