"""Reading a department's XLSX workbook: which sheet holds the rows, and its rows by field code.

Split from :mod:`node.tabular` (which reads CSV and owns the header rules both share): a workbook
adds sheets (instructions, hidden examples, monthly copies), sizes recorded wrongly by the tools
that wrote it, and damage found only while reading.
"""

from __future__ import annotations

import functools
import pathlib
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from node.errors import InputFileError, Problem
from node.mergedcells import MergedBlocks
from node.nonrecords import is_footer, is_notes, is_total
from node.sheetmarks import SheetMarks, hidden_columns, sheet_marks
from node.tabular import (
    MAX_TITLE_ROWS,
    HeaderMap,
    SourceRow,
    clean_header,
    counted_columns,
    refused_header,
    under_unnamed,
    unnamed_columns,
)
from node.values import from_1904_workbook

__all__ = ["read_xlsx", "refuse_non_xlsx"]

# What a damaged workbook raises while its rows are read (the archive opened, a sheet's XML or
# compression broken further in).
_DAMAGE: tuple[type[Exception], ...] = (SyntaxError, zipfile.BadZipFile, zlib.error, EOFError, KeyError,
                                        ValueError, OSError)
# What openpyxl itself raises on parts it cannot take: a style of the wrong kind (TypeError, e.g.
# "expected <class 'openpyxl.styles.fills.Fill'>" for the empty <fill/> some exporters write), a
# cell naming a shared string or style the workbook lacks (IndexError). Caught only around
# openpyxl's own calls, so that an error of this module is never passed off as a damaged file.
_OPENPYXL_DAMAGE: tuple[type[Exception], ...] = (*_DAMAGE, TypeError, IndexError)


_OLE2 = b"\xd0\xcf\x11\xe0"  # the Compound File signature (.xls, .et, an encrypted .xlsx)
_RESAVE = "open it in Excel or WPS and save it as an Excel 工作簿 (.xlsx), or as CSV"


def refuse_non_xlsx(path: pathlib.Path) -> None:
    """Refuse a file named like a workbook that is no .xlsx, saying what it is: an operator sees
    only a spreadsheet that opens in Excel, and "File is not a zip file" tells them nothing."""
    try:
        with path.open("rb") as fh:
            head = fh.read(1 << 16)
    except OSError as exc:
        raise InputFileError(f"cannot open {path.name}: {exc.strerror}") from None
    suffix = path.suffix.lower()
    if head.startswith(b"PK\x03\x04"):
        if suffix in (".xlsx", ".xlsm"):
            return
        raise InputFileError(f"{path.name} is an .xlsx workbook named {suffix}: name it .xlsx", code="E_INPUT_FORMAT")
    if not head.strip():
        raise InputFileError(f"{path.name} is empty", code="E_INPUT_EMPTY")
    if head.startswith(_OLE2):
        # Excel and WPS keep a workbook with a password to open it in this container too.
        if "EncryptedPackage".encode("utf-16-le") in head:
            why = "is protected by a password to open it: remove the password (文件 → 信息 → 保护工作簿) and save it again"
        else:
            why = f"is in the old Excel 97-2003 (.xls) or WPS (.et) format, not .xlsx: {_RESAVE}"
    else:
        text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
        if text.startswith((b"<html", b"<!doctype html", b"<table", b"<meta")) or b"<table" in text:
            # What many web systems hand out as "Excel": an HTML table under a spreadsheet name.
            why = f"is a web page (an HTML table) saved under a spreadsheet name, not a workbook: {_RESAVE}"
        elif text.startswith(b"<?xml") and b"urn:schemas-microsoft-com:office:spreadsheet" in text:
            why = f"is an Excel 2003 XML spreadsheet, not .xlsx: {_RESAVE}"
        elif b"\x00" not in head:
            why = "is a text file (a CSV?), not a workbook: if it is CSV, name it .csv"
        else:
            why = f"is not an .xlsx workbook (its content is no spreadsheet this node reads): {_RESAVE}"
    raise InputFileError(f"{path.name} {why}", code="E_INPUT_FORMAT")


# openpyxl holds a workbook's shared strings (each distinct text in it) in memory whole, and a part
# of a zip may claim gigabytes in a few kilobytes. Real parts are XML, which compresses 5-30 times.
MAX_PART_BYTES = 1 << 30
MAX_PART_RATIO = 200
# The namespace of Excel's "Strict Open XML Spreadsheet" (.xlsx too), which openpyxl does not read.
_STRICT = b"purl.oclc.org/ooxml/spreadsheetml/main"
_RATIO_FROM_BYTES = 64 << 20


def refuse_bomb(path: pathlib.Path) -> None:
    """Refuse a workbook with a part bigger than any real one, or compressed as no XML compresses."""
    try:
        with zipfile.ZipFile(path) as book:
            parts = book.infolist()
            if any(part.filename == "xl/workbook.xml" and part.file_size < MAX_PART_BYTES for part in parts):
                with book.open("xl/workbook.xml") as xml:
                    strict = _STRICT in xml.read(4096)
                if strict:
                    # openpyxl reads no sheet of it, and the file would read as one without a header.
                    raise InputFileError(f'{path.name} is saved as "Strict Open XML", which this node does not '
                                         f"read: {_RESAVE}", code="E_INPUT_FORMAT")
    except _DAMAGE as exc:
        raise InputFileError(f"{path.name} is not a readable .xlsx workbook: {exc}", code="E_INPUT_FORMAT") from None
    for part in parts:
        ratio = part.file_size / max(part.compress_size, 1)
        if part.file_size > MAX_PART_BYTES or (part.file_size > _RATIO_FROM_BYTES and ratio > MAX_PART_RATIO):
            raise InputFileError(
                f"{path.name}: its part {part.filename} would unpack to {part.file_size >> 20} MB from "
                f"{part.compress_size >> 10} KB, which no real workbook does (at most {MAX_PART_BYTES >> 20} MB, "
                f"{MAX_PART_RATIO} times): {_RESAVE}", code="E_INPUT_FORMAT")


def read_xlsx(path: pathlib.Path, headers: HeaderMap) -> Iterator[SourceRow]:
    import openpyxl  # imported late: only xlsx imports pay for it
    from openpyxl.utils.datetime import CALENDAR_MAC_1904
    from openpyxl.utils.exceptions import InvalidFileException

    refuse_bomb(path)
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, *_OPENPYXL_DAMAGE) as exc:
        raise InputFileError(f"{path.name} is not a readable .xlsx workbook ({exc}): {_RESAVE}",
                             code="E_INPUT_FORMAT") from None
    try:
        # The visible sheet whose header names the columns: workbooks often open with a sheet of
        # instructions (填报说明) and keep the data on the next one; a hidden sheet (an example,
        # a lookup list) is never data.
        refused: InputFileError | None = None
        found: list[tuple[str, _Header, Iterator[tuple[int, tuple[object, ...]]], bool, Any]] = []
        hidden: list[str] = []
        for ws in wb.worksheets:
            if getattr(ws, "sheet_state", "visible") != "visible":
                hidden.append(ws.title)
                continue
            # Read-only mode trusts the size the writing tool recorded, and some record it wrong:
            # rows and columns past it would be dropped without a word.
            ws.reset_dimensions()  # type: ignore[union-attr]
            rows = enumerate(_cell_values(ws, path), start=1)
            try:
                header = _sheet_header(rows, headers, ws.title, functools.partial(hidden_columns, ws))
            except InputFileError as exc:
                refused = refused or exc
                continue
            if header is None:
                continue
            first_data = _first_data(rows, header, headers)
            if first_data is None and found:
                continue  # a second template left empty: nothing to take from it
            # A template left empty before the data sheet gives way to it.
            found = [f for f in found if f[3]]
            found.append((ws.title, header, _chain(first_data, rows), first_data is not None, ws))
            if len(found) > 1:
                names = "、".join(f"「{t}」" for t, *_ in found)
                raise InputFileError(f"{path.name}: sheets {names} both hold rows of this template; keep one data "
                                     "sheet per file (or hide the others)", code="E_INPUT_SHEETS")
        if not found:
            error = refused or InputFileError(f"{path.name} has no header row", code="E_INPUT_EMPTY")
            if hidden:  # perhaps the data is there: say so, rather than only what the visible sheet lacks
                names = "、".join(f"「{t}」" for t in hidden)
                error = type(error)(f"{error.message} (hidden sheets are never read, and this workbook hides "
                                    f"{names}: unhide the data sheet)", field=error.field, code=error.code)
            raise error
        _title, header, data, _has_data, sheet = found[0]
        rows_out = _sheet_rows(data, header, sheet_marks(sheet, placeholders=_calculated_on_load(wb)), headers)
        if wb.epoch == CALENDAR_MAC_1904:
            rows_out = _in_1904_system(rows_out)
        yield from rows_out
    except _DAMAGE as exc:
        raise _damaged(path, exc) from None
    finally:
        wb.close()


def _damaged(path: pathlib.Path, exc: Exception) -> InputFileError:
    return InputFileError(f"{path.name} is damaged and cannot be read to the end ({type(exc).__name__}: {exc}); "
                          "save it again from the spreadsheet program", code="E_INPUT_FORMAT")


def _cell_values(ws: Any, path: pathlib.Path) -> Iterator[tuple[object, ...]]:
    """A sheet's rows of values, openpyxl's failures on a damaged sheet made a file error."""
    rows = ws.iter_rows(values_only=True)
    while True:
        try:
            cells = next(rows)
        except StopIteration:
            return
        except _OPENPYXL_DAMAGE as exc:
            raise _damaged(path, exc) from None
        if any(type(c) is str and "_x" in c for c in cells):
            cells = tuple(_ESCAPE.sub(_escaped, c) if type(c) is str else c for c in cells)
        yield cells


# XML cannot hold a carriage return or most control characters: Excel writes them as _xHHHH_
# (ECMA-376 ST_Xstring; a line break pasted from Windows text is "_x000D_" then LF), and openpyxl
# hands the escapes over as written. Only characters XML cannot hold are read back: Excel escapes no
# other, and "_x4E2D_" typed into a cell stays text (a typed "_x000D_", which Excel saves as
# "_x005F_x000D_" and openpyxl gives back as "_x000D_", is the one case read as a line break).
_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def _escaped(m: re.Match[str]) -> str:
    code = int(m[1], 16)
    if code == 0:
        return ""  # a NUL is never data, and PostgreSQL refuses it in any text a refusal quotes
    return chr(code) if code < 0x20 or 0x7F <= code <= 0x9F or code >= 0xFFFE else m[0]


def _in_1904_system(rows: Iterator[SourceRow]) -> Iterator[SourceRow]:
    # openpyxl dates the cells formatted as dates in the workbook's own system; a bare number in
    # a date column (a General-formatted cell) is a serial of that system too, which only
    # validation, knowing the column is a date, can read (values.Serial1904Int).
    for r in rows:
        yield r._replace(values={k: from_1904_workbook(v) for k, v in r.values.items()}) if r.values else r


class _Header(NamedTuple):
    row: int
    codes: list[str | None]
    unnamed: list[int]
    counted: list[int]  # the columns that make a row more than blank (not its 序号)
    names: list[str]  # the header cells as the file writes them (for messages)


def _first_data(rows: Iterator[tuple[int, tuple[object, ...]]], header: _Header,
                headers: HeaderMap) -> tuple[int, tuple[object, ...]] | None:
    """The first row under the header that may be a record: not the header again in its other
    form (codes under names), nor a row of notes (必填/选填, 填写说明, an example); a template holding
    only those is empty."""
    for rownum, cells in rows:
        if (_filled(cells, header) and not headers.repeats(cells, header.codes)
                and not is_notes(cells, header.names)):
            return rownum, cells
    return None


def _chain(first: tuple[int, tuple[object, ...]] | None,
           rest: Iterator[tuple[int, tuple[object, ...]]]) -> Iterator[tuple[int, tuple[object, ...]]]:
    if first is not None:
        yield first
        yield from rest


def _sheet_header(rows: Iterator[tuple[int, tuple[object, ...]]], headers: HeaderMap,
                  sheet: str = "", hidden: Callable[[], frozenset[int]] = frozenset) -> _Header | None:
    """A sheet's header row, read past the titles above it; None for an empty sheet."""
    titles: list[list[object]] = []
    first_title = 0  # the row of titles[0]
    for rownum, cells in rows:
        if len(titles) < MAX_TITLE_ROWS and headers.is_title(list(cells)):
            first_title = first_title or rownum
            titles.append(list(cells))
        elif any(clean_header(c) for c in cells):
            read: list[int] = []  # the number of the row below, if it was read
            try:
                codes, combined = headers.resolve_rows(cells, functools.partial(_next_cells, rows, read))
            except InputFileError as exc:
                refused = refused_header(exc, rownum, cells, headers, len(titles), sheet)
                raise _naming_hidden(refused, cells, headers, hidden) from None
            if combined is not None:  # a header in two rows: the data starts below the second
                rownum, cells = read[0], tuple(combined)
            return _Header(rownum, codes, unnamed_columns(cells), counted_columns(cells),
                           [clean_header(c) for c in cells])
    if titles:  # a narrow sheet whose columns are not known: its first row was the header after all
        try:
            headers.resolve(titles[0])
        except InputFileError as exc:
            raise refused_header(exc, first_title, titles[0], headers, 0, sheet) from None
    return None


def _naming_hidden(exc: InputFileError, cells: tuple[object, ...], headers: HeaderMap,
                   hidden: Callable[[], frozenset[int]]) -> InputFileError:
    """``exc``, saying which of the unknown columns it names the sheet hides: the sender sees no
    such column, and would not know where to look."""
    if exc.code != "E_INPUT_HEADER_UNKNOWN":
        return exc
    from openpyxl.utils import get_column_letter

    columns = hidden()
    unseen = [f"column {get_column_letter(i + 1)} ({name})" for i, c in enumerate(cells)
              if i in columns and (name := clean_header(c)) and not headers.known([name])]
    if not unseen:
        return exc
    return InputFileError(f"{exc.message}; {', '.join(unseen)} is hidden in the sheet: unhide the columns to "
                          "see it, then delete it or name it as a field", field=exc.field, code=exc.code)


# The workbook's calculation properties asking for a full calculation when it is opened.
_CALC_ON_LOAD = re.compile(rb"<(?:\w+:)?calcPr\s[^>]*\bfullCalcOnLoad=\"(?:1|true)\"")


def _calculated_on_load(wb: Any) -> bool:
    """Whether the workbook asks to be calculated on opening (read from its XML: openpyxl's parsed
    calcPr says so by default when the attribute is absent)."""
    archive = getattr(wb, "_archive", None)
    if archive is None:
        return False
    names = archive.namelist()
    part = "xl/workbook.xml" if "xl/workbook.xml" in names else next((n for n in names if n.endswith("workbook.xml")), None)
    return part is not None and _CALC_ON_LOAD.search(archive.read(part)) is not None


def _next_cells(rows: Iterator[tuple[int, tuple[object, ...]]], read: list[int]) -> tuple[object, ...] | None:
    got = next(rows, None)
    if got is None:
        return None
    read.append(got[0])
    return got[1]


def _sheet_rows(rows: Iterator[tuple[int, tuple[object, ...]]], header: _Header,
                marks: SheetMarks, headers: HeaderMap) -> Iterator[SourceRow]:
    codes, unnamed = header.codes, header.unnamed
    width = len(codes)
    merged = MergedBlocks([m for m in marks.merged if m[0] > header.row])  # of the data, not of the titles
    header_again = headers.again(codes, header.names)
    for rownum, cells in rows:
        if merged.pending:
            cells = merged.fill(rownum, cells)
        if not _filled(cells, header) or is_total(cells) or is_footer(cells) or header_again(cells, rownum):
            continue  # blank, a row of sums (合计), the form's closing line (填表人：…), a pasted export's header
        if merged.pending and (spanned := merged.across(codes)):
            names = ", ".join(header.names[i] or str(codes[i]) for i in spanned)
            yield SourceRow(rownum, {}, Problem(
                "E_ROW_SHAPE", codes[spanned[0]] or "", f"{names} are one merged cell: which of them its value is "
                "cannot be known; unmerge the cells and write each value in its own column", row=rownum))
            continue
        if len(cells) > width and _any_value(cells[width:]):
            beyond = [i + 1 for i in range(width, len(cells)) if _any_value((cells[i],))]
            yield SourceRow(rownum, {}, Problem("E_ROW_SHAPE", "", f"column {', '.join(map(str, beyond[:5]))} has a "
                                                "value but no header", row=rownum))
            continue
        if unnamed and (problem := under_unnamed(cells, unnamed, rownum)) is not None:
            yield SourceRow(rownum, {}, problem)
            continue
        blind = [(c, header.names[i]) for i in marks.uncalculated.get(rownum, ())
                 if i < width and (c := codes[i]) is not None]
        if blind:
            named = ", ".join(f"{name} ({code})" if name and name != code else code for code, name in blind)
            yield SourceRow(rownum, {}, Problem(
                "E_FIELD_FORMULA", blind[0][0], f"{named}: the cell holds a formula whose "
                "result was never calculated (the file was written by a program, not saved by a spreadsheet "
                "program): open and save it in Excel or WPS, or write the values", row=rownum))
            continue
        values = {code: cells[i] for i, code in enumerate(codes) if code is not None and i < len(cells)}
        if rownum in marks.hidden:
            yield SourceRow(rownum, values, warning=_hidden_row(rownum, marks.filtered))
            continue
        yield SourceRow(rownum, values)


def _hidden_row(rownum: int, filtered: bool) -> Problem:
    """The warning on a row the sheet hides: read, as the file holds it, but the sender may not have seen it."""
    how = "filtered out (the sheet's filter hides it)" if filtered else "hidden in the sheet"
    return Problem("W_ROW_HIDDEN", "", f"row {rownum} is {how} and was read like every other row: hiding a row "
                   "does not take it out of the file (if it is not meant to be reported, delete it there, and "
                   "report revoked the record it made)", row=rownum, warning=True)


def _filled(cells: tuple[object, ...], header: _Header) -> bool:
    """Whether a row holds anything but its row number (a template numbered in advance is blank)."""
    width = len(header.codes)
    return any(_any_value((cells[i],)) for i in header.counted if i < len(cells)) or (
        len(cells) > width and _any_value(cells[width:]))


def _any_value(cells: tuple[object, ...]) -> bool:
    return any(c is not None and str(c).strip() for c in cells)
