"""Cell values → canonical strings: text, dates, decimals, multi-valued enums.

Departments hand over spreadsheets (cells are ``str``, ``int``, ``float``, ``datetime`` …) and
database rows; the exchange carries one canonical string per field so that equal facts digest
equally. Parsers raise :class:`BadValue` with a short reason; the validator turns it into a
:class:`~node.errors.Problem` with its own code. Fast paths first: most cells are already clean.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Final

from node.identifiers import normalize_text

__all__ = ["CHINA", "BadValue", "Serial1904Float", "Serial1904Int", "amount_in_unit", "canonical_decimal", "cell_text", "column_unit", "from_1904_workbook", "parse_date", "parse_decimal", "specified_value", "split_multi"]

# Beijing time (no DST): the regulations' dates are Beijing dates, and so is the day an instant
# with a time zone (a TIMESTAMPTZ column) falls on.
CHINA: Final = timezone(timedelta(hours=8))

_ISO_SHAPE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# A time after the date is dropped, unless it carries a zone ("Z", "+00:00"): then the day is the
# one in Beijing, as for a TIMESTAMPTZ value (an export in UTC dates a 07:00 decision the day before).
_TIME: Final = r"(?:[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)?)?"
_SEPARATED: Final = re.compile(r"(\d{4})([-/.])(\d{1,2})\2(\d{1,2})" + _TIME)
_CHINESE: Final = re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*[日号]"
                             r"(?:\s*\d{1,2}\s*(?::|时|点)\s*\d{1,2}\s*分?(?:\s*(?::\s*)?\d{1,2}\s*秒?)?)?")
_COMPACT: Final = re.compile(r"(\d{4})(\d{2})(\d{2})")
_DAY_NUMBER: Final = re.compile(r"[1-9][0-9]{4}(?:\.[0-9]+)?")  # 10000-99999: Excel's days of 1927-2173
_FIRST_SERIAL: Final = 2101  # 1905-10-01: every year 1900-2100 typed as a number lies below it
_EXCEL_EPOCH: Final = date(1899, 12, 30)  # serial 1 = 1900-01-01 once Excel's fake 1900-02-29 is past
_EXCEL_MAX: Final = 2958465  # 9999-12-31
_MAC_EPOCH: Final = date(1904, 1, 1)  # serial 0 in the 1904 date system (no fake leap day)
_MAC_MAX: Final = _EXCEL_MAX - 1462
# Thousands separators only where they group whole digits in threes: "1,234.5", "1 234". Anything
# else with a comma ("0,5" as a decimal comma, "12,34") is refused, never read as 5 or 1234.
_GROUPED: Final = re.compile(r"[+-]?[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?|[+-]?[0-9]{1,3}(?: [0-9]{3})+(?:\.[0-9]+)?")
# A number's size (power of ten) beyond which it is no amount anyone reports: refused before
# Decimal arithmetic could overflow on it ("1e1000000").
_MAX_MAGNITUDE: Final = 30
# Floats hold integers exactly only below 2**53: an 18-digit ID or code typed into a spreadsheet
# as a number has already lost its last digits.
_EXACT_FLOAT_INT: Final = 2**53


class BadValue(ValueError):
    """A cell that cannot be read as its field's type; ``str(exc)`` is the reason."""


class Serial1904Int(int):
    """A number from a workbook kept in the 1904 date system (old Mac Excel; a workbook option).

    As a number it is what it says; read as a date it counts days from 1904-01-01, 1,462 days
    later than the same number in the 1900 system. Only the reader knows the workbook's system
    and only validation knows which columns are dates, so the number carries it between them.
    """


class Serial1904Float(float):
    """:class:`Serial1904Int`, for a number with a fraction (a date with a time of day)."""


def from_1904_workbook(v: object) -> object:
    """A cell of a 1904-system workbook, its numbers marked (see :class:`Serial1904Int`)."""
    if type(v) is int:
        return Serial1904Int(v)
    if type(v) is float:
        return Serial1904Float(v)
    return v


def cell_text(v: object, *, prose: bool = False) -> str:
    """Any cell as normalised text (see :func:`~node.identifiers.normalize_text`)."""
    if isinstance(v, str):
        return normalize_text(v, prose=prose)
    if isinstance(v, bool):
        raise BadValue(f"expected text, got the boolean {v}")
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        # Excel stores long numbers typed into a cell (registration numbers) as floats.
        if v.is_integer():
            if abs(v) >= _EXACT_FLOAT_INT:
                # Shown as the spreadsheet shows it (3.30102E+17), not written out: the digits
                # past the 15th are gone, and the first ones may be a person's ID number.
                raise BadValue(f"the spreadsheet holds the number {_as_excel_shows(v)}, which has lost its last "
                               "digits; format the column as text and enter the value again")
            return str(int(v))
        return _shown(v)
    if isinstance(v, Decimal):
        return canonical_decimal(_bounded(v, str(v)))
    if isinstance(v, datetime):
        if v.tzinfo is not None:
            v = v.astimezone(CHINA).replace(tzinfo=None)
        return v.date().isoformat() if v.time() == datetime.min.time() else v.isoformat(sep=" ")
    if isinstance(v, date):
        return v.isoformat()
    raise BadValue(f"expected text, got {type(v).__name__}")


def _as_excel_shows(v: float) -> str:
    """A large number as a General-formatted cell shows it: ``3.30102E+17``."""
    mantissa, exponent = f"{v:.5E}".split("E")
    return f"{mantissa.rstrip('0').rstrip('.')}E{exponent[0]}{exponent[1:].lstrip('0') or '0'}"


def _ymd(y: str, m: str, d: str, shown: str) -> str:
    try:
        return date(int(y), int(m), int(d)).isoformat()
    except ValueError:
        raise BadValue(f'"{shown}" is not a real date') from None


def _day_of(m: re.Match[str], shown: str) -> str:
    """The day of a date with a time: the written one, or Beijing's when a zone is written too."""
    zone = m[8]
    if not zone:
        offset = timedelta(hours=8)
    elif zone == "Z":
        offset = timedelta(0)
    else:
        hours, minutes = int(zone[1:3]), int(zone[-2:]) if len(zone) > 3 else 0
        if hours > 14 or minutes > 59:
            raise BadValue(f'"{shown}" has no real time zone')
        offset = timedelta(hours=hours, minutes=minutes) * (-1 if zone[0] == "-" else 1)
    try:
        at = datetime(int(m[1]), int(m[3]), int(m[4]), int(m[5]), int(m[6]), int(m[7] or 0),
                      tzinfo=timezone(offset))
    except ValueError:
        raise BadValue(f'"{shown}" is not a real date and time') from None
    return at.astimezone(CHINA).date().isoformat()


def _from_number(n: float, shown: str, *, mac: bool = False) -> str:
    if n != n or n in (float("inf"), float("-inf")):
        raise BadValue(f'"{shown}" is not a date')
    if n.is_integer() and 10000101 <= n <= 99991231:  # a date typed as the number 20240301
        s = str(int(n))
        return _ymd(s[:4], s[4:6], s[6:], s)
    if 1 <= n < _FIRST_SERIAL:
        # Serial days before late 1905: a year typed into a date cell (2024 would be 1905-07-16), or
        # a stray small number; no record dates from then.
        raise BadValue(f'"{shown}" is a number, not a date: a year alone, or a day count from '
                       f'{1904 if mac else 1900} (use YYYY-MM-DD)')
    if mac:
        if n <= _MAC_MAX:
            return (_MAC_EPOCH + timedelta(days=int(n))).isoformat()
        raise BadValue(f'"{shown}" is not a date')
    if 1 <= n <= _EXCEL_MAX:
        days = int(n)
        if days == 60:
            raise BadValue("Excel serial 60 is 1900-02-29, a day that never was")
        base = _EXCEL_EPOCH if days > 60 else _EXCEL_EPOCH + timedelta(days=1)
        return (base + timedelta(days=days)).isoformat()
    raise BadValue(f'"{shown}" is not a date')


def parse_date(v: object) -> str:
    """A date cell → ``YYYY-MM-DD``.

    Accepts ISO dates, ``2024/3/1``, ``2024.3.1``, ``2024-3-1`` (optionally with a time, which is
    dropped, or with a time and zone, dated in Beijing), ``20240301``, ``2024年3月1日`` (with or
    without ``10时30分``), ``date``/``datetime`` objects, and numbers: an 8-digit ``YYYYMMDD`` or an
    Excel serial day (1900 date system, or 1904 for a number read from a workbook kept in it).
    """
    if isinstance(v, str):
        if len(v) == 10 and _ISO_SHAPE.fullmatch(v):  # fast path: already canonical
            try:
                date.fromisoformat(v)
                return v
            except ValueError:
                raise BadValue(f'"{v}" is not a real date') from None
        s = normalize_text(v)
        if m := _SEPARATED.fullmatch(s):
            if m[5]:
                return _day_of(m, s)
            return _ymd(m[1], m[3], m[4], s)
        if (m := _CHINESE.fullmatch(s)) or (m := _COMPACT.fullmatch(s)):
            return _ymd(m[1], m[2], m[3], s)
        if _DAY_NUMBER.fullmatch(s):
            # Excel's day count, saved as text (a CSV of a General-formatted column). Text does not
            # say whether it counted from 1900 or 1904 (1,462 days apart): not read, but named.
            raise BadValue(f'"{s}" is a spreadsheet day number ({_from_number(float(s), s)} if counted from 1900, '
                           "as Excel does), not a date: format the column as a date (YYYY-MM-DD) and save again")
        raise BadValue(f'"{s}" is not a date (use YYYY-MM-DD)')
    if isinstance(v, datetime):
        return (v.astimezone(CHINA) if v.tzinfo is not None else v).date().isoformat()
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, bool):
        raise BadValue(f"expected a date, got the boolean {v}")
    if isinstance(v, int | float):
        return _from_number(float(v), str(v), mac=isinstance(v, Serial1904Int | Serial1904Float))
    if isinstance(v, Decimal):
        return _from_number(float(v), str(v))
    raise BadValue(f"expected a date, got {type(v).__name__}")


def _shown(v: float) -> str:
    """A float as the spreadsheet showed it: 15 significant digits (``0.1*3`` is 0.3, not 0.30000000000000004)."""
    return format(v, ".15g")


def _bounded(d: Decimal, shown: str) -> Decimal:
    if not d.is_finite():
        raise BadValue(f'"{shown}" is not a number')
    if d and abs(d.adjusted()) > _MAX_MAGNITUDE:
        raise BadValue(f'"{shown}" is out of range (more than {_MAX_MAGNITUDE} digits)')
    return d


def parse_decimal(v: object) -> Decimal:
    """A numeric cell → ``Decimal`` without binary-float error (``0.1`` stays ``0.1``).

    Text may use thousands separators grouping digits in threes (``1,234.5``, full-width
    ``１，２３４``); floats are read as the spreadsheet showed them (15 significant digits).
    """
    if isinstance(v, str):
        s = normalize_text(v)
        try:
            d = Decimal(s)
        except InvalidOperation:
            if not _GROUPED.fullmatch(s):
                raise BadValue(f'"{s}" is not a number') from None
            d = Decimal(s.replace(",", "").replace(" ", ""))
        if "_" in s:
            raise BadValue(f'"{s}" is not a number')
        return _bounded(d, s)
    if isinstance(v, bool):
        raise BadValue(f"expected a number, got the boolean {v}")
    if isinstance(v, int):
        return _bounded(Decimal(v), str(v))
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            raise BadValue(f'"{v}" is not a number')
        return _bounded(Decimal(_shown(v)), _shown(v))
    if isinstance(v, Decimal):
        return _bounded(v, str(v))
    raise BadValue(f"expected a number, got {type(v).__name__}")


# An amount written with its currency or unit: "0.5万元", "5000元", "¥100", "人民币2,000元".
_WITH_UNIT: Final = re.compile(r"(人民币|[¥￥])?\s*(.*?)\s*(万元|万|元)?")
_IN_WORDS: Final = re.compile(r"[零〇一二两三四五六七八九十百千万亿壹贰叁肆伍陆柒捌玖拾佰仟]")
# The unit a column's name states: 罚款金额（万元）, 金额(单位：元).
_COLUMN_UNIT: Final = re.compile(r"[(（](?:单位[:：]\s*)?(万元|元)[)）]\s*$")


def column_unit(name: str) -> str:
    """The unit (元 or 万元) a column's name states, or ''."""
    m = _COLUMN_UNIT.search(name)
    return m[1] if m else ""


def amount_in_unit(s: str, unit: str) -> Decimal | None:
    """An amount written with its unit or currency (``0.5万元``) in a column whose name states
    ``unit``: the number, when the unit written is the column's. Another unit, a currency sign
    alone, or figures in words are refused with what to write: a converted or guessed amount
    would be stored 10,000 times off whenever the guess is wrong. None: ``s`` has no unit nor currency."""
    m = _WITH_UNIT.fullmatch(s)
    if m is None or not (m[1] or m[3]):
        return None
    written = "万元" if m[3] == "万" else m[3]
    try:
        d = parse_decimal(m[2])
    except BadValue:
        if _IN_WORDS.search(m[2]):
            raise BadValue(f'"{s}" is written in words: write the amount in figures, in {unit}') from None
        raise BadValue(f'"{s}" is not a number') from None
    if not written:
        raise BadValue(f'"{s}" does not say whether it is in 元 or 万元 (the column is in {unit}): write the '
                       "number alone, in " + unit) from None
    if written != unit:
        meant = d / 10000 if written == "元" else d * 10000
        raise BadValue(f'"{s}" is in {written} and the column is in {unit}: write {canonical_decimal(meant)} '
                       "(amounts are not converted on import)")
    return d


def decimal_places(d: Decimal) -> int:
    exp = d.normalize().as_tuple().exponent
    return -exp if isinstance(exp, int) and exp < 0 else 0


def canonical_decimal(d: Decimal) -> str:
    """Plain notation, no exponent, no trailing zeros: ``1.50`` → ``1.5``, ``1E+2`` → ``100``."""
    s = format(d.normalize(), "f")
    return "0" if s in ("-0", "0") else s


_SPECIFIED: Final = re.compile(r"(.+?)\s*(?:[-—:：]\s*(.+)|[(（]\s*(.+?)\s*[)）])")


def specified_value(s: str, specified: Collection[str]) -> str | None:
    """``其他-补办``, ``其他：补办`` or ``其他（补办）`` → ``其他-补办`` when 其他 is one of
    ``specified`` (the 双公示 v2.0 rule: a category 其他 names the specific kind); else None."""
    m = _SPECIFIED.fullmatch(s)
    if m is None or m[1] not in specified:
        return None
    detail = (m[2] or m[3] or "").strip()
    return f"{m[1].replace('其它', '其他')}-{detail}" if detail else None


def split_multi(s: str, canon: Mapping[str, str],
                specified: Collection[str] = ()) -> tuple[list[str], list[str]]:
    """Split a multi-valued enum cell → (canonical values in order without repeats, unknown parts).

    ``canon`` maps every accepted spelling (each value and its aliases) to the canonical value.
    Separators are ``;`` (full-width ``；`` is folded to it), ``,`` and ``、``. A value that itself
    contains ``、`` (the pre-2021 处罚类别 "没收违法所得、没收非法财物") is recognised whole:
    pieces are joined greedily, the longest known run first. A ``specified`` value with what it
    stands for (``其他-责令改正``) keeps it, up to the next known value.
    """
    known: list[str] = []
    unknown: list[str] = []

    def keep(value: str) -> None:
        if value not in known:
            known.append(value)

    for token in s.replace(",", ";").split(";"):
        token = token.strip()
        if not token:
            continue
        if token in canon:
            keep(canon[token])
            continue
        pieces = [p.strip() for p in token.split("、")]
        i = 0
        while i < len(pieces):
            for j in range(len(pieces), i, -1):
                run = "、".join(pieces[i:j])
                if run in canon:
                    keep(canon[run])
                    i = j
                    break
            else:
                if specified and (value := specified_value(pieces[i], specified)) is not None:
                    j = i + 1  # the specification may itself list things with 、
                    while j < len(pieces) and pieces[j] not in canon:
                        j += 1
                    keep(specified_value("、".join(pieces[i:j]), specified) or value)
                    i = j
                    continue
                if pieces[i]:
                    unknown.append(pieces[i])
                i += 1
    return known, unknown
