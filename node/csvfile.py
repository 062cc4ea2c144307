"""Reading a department's CSV file: its encoding, its separator, and its rows by field code.

Split from :mod:`node.tabular` (which owns the header rules CSV and workbooks share, and
``read_table``), as :mod:`node.workbook` is for XLSX. A CSV adds encodings (UTF-8 with or without
BOM, GB18030, UTF-16), line endings (CRLF, LF, CR alone), separators, and quotes that do not
close: a row the parser cannot make sense of becomes a row problem, and the lines an unclosed
quote took in are read again, so every row is accounted for.
"""

from __future__ import annotations

import codecs
import csv
import io
import pathlib
import re
from collections.abc import Callable, Iterator, Sequence

from node.errors import InputFileError, Problem
from node.nonrecords import is_footer, is_notes, is_total
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

__all__ = ["detect_encoding", "read_csv"]

# A runaway quote can swallow the rest of a file into one cell; cap it well above any real cell.
_FIELD_LIMIT = 1 << 20
_SNIFF_BYTES = 1 << 16


def detect_encoding(head: bytes) -> str:
    """UTF-8 (BOM or valid), else GB18030 (a superset of GBK and GB2312)."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        head.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        # The sample may end inside a multi-byte character; only an error before the tail counts.
        if exc.start >= len(head) - 3 and exc.reason in ("unexpected end of data",):
            return "utf-8"
        utf8_error = exc.start
    try:
        head.decode("gb18030")
        return "gb18030"
    except UnicodeDecodeError as exc:
        # As for UTF-8: a two- or four-byte character cut by the end of the sample is no error.
        if exc.start >= len(head) - 3:
            try:
                head[:exc.start].decode("gb18030")
                return "gb18030"
            except UnicodeDecodeError:
                pass
        if any(b >= 0x80 for b in head[:utf8_error]):
            # Chinese text read as UTF-8 up to a line pasted in from a file in another encoding:
            # a UTF-8 file, whose bad lines are refused one by one (E_ROW_ENCODING) like any later.
            return "utf-8"
        if _mostly_gb18030(head):
            return "gb18030"
        raise InputFileError(
            "cannot tell the file's encoding (not UTF-8, not GBK/GB18030): if it is text, give --encoding "
            "(utf-16-le for UTF-16 saved without its byte-order mark); if not, it is no CSV",
            code="E_INPUT_ENCODING") from None


def _mostly_gb18030(head: bytes) -> bool:
    """Whether ``head`` is GBK text with a few bad bytes (a euro sign Windows writes as 0x80, a
    character cut in two by hand): its first line and most of its lines decode. Its bad lines are
    then refused one by one (E_ROW_ENCODING), as they are further down than the sample reaches,
    instead of the whole file. Text with NUL bytes is UTF-16 without its byte-order mark, never GBK."""
    if b"\x00" in head:
        return False
    lines = [line for line in head.splitlines()[:-1] if line.strip()]  # the last may be cut by the sample
    decoded = 0
    for i, line in enumerate(lines):
        try:
            line.decode("gb18030")
        except UnicodeDecodeError:
            if i == 0:
                return False  # the header (or the title above it) itself
            continue
        decoded += 1
    return 2 * decoded > len(lines)


def _decoded_lines(raw: io.BufferedReader, encoding: str, on_error: Callable[[int], None],
                   on_bytes: Callable[[int], None] | None) -> Iterator[str]:
    """Decode line by line so an undecodable line is reported by number instead of ending the file."""
    decoder_name = "utf-8" if encoding == "utf-8-sig" else encoding
    first = True
    for lineno, line in enumerate(raw, start=1):
        if on_bytes is not None:
            on_bytes(len(line))
        if first and encoding == "utf-8-sig" and line.startswith(codecs.BOM_UTF8):
            line = line[len(codecs.BOM_UTF8):]
        first = False
        try:
            yield line.decode(decoder_name)
        except UnicodeDecodeError:
            on_error(lineno)
            yield line.decode(decoder_name, errors="replace")


def read_csv(path: pathlib.Path, headers: HeaderMap, *, encoding: str | None = None,
             on_bytes: Callable[[int], None] | None = None) -> Iterator[SourceRow]:
    csv.field_size_limit(_FIELD_LIMIT)
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise InputFileError(f"cannot open {path.name}: {exc.strerror}") from None
    with fh:
        head = fh.read(_SNIFF_BYTES)
        if not head.strip():
            raise InputFileError(f"{path.name} is empty", code="E_INPUT_EMPTY")
        if not head.strip(b"\x00 \t\r\n"):
            raise InputFileError(f"{path.name} holds nothing but NUL bytes (a copy or a download that did not "
                                 "finish): send the file again", code="E_INPUT_EMPTY")
        if head.startswith(b"PK\x03\x04"):
            raise InputFileError(f"{path.name} is a workbook (.xlsx), not text: name it .xlsx", code="E_INPUT_FORMAT")
        if head.startswith(b"\xd0\xcf\x11\xe0"):
            raise InputFileError(f"{path.name} is an old Excel workbook (.xls), not text: save it as .xlsx or CSV",
                                 code="E_INPUT_FORMAT")
        enc = encoding or detect_encoding(head)
        try:
            enc = codecs.lookup(enc).name  # "UTF-16", "utf16", "utf_16" are all "utf-16"
        except LookupError:
            raise InputFileError(f"unknown encoding {enc!r}", code="E_INPUT_ENCODING") from None
        fh.seek(0)
        delimiter, spaced = _delimiter(head.decode(enc, errors="replace"), headers)
        bad: set[int] = set()
        if enc.startswith(("utf-16", "utf-32")):
            # Two- and four-byte encodings (Excel's "Unicode text"): their lines cannot be split as
            # bytes. A broken character (half a surrogate pair) passes as itself and refuses its row.
            wide = io.TextIOWrapper(fh, encoding=enc, errors="surrogatepass", newline="")
            lines: Iterator[str] = _text_lines(wide, path.name, enc, bad.add)
        elif _cr_ended(head):
            # Lines ended by CR alone (classic Mac OS, Mac Excel, some old exports), line breaks in
            # cells perhaps LF: read with universal newlines, bad bytes kept apart to refuse their row.
            lines = _text_lines(io.TextIOWrapper(fh, encoding="utf-8-sig" if enc == "utf-8" else enc,
                                                 errors="surrogateescape", newline=None), path.name, enc, bad.add)
        else:
            lines = _decoded_lines(fh, enc, bad.add, on_bytes)  # type: ignore[arg-type]
        yield from _rows_from_lines(lines, headers, bad, path.name, delimiter, spaced)


def _cr_ended(head: bytes) -> bool:
    """Whether lines end with CR alone: more lone CRs than lone LFs (which may break lines in cells)."""
    crlf = head.count(b"\r\n")
    cr = head.count(b"\r") - crlf
    return crlf == 0 and cr > head.count(b"\n") - crlf


# What no correctly decoded text holds: a lone surrogate, here half of a broken UTF-16 character
# (errors="surrogatepass") or a byte not valid in the encoding (errors="surrogateescape").
_UNDECODED = re.compile("[\ud800-\udfff]")


def _text_lines(text: io.TextIOWrapper, name: str, encoding: str, on_error: Callable[[int], None]) -> Iterator[str]:
    """Lines of a file read as text; a line with a character that did not decode is reported by
    number (its row is refused, E_ROW_ENCODING) and given with U+FFFD in its place."""
    try:
        for lineno, line in enumerate(text, start=1):
            if _UNDECODED.search(line) is None:
                yield line
            else:
                on_error(lineno)
                yield _UNDECODED.sub("\ufffd", line)
    except UnicodeError as exc:  # a cut-off last character (odd length), a file not UTF-16 at all
        why = exc.reason if isinstance(exc, UnicodeDecodeError) else str(exc)
        raise InputFileError(f"{name}: the file is not valid {encoding} ({why}); give the right --encoding, "
                             "or save the file again", code="E_INPUT_ENCODING") from None


def _delimiter(head: str, headers: HeaderMap) -> tuple[str, bool]:
    """The separator the header row uses: ``,``, or a tab, ``;`` or ``|`` (Excel's "Unicode text",
    some locales' CSV exports, the unload files of older database systems) when splitting by it
    names more columns; and whether a space follows it before a quoted cell (``"a", "b"``, as some
    database tools and scripts write), to be skipped, or the quotes would be read as text."""
    best, best_known, best_line = ",", 0, ""
    for line in head.splitlines()[:MAX_TITLE_ROWS + 2]:
        for sep in (",", "\t", ";", "|"):
            known = headers.known(line.split(sep)) if sep in line else 0
            if known > best_known:
                best, best_known, best_line = sep, known, line
    return best, f'{best} "' in best_line


class _Lines:
    """The text lines the csv reader takes, numbered as in the file; a record's lines can be given
    back to be read again (the rows an unclosed quote swallowed)."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self._back: list[tuple[int, str]] = []  # a stack: the last one is read next
        self._count = 0
        self.taken: list[tuple[int, str]] = []  # the lines of the record being read

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self._back:
            numbered = self._back.pop()
        else:
            self._count += 1
            numbered = (self._count, next(self._lines))
        self.taken.append(numbered)
        return numbered[1]

    def at_end(self) -> bool:
        """Whether no line is left (the one read to find out is kept for the next read)."""
        if self._back:
            return False
        try:
            text = next(self._lines)
        except StopIteration:
            return True
        self._count += 1
        self._back.append((self._count, text))
        return False

    def give_back(self, lines: Sequence[tuple[int, str]]) -> None:
        self._back.extend(reversed(lines))


def _rows_from_lines(lines: Iterator[str], headers: HeaderMap, bad_lines: set[int],
                     name: str, delimiter: str = ",", spaced: bool = False) -> Iterator[SourceRow]:
    """Rows numbered as a spreadsheet shows them: a cell holding line breaks is still one row."""
    source = _Lines(lines)
    reader = csv.reader(source, delimiter=delimiter, strict=False, skipinitialspace=spaced)
    header_row: list[str] | None = None
    titles: list[list[str]] = []
    first_title = 0  # the row of titles[0]
    record = 0  # rows read so far, blank ones included (a spreadsheet shows them too)
    while header_row is None:
        try:
            candidate = next(reader)
        except StopIteration:
            if titles:  # a narrow file: its first row was the header after all, and it is not known
                try:
                    headers.resolve(list(titles[0]))
                except InputFileError as exc:
                    raise refused_header(exc, first_title, titles[0], headers, 0) from None
            raise InputFileError(f"{name} has no header row", code="E_INPUT_EMPTY") from None
        except csv.Error as exc:
            raise InputFileError(f"{name}: the header row cannot be parsed: {_csv_reason(exc)}",
                                 code="E_INPUT_HEADER") from None
        record += 1
        if len(titles) < MAX_TITLE_ROWS and headers.is_title(list(candidate)):
            first_title = first_title or record
            titles.append(candidate)
        elif any(clean_header(c) for c in candidate):
            header_row = candidate
    def below() -> list[str] | None:
        try:
            return next(reader)
        except (StopIteration, csv.Error):
            return None

    try:
        codes, combined = headers.resolve_rows(header_row, below)
    except InputFileError as exc:
        raise refused_header(exc, record, header_row, headers, len(titles)) from None
    if combined is not None:  # a header in two rows
        record += 1
        header_row = [clean_header(c) for c in combined]
    width = len(codes)
    every_column_mapped = None not in codes
    unnamed = unnamed_columns(header_row)
    # Cells a row must have: up to the last named column (trailing blank header cells need none).
    needed = max((i + 1 for i, c in enumerate(codes) if c is not None), default=0)
    counted = counted_columns(header_row)
    header_again = headers.again(codes, header_row)
    first_data = True
    taken = source.taken
    while True:
        taken.clear()
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            record += 1
            yield SourceRow(record, {}, Problem("E_ROW_MALFORMED", "", f"row cannot be parsed: {_csv_reason(exc)}",
                                                row=record))
            continue
        record += 1
        if cells and cells[-1].endswith(_DOS_EOF) and source.at_end():
            cells[-1] = cells[-1][:-1]  # the mark ending the file, not the last cell's
        joined = "".join(cells)
        if not joined.strip():  # blank (or only spaces): one C call, not one per cell
            continue
        if not joined.strip(_NUL_AND_SPACE):
            yield SourceRow(record, {}, Problem(
                "E_ROW_MALFORMED", "", "NUL bytes where a row should be: the file was not written to the end (a "
                "copy or a save that stopped: the file has its size but not all its content), and rows after the "
                "one above may be missing; send the file again", row=record))
            continue
        if '="' in joined:
            cells = _text_formulas_read(cells)
        if not every_column_mapped and not any(cells[i].strip() for i in counted if i < len(cells)):
            continue  # only its row number (序号) filled in: a template numbered in advance
        if first_data:
            if headers.repeats(cells, codes) or is_notes(cells, header_row):
                continue  # the header again in its other form (codes under names), or a row of notes (填写说明)
            first_data = False
        if is_total(cells) or is_footer(cells) or header_again(cells, record):
            continue  # a row of sums (合计), the form's closing line (填表人：…), the header of a pasted export
        first_line, last_line = taken[0][0], taken[-1][0]
        if last_line > first_line and _swallows_rows(cells, delimiter, width):
            yield SourceRow(record, {}, Problem(
                "E_ROW_MALFORMED", "", f"a quote opened in this row is not closed where the cell ends: it took "
                f"in the lines below it (file lines {first_line + 1}-{last_line}), which are read again as "
                "rows of their own", row=record))
            source.give_back(taken[1:])  # read again: the rows below are not lost with this one
            continue
        if bad_lines and any(n in bad_lines for n, _text in taken):
            yield SourceRow(record, {}, Problem("E_ROW_ENCODING", "", "row contains bytes that are not valid "
                                                "in the file's encoding", row=record))
            continue
        if len(cells) > width and any(c.strip() for c in cells[width:]):
            beyond = [i + 1 for i in range(width, len(cells)) if cells[i].strip()]
            yield SourceRow(record, {}, Problem("E_ROW_SHAPE", "", f"row has {len(cells)} cells, the header "
                                                f"has {width}: column {', '.join(map(str, beyond[:5]))} has a "
                                                "value but no header (a stray separator shifts the cells)",
                                                row=record))
            continue
        if ((last_line > first_line or not taken[-1][1].endswith(("\n", "\r"))) and _unclosed_at_end(taken)
                and source.at_end()):
            yield SourceRow(record, {}, Problem(
                "E_ROW_MALFORMED", "", "the file ends inside a quoted cell of this row: it was cut short "
                "(a copy or an export that did not finish)", row=record))
            continue
        if len(cells) < needed:
            missing = [c for c in codes[len(cells):needed] if c is not None]
            yield SourceRow(record, {}, Problem(
                "E_ROW_SHAPE", "", f"row has {len(cells)} cells, the header has {width} (no cell for "
                f"{', '.join(missing)}): a row cut short or a lost separator; write every cell, empty ones too",
                row=record))
            continue
        if unnamed and (problem := under_unnamed(cells, unnamed, record)) is not None:
            yield SourceRow(record, {}, problem)
            continue
        values: dict[str, str]
        if every_column_mapped and len(cells) == width:  # the common case, built in C
            values = dict(zip(codes, cells, strict=False))  # type: ignore[arg-type]  # lengths checked; no None codes
        else:
            values = {code: cells[i] for i, code in enumerate(codes) if code is not None and i < len(cells)}
        yield SourceRow(record, values)


_NUL_AND_SPACE = "\x00 \t\r\n"
# Ctrl-Z, with which DOS-era exports (FoxPro, dBase) end the file: no character of the last row.
_DOS_EOF = "\x1a"
# ="0123": how exports keep a code's leading zeros and its digits when Excel opens the CSV (a
# formula whose value is that text); the value is the text, "" inside it a quote.
_TEXT_FORMULA = re.compile(r'\s*="((?:[^"]|"")*)"\s*')


def _text_formulas_read(cells: list[str]) -> list[str]:
    return [m[1].replace('""', '"') if (m := _TEXT_FORMULA.fullmatch(c)) else c for c in cells]


def _unclosed_at_end(taken: Sequence[tuple[int, str]]) -> bool:
    """Whether the record's quotes do not pair up: csv (lenient) ended it only because the file ended."""
    return sum(text.count('"') for _n, text in taken) % 2 == 1


def _csv_reason(exc: csv.Error) -> str:
    text = str(exc)
    if "new-line character seen in unquoted field" in text:
        return "a line break (CR) inside a cell that is not in quotes"
    return text


def _swallows_rows(cells: list[str], delimiter: str, width: int) -> bool:
    """A cell spanning lines of which one reads like a whole row: an unclosed quote, not prose."""
    if width < 3:
        return False
    for cell in cells:
        if "\n" in cell and any(line.count(delimiter) >= width - 1 for line in cell.splitlines()):
            return True
    return False
