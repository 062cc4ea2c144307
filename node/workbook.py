"""Reading a department's XLSX workbook: which sheet holds the rows, and its rows by field code.

Split from :mod:`node.tabular` (which reads CSV and owns the header rules both share): a workbook
adds sheets (instructions, hidden examples, monthly copies), sizes recorded wrongly by the tools
that wrote it, and damage found only while reading.
"""

from __future__ import annotations

import pathlib
import zipfile
import zlib
from collections.abc import Iterator

from node.errors import InputFileError, Problem
from node.tabular import (
    MAX_TITLE_ROWS,
    HeaderMap,
    SourceRow,
    clean_header,
    under_unnamed,
    unnamed_columns,
)

__all__ = ["read_xlsx"]

# What a damaged workbook raises while its rows are read (the archive opened, a sheet's XML or
# compression broken further in).
_DAMAGE: tuple[type[Exception], ...] = (SyntaxError, zipfile.BadZipFile, zlib.error, EOFError, KeyError,
                                        ValueError, OSError)


def read_xlsx(path: pathlib.Path, headers: HeaderMap) -> Iterator[SourceRow]:
    import openpyxl  # imported late: only xlsx imports pay for it
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, OSError, KeyError, ValueError) as exc:
        raise InputFileError(f"{path.name} is not a readable .xlsx workbook: {exc}", code="E_INPUT_FORMAT") from None
    try:
        # The visible sheet whose header names the columns: workbooks often open with a sheet of
        # instructions (填报说明) and keep the data on the next one; a hidden sheet (an example,
        # a lookup list) is never data.
        refused: InputFileError | None = None
        found: list[tuple[str, list[str | None], list[int], Iterator[tuple[int, tuple[object, ...]]]]] = []
        for ws in wb.worksheets:
            if getattr(ws, "sheet_state", "visible") != "visible":
                continue
            # Read-only mode trusts the size the writing tool recorded, and some record it wrong:
            # rows and columns past it would be dropped without a word.
            ws.reset_dimensions()  # type: ignore[union-attr]
            rows = enumerate(ws.iter_rows(values_only=True), start=1)
            try:
                header = _sheet_header(rows, headers)
            except InputFileError as exc:
                refused = refused or exc
                continue
            if header is None:
                continue
            first_data = _first_data(rows)
            if first_data is None and found:
                continue  # a second template left empty: nothing to take from it
            found.append((ws.title, header[0], header[1], _chain(first_data, rows)))
            if len(found) > 1:
                names = "、".join(f"「{t}」" for t, *_ in found)
                raise InputFileError(f"{path.name}: sheets {names} both hold rows of this template; keep one data "
                                     "sheet per file (or hide the others)", code="E_INPUT_SHEETS")
        if not found:
            raise refused or InputFileError(f"{path.name} has no header row", code="E_INPUT_EMPTY")
        _title, codes, unnamed, data = found[0]
        yield from _sheet_rows(data, codes, unnamed, headers)
    except _DAMAGE as exc:
        raise InputFileError(f"{path.name} is damaged and cannot be read to the end ({type(exc).__name__}: {exc}); "
                             "save it again from the spreadsheet program", code="E_INPUT_FORMAT") from None
    finally:
        wb.close()


def _first_data(rows: Iterator[tuple[int, tuple[object, ...]]]) -> tuple[int, tuple[object, ...]] | None:
    for rownum, cells in rows:
        if _filled(cells):
            return rownum, cells
    return None


def _chain(first: tuple[int, tuple[object, ...]] | None,
           rest: Iterator[tuple[int, tuple[object, ...]]]) -> Iterator[tuple[int, tuple[object, ...]]]:
    if first is not None:
        yield first
        yield from rest


def _sheet_header(rows: Iterator[tuple[int, tuple[object, ...]]],
                  headers: HeaderMap) -> tuple[list[str | None], list[int]] | None:
    """The codes of a sheet's header row (and its blank cells), read past the titles above it;
    None for an empty sheet."""
    titles: list[list[object]] = []
    for _rownum, cells in rows:
        if len(titles) < MAX_TITLE_ROWS and headers.is_title(list(cells)):
            titles.append(list(cells))
        elif any(clean_header(c) for c in cells):
            return headers.resolve(list(cells)), unnamed_columns(cells)
    if titles:
        headers.resolve(titles[0])  # a one-column sheet whose column is not known: refused, named
    return None


def _sheet_rows(rows: Iterator[tuple[int, tuple[object, ...]]], codes: list[str | None],
                unnamed: list[int], headers: HeaderMap) -> Iterator[SourceRow]:
    width = len(codes)
    first_data = True
    for rownum, cells in rows:
        if not _filled(cells):
            continue
        if first_data:
            first_data = False
            if headers.repeats(cells, codes):
                continue  # the header again, in its other form
        if len(cells) > width and _filled(cells[width:]):
            yield SourceRow(rownum, {}, Problem("E_ROW_SHAPE", "", "row has cells beyond the header", row=rownum))
            continue
        if unnamed and (problem := under_unnamed(cells, unnamed, rownum)) is not None:
            yield SourceRow(rownum, {}, problem)
            continue
        yield SourceRow(rownum, {code: cells[i] for i, code in enumerate(codes) if code is not None and i < len(cells)})


def _filled(cells: tuple[object, ...]) -> bool:
    return any(c is not None and str(c).strip() for c in cells)
