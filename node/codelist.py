"""The list of subject codes a 核查 (``verify-list``) is asked about, read from a department's file.

One code per line, or a CSV whose header names a code column; UTF-8 (BOM or not), GB18030 (GBK)
or UTF-16, as a department's export may be. Anything that is not text, or a code that is no
identifier, is refused by line: sent, it would come back as a subject on no list.
"""

from __future__ import annotations

import codecs
import csv
import io
import pathlib
import re

from node.errors import InputFileError, UsageError
from node.identifiers import normalize_text, shown_subject_code

__all__ = ["read_codes"]

_IDENTIFIER = re.compile(r"[0-9A-Za-z]+")


def _list_text(path: pathlib.Path) -> str:
    """The text of a list of codes: UTF-16 after its BOM, else UTF-8 (BOM or not), else GB18030; a
    UTF-8 file (whole lines of Chinese read as UTF-8 up to there) with a line in GBK is refused at
    that line."""
    raw = path.read_bytes()
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        tried = ["utf-16"]
    else:
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            lines_before = raw[:raw.rfind(b"\n", 0, exc.start) + 1].removeprefix(codecs.BOM_UTF8)
            tried = ["utf-8"] if not lines_before.isascii() else ["utf-8", "gb18030"]
    for encoding in tried:
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError as exc:
            where = exc.start
    line = raw[:where].decode(tried[-1], errors="replace").count("\n") + 1
    shown = {"utf-8": "UTF-8 text, as the lines before it are", "utf-16": "UTF-16 text, as its BOM says",
             "gb18030": "text: neither UTF-8 nor GB18030 (GBK)"}[tried[-1]]
    raise InputFileError(f"{path.name} line {line}: not {shown} (byte 0x{raw[where]:02x}); save the list "
                         "as UTF-8", code="E_INPUT_ENCODING", field="FILE")


def read_codes(path: pathlib.Path) -> list[str]:
    """Subject codes from a file: one per line, or a CSV whose header names a code column.

    The file is UTF-8 (with or without BOM), GB18030 (GBK) or UTF-16, as a department's CSV may be; a
    line in none of them is refused by number, not read as U+FFFD. A code that is no identifier (a
    USCC, an ID number, a passport or permit number: letters and digits) is refused by line too:
    sent, it would come back as a subject on no list."""
    reader = csv.reader(io.StringIO(_list_text(path)))
    rows = [(reader.line_num, row) for row in reader]
    if not rows:
        return []
    header = [h.strip().lower() for h in rows[0][1]]
    wanted = ("code", "subject_code", "统一社会信用代码", "证件号码", "uscc")
    col = next((header.index(w) for w in wanted if w in header), None)
    if col is None and len(header) > 1:
        raise UsageError(f"{path}: a CSV needs a column named one of: {', '.join(wanted)}", field="FILE")
    found = [(n, r[col or 0].strip()) for n, r in (rows if col is None else rows[1:])
             if len(r) > (col or 0) and r[col or 0].strip()]
    bad = [(n, code) for n, code in found if not _IDENTIFIER.fullmatch(normalize_text(code))]
    if bad:
        lines = "; ".join(f"line {n}: {shown_subject_code(code[:40])!r}" for n, code in bad[:5])
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise UsageError(f"{path.name}: not a subject code (a USCC, an ID number, a passport or permit "
                         f"number is letters and digits): {lines}{more}", field="FILE", code="E_SUBJECT_CODE_CHECK")
    return [code for _n, code in found]
