"""One catalogue field → a compiled converter: raw cell → canonical string, or a problem.

Used by :class:`node.validation.Validator`, which compiles every field of every item once. A
converter is ``conv(value, problems, row, clean) -> str | None``: the canonical string (``''`` for
an empty cell), or ``None`` after appending its problem. ``clean=True`` promises that ``value`` is
a ``str`` the validator already found free of anything :func:`~node.identifiers.normalize_text`
would change except outer whitespace, so the converter only strips it (one test per row instead
of one per cell: this is the hot path).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any, Final

from node.access import today_in_china
from node.catalog import FieldSpec
from node.documents import check_permanent_residence_number, check_residence_permit_number
from node.errors import Problem, clipped
from node.identifiers import (
    SCIENTIFIC_WHY,
    USCC_STAND_IN,
    canonical_org_code,
    check_id_number,
    check_org_code,
    check_uscc,
    normalize_text,
)
from node.values import (
    CHINA,
    BadValue,
    amount_in_unit,
    canonical_decimal,
    cell_text,
    column_unit,
    decimal_places,
    parse_date,
    parse_decimal,
    specified_value,
    split_multi,
)

Conv = Callable[[Any, list[Problem], int, bool], "str | None"]
IdCheck = Callable[[str, list[Problem], int], None]
_GOOD_CODES_MAX: Final = 200_000  # bound of the cache of valid USCCs
_COMBOS_MAX: Final = 4096  # bound of a multi-valued enum field's cache of combinations
_PLAIN_DECIMAL: Final = re.compile(r"([0-9]{1,30})(?:\.([0-9]{1,30}))?")
# A long number as Excel's General format shows it, and a CSV it saves keeps it (3.30102E+14): the
# sign written, as Excel writes it, so that a code such as 3E125 is not taken for one.
_SCIENTIFIC: Final = re.compile(r"[0-9](?:\.[0-9]+)?E\+[0-9]{1,2}")
# Excel's mark for "keep this as text" ('0571, '330102…): typed before a code, an ID number, a date
# or an amount so the spreadsheet does not turn it into a number. Exports that want the same in
# Excel write it into the CSV cell itself. It is never part of such a value.
TEXT_MARK: Final = "'"
# A code of digits a program wrote out as a decimal number (a database's FLOAT column, a script's float).
_AS_DECIMAL: Final = re.compile(r"[0-9]+\.0+")
# The types whose values never start with the mark (free text and names keep it).
MARKED_TYPES: Final = frozenset({"code", "uscc", "id_number", "org_code", "enum", "date", "decimal", "integer"})


def _unmarked(s: str) -> str:
    """``s`` without Excel's leading text mark (and the spaces after it)."""
    return s[1:].strip() if s[:1] == TEXT_MARK else s


# No credit record is dated before this: earlier dates are placeholders ("0001-01-01" for "none"
# in databases) or a number misread as a day.
_EARLIEST: Final = "1900-01-01"
# 2099-12-31 is how the 双公示 standard writes 长期 (no end); a later date is another system's
# "no end" (9999-12-31 is common) or a typo, and no disclosure period can be counted from it.
_LATEST: Final = "2099-12-31"


def _implausible(iso: str) -> str:
    return f'"{iso}" is before 1900: a placeholder, not a date' if iso < _EARLIEST else f'"{iso}" is in the future'


class Today:
    """Today's date in Beijing for "not in the future" checks, rolled over at Beijing midnight.

    Not the host's date: a decision dated today in Beijing is not in the future on a server
    whose clock runs on UTC, where it is still yesterday until 08:00.
    """

    __slots__ = ("date", "iso", "until")

    def __init__(self, fixed: date | None = None) -> None:
        self.date = fixed or today_in_china()
        self.iso = self.date.isoformat()
        self.until = float("inf") if fixed else self._next_midnight(self.date)

    @staticmethod
    def _next_midnight(day: date) -> float:
        return datetime.combine(day + timedelta(days=1), datetime.min.time(), CHINA).timestamp()

    def refresh(self) -> None:
        """Roll over if midnight has passed (callers test ``time.time() >= until`` first: cheap)."""
        if time.time() >= self.until:
            self.date = today_in_china()
            self.iso = self.date.isoformat()
            self.until = self._next_midnight(self.date)


def identifier_check(spec: FieldSpec, *, allowlist: frozenset[str], good: set[str], today: Today,
                     stand_in: bool = False) -> IdCheck:
    """The GB 32100 / GB 11643 / GB 11714 check of a ``uscc``, ``id_number`` or ``org_code`` field's
    normalised value.

    ``good`` caches valid USCCs: the same few authorities and source units recur on every row.
    ``stand_in``: :data:`USCC_STAND_IN` passes here; the subject check decides whether it may stand.
    """
    code, label = spec.code, spec.label

    def uscc(s: str, out: list[Problem], row: int) -> None:
        if s in good or (stand_in and s == USCC_STAND_IN):
            return
        p = check_uscc(s, field=code, label=label, allowlist=allowlist)
        if p is None:
            if len(good) >= _GOOD_CODES_MAX:
                good.clear()
            good.add(s)
        else:
            out.append(Problem(p.code, code, p.message, row, p.warning))

    def id_number(s: str, out: list[Problem], row: int) -> None:
        p = check_id_number(s, field=code, label=label, today=today.date)
        if p is not None:
            out.append(Problem(p.code, code, p.message, row))

    def org_code(s: str, out: list[Problem], row: int) -> None:
        p = check_org_code(s, field=code, label=label)
        if p is not None:
            out.append(Problem(p.code, code, p.message, row))

    return uscc if spec.type == "uscc" else org_code if spec.type == "org_code" else id_number


def document_check(spec: FieldSpec, document: str, *, today: Today) -> IdCheck:
    """The check of an ``id_number`` field's value as the number of a ``document``:
    ``permanent_residence`` (外国人永久居留身份证) or ``residence_permit`` (港澳台居民居住证)."""
    code, label = spec.code, spec.label
    checker = check_permanent_residence_number if document == "permanent_residence" else check_residence_permit_number

    def number_of_document(s: str, out: list[Problem], row: int) -> None:
        p = checker(s, field=code, label=label, today=today.date)
        if p is not None:
            out.append(Problem(p.code, code, p.message, row))

    return number_of_document


# Values an enum refusal lists in full: the department learns from it what to write. The longest
# shipped list, 处罚类别 (2021 and pre-2021 kinds), has 16.
_CHOICES_SHOWN: Final = 24


def _choices(values: tuple[str, ...]) -> str:
    shown = ", ".join(values[:_CHOICES_SHOWN])
    return shown + (f" … ({len(values)} values)" if len(values) > _CHOICES_SHOWN else "")


def compile_field(spec: FieldSpec, *, check: IdCheck | None, today: Today, key: bool = False) -> Conv:
    """The converter of ``spec``; ``check`` (if any) runs on the normalised value.

    A leading :data:`TEXT_MARK` is read past in the fields of :data:`MARKED_TYPES`, and in a text
    field that is part of the item's natural key (``key``: a 文号, whose copy with the mark would
    otherwise be another record).
    """
    code, label, maxlen, t = spec.code, spec.label, spec.max_length, spec.type
    marked = key or t in MARKED_TYPES
    # Keys as the cells they meet: a cell is normalised before the lookup (（ → (, ， → ,), so an
    # alias copied with a standard's full-width punctuation would otherwise never match.
    compact_key = t in ("code", "uscc", "id_number", "org_code")
    aliases = {(normalize_text(k).replace(" ", "").upper() if compact_key else normalize_text(k, prose=t == "text")): v
               for k, v in spec.value_aliases}

    def bad(out: list[Problem], row: int, problem_code: str, reason: str) -> None:
        out.append(Problem(problem_code, code, f"{label}: {clipped(reason)}", row))  # a cell may be huge

    if t == "enum":
        # 其它 is how many departments write 其他 ("other"); no catalogue value differs by it alone.
        canon = {**{v: v for v in spec.enum}, **aliases}
        canon = {**{k.replace("其他", "其它"): v for k, v in canon.items() if "其他" in k}, **canon}
        multi = spec.multi
        specified = (*spec.specified, *(v.replace("其他", "其它") for v in spec.specified if "其他" in v))
        combos: dict[str, str] = {}  # multi cells seen → canonical: a few combinations recur

        def an_enum(v: Any, out: list[Problem], row: int, clean: bool) -> str | None:
            try:
                s = v.strip() if clean else normalize_text(v) if type(v) is str else cell_text(v)
            except BadValue as exc:
                bad(out, row, "E_FIELD_TYPE", str(exc))
                return None
            c = canon.get(s)
            if c is not None or not s:
                return c or ""
            if s[0] == TEXT_MARK:
                s = _unmarked(s)
                c = canon.get(s)
                if c is not None or not s:
                    return c or ""
            if multi:
                c = combos.get(s)
                if c is not None:
                    return c
                known, unknown = split_multi(s, canon, specified)
                if not unknown:
                    if len(combos) >= _COMBOS_MAX:
                        combos.clear()
                    c = combos[s] = ";".join(known)
                    return c
                s = "、".join(unknown)
            if not multi and specified and (c := specified_value(s, specified)) is not None:
                return c
            hint = "; several values are separated by ';'" if multi else ""
            if spec.specified:  # 双公示 v2.0: a kind outside the list is written 其他-<the kind>
                hint += f"; another kind is written {spec.specified[0]}-{s.split('、')[0]}"
            bad(out, row, "E_FIELD_ENUM", f'"{s}" is not one of {_choices(spec.enum)}{hint}')
            return None

        return an_enum

    if t in ("string", "text", "code", "uscc", "id_number", "org_code"):
        prose = t == "text"
        compact = t in ("code", "uscc", "id_number", "org_code")  # identifiers hold no spaces
        org = t == "org_code"
        # Fields of digits with no check of their own (uscc, id_number and org_code have theirs, which
        # mask a person's ID number) that a spreadsheet may have shown in scientific notation.
        cut_short = t == "code" or key
        # Identifiers and keys no spreadsheet date stands for: a date cell there is Excel's reading
        # of what was typed (1-12, 2024-1-12), and what was typed is gone.
        undated = compact or key

        def text(v: Any, out: list[Problem], row: int, clean: bool) -> str | None:
            try:
                if clean:
                    s: str = v.strip()
                elif type(v) is str:
                    s = normalize_text(v, prose=prose)
                elif undated and isinstance(v, date):
                    bad(out, row, "E_FIELD_TYPE", f"the spreadsheet holds the date {cell_text(v)}, not the code "
                        "typed (Excel turns a value typed like 1-12 or 2024-1-12 into a date): format the column "
                        "as text (文本) and enter the value again")
                    return None
                else:
                    s = cell_text(v, prose=prose)
            except BadValue as exc:
                bad(out, row, "E_FIELD_TYPE", str(exc))
                return None
            if marked and s[:1] == TEXT_MARK:
                s = _unmarked(s)
            if compact:
                s = s.replace(" ", "").upper()
                if org:
                    s = canonical_org_code(s)
            if cut_short and "E+" in s and _SCIENTIFIC.fullmatch(s):
                # A registration number or a 文号 of digits that Excel showed as 3.30102E+14 and a CSV kept
                # so: its digits past the sixth are gone (identifiers' own checks say the same).
                bad(out, row, "E_FIELD_TYPE", f'"{s}" {SCIENTIFIC_WHY}')
                return None
            if cut_short and ".0" in s and _AS_DECIMAL.fullmatch(s):
                bad(out, row, "E_FIELD_TYPE", f'"{s}" is a code written out as a decimal number (by a program that '
                    "read the column as numbers, which also drops leading zeros): export the column as text")
                return None
            if aliases:
                s = aliases.get(s, s)
            if maxlen and len(s) > maxlen and check is None:
                bad(out, row, "E_FIELD_TOO_LONG", f"{len(s)} characters, at most {maxlen}")
                return None
            if check is not None and s:  # a code's own check names a wrong length better
                n = len(out)
                check(s, out, row)
                if len(out) > n and not out[-1].warning:
                    return None
            return s

        return text

    if t == "date":
        not_future = spec.not_future
        long_term = aliases.get("长期")  # what the field stores for 长期, where it has one

        def beyond(s: str, out: list[Problem], row: int) -> str | None:
            """A date after 2099-12-31: 长期 where the field has it (said in a warning), else refused."""
            if long_term:
                out.append(Problem("W_DATE_LONG_TERM", code, f'{label}: "{s}" is read as 长期, stored as {long_term}',
                                   row, warning=True))
                return long_term
            bad(out, row, "E_FIELD_DATE", f'"{s}" is after {_LATEST}: not a date (write the real date)')
            return None

        def a_date(v: Any, out: list[Problem], row: int, clean: bool) -> str | None:
            if type(v) is str and len(v) == 10 and v[4] == "-" and v[7] == "-":
                # Already YYYY-MM-DD, the usual case. fromisoformat accepts no other 10-character
                # form with dashes at 4 and 7; anything it refuses takes the general path below.
                try:
                    date.fromisoformat(v)
                except ValueError:
                    pass
                else:
                    if (not_future and v > today.iso) or v < _EARLIEST:
                        bad(out, row, "E_FIELD_DATE", _implausible(v))
                        return None
                    return v if v <= _LATEST else beyond(v, out, row)
            if type(v) is str:
                v = v.strip() if clean else normalize_text(v)
                if v[:1] == TEXT_MARK:
                    v = v[1:].strip()
                v = aliases.get(v, v)
                if not v:
                    return ""
            try:
                s = parse_date(v)
            except BadValue as exc:
                bad(out, row, "E_FIELD_DATE", str(exc))
                return None
            if (not_future and s > today.iso) or s < _EARLIEST:
                bad(out, row, "E_FIELD_DATE", _implausible(s))
                return None
            return s if s <= _LATEST else beyond(s, out, row)

        return a_date

    lo, hi, scale, whole = spec.minimum, spec.maximum, spec.scale, t == "integer"
    unit = column_unit(spec.name)
    # Plain "123.45" needs no Decimal: canonical form by string operations (the same result as
    # canonical_decimal) when no bound needs a numeric comparison. Most amounts take this path.
    fast = hi is None and (lo is None or lo <= 0) and not whole

    def a_number(v: Any, out: list[Problem], row: int, clean: bool) -> str | None:
        if type(v) is str:
            v = v.strip() if clean else normalize_text(v)
            if v[:1] == TEXT_MARK:
                v = v[1:].strip()
            if not v:
                return ""
            if fast and (m := _PLAIN_DECIMAL.fullmatch(v)):
                whole_part, frac = m[1].lstrip("0") or "0", (m[2] or "").rstrip("0")
                if scale is None or len(frac) <= scale:
                    return f"{whole_part}.{frac}" if frac else whole_part
        try:
            d = parse_decimal(v)
        except BadValue as exc:
            refused = str(exc)
            try:  # perhaps an amount written with its unit (0.5万元)
                in_unit = amount_in_unit(normalize_text(v), unit) if unit and isinstance(v, str) else None
            except BadValue as why:
                refused, in_unit = str(why), None
            if in_unit is None:
                bad(out, row, "E_FIELD_NUMBER", refused)
                return None
            d = in_unit
        reason = ""
        shown = v if isinstance(v, str) else canonical_decimal(d)  # a float as the spreadsheet showed it
        if whole and d != d.to_integral_value():
            reason = f'"{shown}" is not a whole number'
        elif scale is not None and decimal_places(d) > scale:
            reason = f'"{shown}" has more than {scale} decimal places'
        elif (lo is not None and d < lo) or (hi is not None and d > hi):
            bounds = f"≥ {lo}" if hi is None else f"≤ {hi}" if lo is None else f"between {lo} and {hi}"
            reason = f'"{shown}" must be {bounds}'
        if reason:
            bad(out, row, "E_FIELD_NUMBER", reason)
            return None
        return canonical_decimal(d)

    return a_number
