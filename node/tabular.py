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
_BOOKKEEPING: frozenset[str] = frozenset({normalize_header(h) for h in ("序号", "行号", "NO.", "NO")})
# Names a spreadsheet program gives a workbook; only .xlsx/.xlsm are read, the others named for what they hold.
_WORKBOOKS: frozenset[str] = frozenset({".xlsx", ".xlsm", ".xls", ".et", ".xlt", ".ett", ".xltx"})
# How many title or note rows (one filled cell, not a known header) may sit above the header row.
MAX_TITLE_ROWS = 10


# A row above the header naming no column, of at most this many cells, is a title (行政处罚信息公示表 and
# its month, 单位：某局 and （盖章）): no header of any item is so narrow.
_TITLE_CELLS = 3
# A note above the header: a short label, a full-width or ASCII colon, then its value.
_LABELLED = re.compile(r"^[^:：]{1,12}[:：]")
# A cell of the row templates put under the header to say which columns must be filled in
# ("必填", "选填", "条件必填", "必填，18位"): never a value of any field.
_FILL_NOTE = re.compile(r"(?:是否)?(?:有?条件)?(?:必填|选填|非必填|可选|可填|必录|选录|非必录)项?(?:[\W_].*)?", re.S)
# What else a row of notes under the header says of its column (the 双公示 templates' own: "必填项，
# 填写…", "涉及自然人时此项为必填项…", "格式为YYYY/MM/DD"; others: "18位", "文本，最多200字", "请填写…",
# "VARCHAR(200)"): words no value of a record is made of alone.
_NOTE_WORDS = re.compile(r"必填|选填|必录|选录|此项|本项|该项|填写|填报|请输入|请选择|格式|例如|示例|样例|不填|留空|"
                         r"可为空|YYYY|yyyy|[0-9]+\s*位|(?:最多|不超过|不多于|最长|至多)\s*[0-9]+\s*个?(?:汉?字|字符|位)|"
                         r"[0-9]+\s*个?(?:汉?字|字符)以内")
_NOTE_TYPE = re.compile(r"(?:(?:文本|字符串?|数字|数值|日期|时间|整数|小数|枚举|代码)(?:型|类型|格式)?"
                        r"|(?i:n?varchar2?|char|date|datetime|timestamp|number|numeric|decimal|int|integer|string))"
                        r"(?:\s*[(（][0-9,， ]+[)）])?(?:[\W_].*)?", re.S)
# The label opening a row of notes, or of an example, under the header (填写说明：…, 注：…, 示例).
_NOTE_LABEL = re.compile(r"(?:(?:填写|填报|填表)?说明|注意事项|注|示例|样例|举例|范例|例)(?:\s*[:：(（].*)?", re.S)
# A cell of the row that forms kept for statistics put under the header to number their columns
# (栏次): 1, (1), （1）, and 甲, 乙 over the columns of text before the numbered ones.
_COLUMN_NUMBER = re.compile(r"[(（]?([0-9]{1,3})(?:\.0)?[)）]?")
_COLUMN_STEMS = frozenset("甲乙丙丁戊己庚辛壬癸")
# The first cell of a row of sums under the data ("合计", "总计：6条"; 汇总, how Chinese Excel and WPS
# label a table's total row); the cells after it are numbers.
_TOTAL = re.compile(r"(?:(?:合|总|小|共)\s*计|汇\s*总)(?:[\W_].*)?", re.S)
_TOTAL_START = frozenset("合总小共汇")
# The first cell of the lines forms end with, under the data: who filled the sheet in and who
# checked it (填表人：张三  审核人：李四  填报日期：…), the unit's seal, a footnote (注：…).
_FOOTER = re.compile(r"(?:(?:填表|填报|制表|审核|审批|复核|经办|联系)人?|(?:单位|部门)?负责人|分管领导|联系电话|电话|"
                     r"(?:填表|填报|制表|报送|审核)日期|(?:填报|报送|制表)单位|注)\s*(?:[(（][^)）]{0,10}[)）])?\s*[:：].*",
                     re.S)
_FOOTER_START = frozenset("填制审复经联负单部分电报注")
_FOOTER_CELLS = 8  # a line of signatures has a few cells; a record has a dozen required ones
_COUNT = re.compile(r"[0-9][0-9,.\s]*(?:万元|元|条|件|笔|户|家|人|次)?")


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

    def again(self, codes: Sequence[str | None], names: Sequence[object]) -> Callable[[Sequence[object]], bool]:
        """A test for a row between the records that is the header again, as names or as codes (two
        exports pasted into one file): its first named column's cell is that column's name or
        code, then :meth:`repeats` decides. Asked of every row, so the first look is one compare."""
        first = next((i for i, c in enumerate(codes) if c is not None), None)
        if first is None:
            return lambda _cells: False
        marks = {clean_header(names[first]), codes[first]} if first < len(names) else {codes[first]}

        def is_header(cells: Sequence[object]) -> bool:
            cell = cells[first] if first < len(cells) else None
            return isinstance(cell, str) and cell.strip() in marks and self.repeats(cells, codes)
        return is_header

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
            if not key or key in _BOOKKEEPING:
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


def is_fill_notes(cells: Sequence[object]) -> bool:
    """Whether a row under the header only says which columns are required (必填 / 选填): a note
    of the template, never a record."""
    filled = [t for t in (clean_header(c) for c in cells) if t]
    return bool(filled) and all(_FILL_NOTE.fullmatch(t) for t in filled)


def is_notes(cells: Sequence[object], names: Sequence[object]) -> bool:
    """Whether a row under the header (``names``) explains how to fill the columns in, rather than
    holding a record: the 填写说明 row of a template, a note (注：带*为必填项), an example row
    (示例, …). Asked only of the rows between the header and the first record.

    It is one when it numbers the columns (栏次: 1 2 3 …), when its first filled cell is such a label,
    or when at least two thirds of its filled cells read as notes: 必填/选填 and the words of
    instructions (请填写, 此项, 格式, 18位, 最多200字), a type (文本, 日期型, VARCHAR(200)), or the
    column's own name (请填写行政相对人名称). A record's names, codes, dates and amounts are none of these.
    """
    filled = [(i, t) for i, t in enumerate(clean_header(c) for c in cells) if t]
    if not filled:
        return False
    if _NOTE_LABEL.fullmatch(filled[0][1]) or numbers_columns(cells):
        return True
    notes = 0
    for i, t in filled:
        if _FILL_NOTE.fullmatch(t) or _NOTE_WORDS.search(t) or _NOTE_TYPE.fullmatch(t):
            notes += 1
            continue
        name = normalize_header(clean_header(names[i])) if i < len(names) else ""
        if len(name) >= 2 and name not in _BOOKKEEPING and name in normalize_header(t):
            notes += 1
    return 3 * notes >= 2 * len(filled)


def numbers_columns(cells: Sequence[object]) -> bool:
    """Whether a row numbers the columns (栏次: 1 2 3 …, perhaps after 甲 乙): at least three filled
    cells, each a stem or a number one more than the number before it. No record is only that."""
    last: int | None = None
    filled = 0
    for c in cells:
        if isinstance(c, bool) or (isinstance(c, float) and not c.is_integer()):
            return False
        if isinstance(c, int | float):
            n = int(c)
        else:
            t = clean_header(c)
            if not t:
                continue
            if t in _COLUMN_STEMS and last is None:
                filled += 1
                continue
            if (m := _COLUMN_NUMBER.fullmatch(t)) is None:
                return False
            n = int(m[1])
        if last is not None and n != last + 1:
            return False
        last, filled = n, filled + 1
    return filled >= 3 and last is not None


def is_total(cells: Sequence[object]) -> bool:
    """Whether a row is a row of sums (合计) under the data: its first filled cell says so and
    every other filled cell is a number. Called for every row: it returns at the first filled cell
    of a record."""
    first = True
    label = ""
    for c in cells:
        if c is None:
            continue
        if isinstance(c, str):
            t = c.strip()
            if not t:
                continue
            if first:
                if t[0] not in _TOTAL_START or not _TOTAL.fullmatch(t):
                    return False
                first, label = False, t
            elif t != label and not _COUNT.fullmatch(t):  # the label again: a block merged across columns
                return False
        elif first or isinstance(c, bool) or not isinstance(c, int | float):
            return False
    return not first


def is_footer(cells: Sequence[object]) -> bool:
    """Whether a row under the data is the form's closing line (填表人：…, 审核人：…, 填报单位（盖章）：,
    注：…): its first filled cell is such a label, and it has few filled cells. Called for every
    row: it returns at the first filled cell of a record."""
    filled = 0
    for c in cells:
        if c is None:
            continue
        t = c.strip() if isinstance(c, str) else str(c)
        if not t:
            continue
        if not filled and (t[0] not in _FOOTER_START or not _FOOTER.fullmatch(t)):
            return False
        filled += 1
        if filled > _FOOTER_CELLS:
            return False
    return filled > 0


def counted_columns(header_row: Sequence[object]) -> list[int]:
    """Positions of the columns whose cells make a row more than blank: all but row numbers (序号)."""
    return [i for i, h in enumerate(header_row) if normalize_header(clean_header(h)) not in _BOOKKEEPING]


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
