"""Reading department files (CSV, XLSX) as a stream of rows keyed by catalogue field codes.

Departments hand over spreadsheets whose header row is the Chinese field name or the column code
(DOMAIN §3). This module holds what both kinds of file share — the header rules (``HeaderMap``),
the row (``SourceRow``) and ``read_table``, which picks the reader: :mod:`node.csvfile` for CSV
(encodings, separators, quotes) and :mod:`node.workbook` for XLSX (sheets, merged blocks).
Files are streamed: memory stays bounded whatever the size. A row the parser cannot make sense
of becomes a row-level problem, not an abort, so everything before and after it is still imported.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import NamedTuple

from node.catalog import normalize_header
from node.errors import InputFileError, Problem

# Columns spreadsheets add for the people filling them in, never data: read past, not refused.
BOOKKEEPING: frozenset[str] = frozenset({normalize_header(h) for h in ("序号", "行号", "NO.", "NO")})
# Names a spreadsheet program gives a workbook; only .xlsx/.xlsm are read, the others named for what they hold.
_WORKBOOKS: frozenset[str] = frozenset({".xlsx", ".xlsm", ".xls", ".et", ".xlt", ".ett", ".xltx"})
# How many title or note rows (one filled cell, not a known header) may sit above the header row.
MAX_TITLE_ROWS = 10


# A row above the header naming no column, of at most this many cells, is a title (行政处罚信息公示表 and
# its month, 单位：某局 and （盖章）): no header of any item is so narrow.
_TITLE_CELLS = 3
# A note above the header: a short label, a full-width or ASCII colon, then its value.
_LABELLED = re.compile(r"^[^:：]{1,12}[:：]")


class SourceRow(NamedTuple):
    """One data row: its 1-based line/row number in the file and its cells by field code.

    A named tuple: a big file makes millions, and it is built about three times faster than a
    frozen dataclass.
    """

    row: int
    values: Mapping[str, object]
    problem: Problem | None = None  # the row could not be parsed at all
    warning: Problem | None = None  # read, but with a word for its sender (W_ROW_HIDDEN: a hidden row)


def _without_unit(key: str) -> str:
    return key[:key.rfind("(")] if key.endswith(")") else key


def clean_header(h: object) -> str:
    text = "" if h is None else str(h)
    return text.replace("\ufeff", "").replace("\u3000", " ").strip()


class HeaderMap:
    """Maps a file's header row to field codes; refuses unknown and missing required columns.

    A header is looked up as the catalogue files it (:func:`normalize_header`): width, case,
    whitespace and the marks templates add (``*行政相对人名称``, ``罚款金额(万元)``,
    ``违法事实（必填）``) do not matter.
    """

    def __init__(self, accepted: Mapping[str, str], required: frozenset[str]) -> None:
        self._accepted = {normalize_header(k): v for k, v in accepted.items()}
        self._written = frozenset(accepted) | frozenset(accepted.values())  # as a file may write them
        self._required = required
        # Names with a unit, by the name without it: "罚款金额" or "罚款金额（元）" for a column in
        # 万元 is refused, never read as 万元, and the refusal says which column was meant.
        self._with_unit = {_without_unit(k): k for k in self._accepted if k.endswith(")")}
        self._codes = sorted({normalize_header(v) for v in accepted.values()}, key=len, reverse=True)
        # Each field's first header that is not its code (the catalogue's Chinese name): a missing
        # column is named so, as a file with Chinese headers knows it.
        self._names: dict[str, str] = {}
        for header, code in accepted.items():
            if normalize_header(header) != normalize_header(code):
                self._names.setdefault(code, header)

    def code_of(self, key: str) -> str | None:
        """The field a normalised header names: as the catalogue files it, or as its name and its
        code together (行政相对人名称(CF_XDR_MC), CF_XDR_MC 行政相对人名称: templates that show both
        in one cell), when the two name the same field."""
        found = self._accepted.get(key)
        if found is not None or not any("A" <= ch <= "Z" for ch in key):
            return found
        for code in self._codes:  # longest first: CF_NR_FK is not CF_NR followed by _FK…
            if key.startswith(code):
                rest = key[len(code):]
                rest = rest[1:-1] if rest.startswith("(") and rest.endswith(")") else rest
            elif key.endswith(f"({code})"):
                rest = key[:-len(code) - 2]
            elif key.endswith(code):
                rest = key[:-len(code)]
            else:
                continue
            if rest and (found := self._accepted.get(rest)) is not None and normalize_header(found) == code:
                return found
        return None

    def known(self, cells: list[str]) -> int:
        """How many of ``cells`` name a column (to tell which separator a header row uses)."""
        return sum(1 for c in cells if self.code_of(normalize_header(clean_header(c).strip('"'))) is not None)

    def repeats(self, cells: Sequence[object], codes: Sequence[str | None]) -> bool:
        """Whether a row under the header names the same columns again (templates often carry the
        Chinese names and the column codes as two header rows): every filled cell under a known
        column names that very column, and at least two do."""
        named = 0
        for cell, code in zip(cells, codes, strict=False):
            text = clean_header(cell)
            if not text or code is None:
                continue
            if self.code_of(normalize_header(text)) != code:
                return False
            named += 1
        return named >= 2

    def again(self, codes: Sequence[str | None],
              names: Sequence[object]) -> Callable[[Sequence[object], int], bool]:
        """A test for a row between the records that is the header again, as names or as codes (two
        exports pasted into one file): its first named column's cell is a column's name or code,
        then :meth:`repeats` decides. The header again with its columns in another order refuses
        the rest of the file: read under the first header its values would land in other fields.
        Asked of every row, so the first look is one set lookup."""
        first = next((i for i, c in enumerate(codes) if c is not None), None)
        if first is None:
            return lambda _cells, _row: False
        marks = {clean_header(names[first]), codes[first]} if first < len(names) else {codes[first]}
        anywhere = {clean_header(h) for h in self._written} | marks

        def is_header(cells: Sequence[object], row: int) -> bool:
            cell = cells[first] if first < len(cells) else None
            if not isinstance(cell, str) or cell.strip() not in anywhere:
                return False
            if cell.strip() in marks and self.repeats(cells, codes):
                return True
            if self._reordered(cells, codes):
                raise InputFileError(
                    f"row {row} is the header again with its columns in another order (two exports pasted into "
                    "one file): the rows below it cannot be read under the first header; send them as a file of "
                    "their own", code="E_INPUT_HEADER_AGAIN")
            return False
        return is_header

    def _reordered(self, cells: Sequence[object], codes: Sequence[str | None]) -> bool:
        """Every filled cell names a column, at least two do, and one stands under another column."""
        named = moved = 0
        for i, cell in enumerate(cells):
            text = clean_header(cell)
            if not text:
                continue
            found = self.code_of(normalize_header(text))
            if found is None:
                return False
            named += 1
            moved += found != (codes[i] if i < len(codes) else None)
        return named >= 2 and moved > 0

    def _named(self, header: str) -> str:
        meant = self._with_unit.get(_without_unit(normalize_header(header)))
        return header if meant is None else f"{header} (the column is {meant}: give the amounts in that unit)"

    def is_title(self, cells: list[object]) -> bool:
        """A row above the header that is a title or a note: a few filled cells, or only "label：value"
        cells (填报单位：…, 填报日期：…), none of them a known column."""
        filled = [h for h in (clean_header(c) for c in cells) if h]
        if not filled or any(self.code_of(normalize_header(h)) is not None for h in filled):
            return False
        return len(filled) <= _TITLE_CELLS or all(_LABELLED.match(h) for h in filled)

    def resolve_rows(self, top: Sequence[object], below: Callable[[], Sequence[object] | None]
                     ) -> tuple[list[str | None], list[object] | None]:
        """The codes of header row ``top``; and, when it names columns not known here, perhaps a
        header in two rows (a group cell such as 行政相对人代码 over the columns it spans, their
        names in the row ``below()`` reads): each column named by its lower cell where it has one.

        Returns the codes and the combined header (None when ``top`` alone was the header). When
        the two rows together do not name every column either, ``top``'s own refusal is raised.
        """
        try:
            return self.resolve(list(top)), None
        except InputFileError as exc:
            if exc.code != "E_INPUT_HEADER_UNKNOWN":
                raise
            sub = below()
            if sub is not None and any(clean_header(c) for c in sub):
                width = max(len(top), len(sub))
                combined = [sub[i] if i < len(sub) and clean_header(sub[i]) else (top[i] if i < len(top) else None)
                            for i in range(width)]
                try:
                    return self.resolve(combined), combined
                except InputFileError:
                    pass
            raise exc from None

    def resolve(self, headers: list[object]) -> list[str | None]:
        codes: list[str | None] = []
        unknown: list[str] = []
        seen: dict[str, str] = {}
        for raw in headers:
            h = clean_header(raw)
            key = normalize_header(h)
            if not key or key in BOOKKEEPING:
                codes.append(None)  # an empty trailing column from spreadsheet tools, or a row number
                continue
            code = self.code_of(key)
            if code is None:
                unknown.append(h)
            elif code in seen:
                raise InputFileError(f"columns {seen[code]!r} and {h!r} both mean {code}", field=code,
                                     code="E_INPUT_HEADER_DUPLICATE")
            else:
                seen[code] = h
            codes.append(code)
        if unknown:
            raise InputFileError(f"unknown column(s): {', '.join(self._named(h) for h in unknown)}",
                                 code="E_INPUT_HEADER_UNKNOWN")
        missing = sorted(self._required - set(seen))
        if missing:
            named = ", ".join(f"{self._names[c]} ({c})" if c in self._names else c for c in missing)
            raise InputFileError(f"missing required column(s): {named}", field=missing[0],
                                 code="E_INPUT_HEADER_MISSING")
        return codes


def refused_header(exc: InputFileError, row: int, cells: Sequence[object], headers: HeaderMap, titles: int,
                   sheet: str = "") -> InputFileError:
    """``exc``, a refusal of the row taken for the header, naming that row (and sheet); when the row
    names no column at all, why it was taken for the header: it is the first with several cells
    filled, or the first after as many title rows as are read past."""
    where = f"sheet 「{sheet}」 row {row}" if sheet else f"row {row}"
    message = f"{where}, read as the header: {exc.message}"
    if exc.code == "E_INPUT_HEADER_UNKNOWN" and not headers.known([clean_header(c) for c in cells]):
        if titles >= MAX_TITLE_ROWS:
            message += (f"; it names no column: the header row (the field names or column codes) must come within "
                        f"the first {MAX_TITLE_ROWS + 1} rows, as at most {MAX_TITLE_ROWS} title or note rows above "
                        "it are read past")
        else:
            message += ("; it names no column: the header row (the field names or column codes, as `catalog "
                        "template` writes them) must be the first row with several cells filled")
    return InputFileError(message, field=exc.field, code=exc.code)


def counted_columns(header_row: Sequence[object]) -> list[int]:
    """Positions of the columns whose cells make a row more than blank: all but row numbers (序号)."""
    return [i for i, h in enumerate(header_row) if normalize_header(clean_header(h)) not in BOOKKEEPING]


def unnamed_columns(header_row: Sequence[object]) -> list[int]:
    """Positions of header cells left blank (a column of values nobody named)."""
    return [i for i, h in enumerate(header_row) if not normalize_header(clean_header(h))]


def under_unnamed(cells: Sequence[object], unnamed: list[int], row: int) -> Problem | None:
    """A value under a blank header cell: which field it is cannot be known, so the row is refused
    rather than stored without it."""
    filled = [i for i in unnamed if i < len(cells) and cells[i] is not None and str(cells[i]).strip()]
    if not filled:
        return None
    where = ", ".join(str(i + 1) for i in filled)
    return Problem("E_ROW_SHAPE", "", f"column {where} has a value but no header: name the column in the header "
                   "row or clear it", row=row)


def read_table(path: pathlib.Path, headers: HeaderMap, *, encoding: str | None = None,
               on_bytes: Callable[[int], None] | None = None) -> Iterator[SourceRow]:
    """Rows of a .csv or .xlsx file; ``on_bytes`` sees how far a CSV has been read (progress)."""
    suffix = path.suffix.lower()
    if suffix in _WORKBOOKS:
        from node.workbook import read_xlsx, refuse_non_xlsx  # a module of its own, loaded for workbooks only

        refuse_non_xlsx(path)
        return read_xlsx(path, headers)
    if suffix in (".csv", ".txt", ""):
        from node.csvfile import read_csv  # CSV's own module, as workbooks have theirs

        return read_csv(path, headers, encoding=encoding, on_bytes=on_bytes)
    raise InputFileError(f"{path.name}: unsupported file type {suffix!r} (use .csv or .xlsx)", code="E_INPUT_FORMAT")
