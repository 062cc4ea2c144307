"""Identifiers of credit subjects: USCC (GB 32100-2015), resident ID number (GB 11643-1999), text.

Checks return ``None`` when a value is acceptable, else one :class:`~node.errors.Problem` with a
stable code (a warning for an allow-listed USCC). They expect input already passed through
:func:`normalize_text`; letters are upper-cased here because departments type them in lower case.

Decisions (see docs/catalogue.md):
- A USCC on the allow-list (legally issued early pilot codes that fail a check character) is
  accepted with the warning ``W_USCC_ALLOWLISTED``, never silently. The allow-list exempts both
  check characters, because an operator listed that exact code; length and charset still apply.
- Positions 1-2 must be an authority/category pair of GB 32100's table and positions 3-8 digits
  (``E_USCC_FORMAT``): a code outside them passing both checks was computed, not issued. The
  allow-list admits a pair an amendment adds after this table; never letters in the division.
- 15-digit first-generation ID numbers are refused (``E_ID_FORMAT``): those cards ceased to be valid
  on 2013-01-01 and a 15-digit number carries no check digit, so nothing could be verified.
  :func:`id15_to_id18` converts legacy data for an adapter that has to migrate it deliberately.

Stable codes: ``E_USCC_FORMAT``, ``E_USCC_CHECK``, ``E_USCC_ORG_CHECK``, ``W_USCC_ALLOWLISTED``,
``E_ID_FORMAT``, ``E_ID_CHECK``, ``E_ID_BIRTHDATE``, ``E_ORG_FORMAT``, ``E_ORG_CHECK``.
"""

from __future__ import annotations

import re
from collections.abc import Set
from datetime import date, datetime, timedelta, timezone
from typing import Final

from node.errors import Problem, clipped

__all__ = [
    "NEEDS_NORMALIZING",
    "NEEDS_NORMALIZING_PROSE",
    "SCIENTIFIC_WHY",
    "USCC_STAND_IN",
    "canonical_org_code",
    "check_gb11643",
    "check_id_number",
    "check_org_code",
    "check_uscc",
    "id15_to_id18",
    "id_check_char",
    "is_valid_id_number",
    "is_valid_uscc",
    "looks_like_id_number",
    "make_id_number",
    "make_uscc",
    "mask_id_number",
    "normalize_text",
    "org_check_char",
    "readable_name",
    "shown_subject_code",
    "uscc_check_char",
]

# --- USCC ---------------------------------------------------------------------------------------
USCC_ALPHABET: Final = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # 31 chars: no I, O, Z, S, V
_USCC_RE: Final = re.compile(r"[0-9A-HJ-NP-RTUWXY]{18}")
_USCC_VALUE: Final = {c: i for i, c in enumerate(USCC_ALPHABET)}
# Position 1 (登记管理部门码) → the position-2 categories (机构类别码) GB 32100-2015 and its amendment
# define: 1 机构编制, 2 外交, 3 司法行政, 4 文化, 5 民政, 6 旅游, 7 宗教, 8 工会, 9 市场监管 (工商),
# A 中央军委改革和编制办公室, N 农业, Y 其他. A pair outside it passing both checks was computed, not
# issued; one a later amendment adds is admitted through the allow-list (with its warning).
_USCC_KINDS: Final = {"1": "1239", "2": "19", "3": "123459", "4": "19", "5": "1239", "6": "129", "7": "129",
                      "8": "19", "9": "123", "A": "19", "N": "1239", "Y": "1"}
_USCC_KIND_PAIRS: Final = frozenset(a + k for a, ks in _USCC_KINDS.items() for k in ks)
_USCC_WEIGHTS: Final = tuple(pow(3, i, 31) for i in range(17))
# GB 11714 values letters A=10 … Z=35 over the full Latin alphabet, unlike the USCC table.
_ORG_VALUE: Final = {**{str(d): d for d in range(10)}, **{chr(ord("A") + i): 10 + i for i in range(26)}}
_ORG_WEIGHTS: Final = (3, 7, 9, 10, 5, 8, 4, 2)
# Per-position tables char → value·weight: a weighted sum becomes sum(map(dict.__getitem__, …)),
# one C-level pass with no Python frame per character (validation runs at tens of thousands of
# rows a second, each with several codes).
_USCC_TERMS: Final = tuple({c: v * w % 31 for c, v in _USCC_VALUE.items()} for w in _USCC_WEIGHTS)
_ORG_TERMS: Final = tuple({c: v * w for c, v in _ORG_VALUE.items()} for w in _ORG_WEIGHTS)
_get = dict.__getitem__
# Check character by remainder of the weighted sum: GB 11714 c = 11 - r (10 → X, 11 → 0);
# GB 32100 c = 31 - r (31 → 0), as a character of the alphabet.
_ORG_BY_REMAINDER: Final = "0X987654321"
_USCC_BY_REMAINDER: Final = "".join(USCC_ALPHABET[(31 - r) % 31] for r in range(31))


def uscc_check_char(first17: str) -> str:
    """Position-18 check character of a USCC whose first 17 characters are given."""
    if len(first17) != 17:
        raise ValueError("uscc_check_char needs 17 characters")
    return _USCC_BY_REMAINDER[sum(map(_get, _USCC_TERMS, first17)) % 31]


def org_check_char(body8: str) -> str:
    """GB 11714 check character of an 8-character organisation code body (USCC positions 9-16)."""
    if len(body8) != 8:
        raise ValueError("org_check_char needs 8 characters")
    return _ORG_BY_REMAINDER[sum(map(_get, _ORG_TERMS, body8)) % 11]


def make_uscc(authority: str, kind: str, division: str, org_body8: str) -> str:
    """A valid USCC from its parts, computing both check characters (for tests and generators)."""
    if len(authority) != 1 or len(kind) != 1 or len(division) != 6 or len(org_body8) != 8:
        raise ValueError("make_uscc needs authority(1), kind(1), division(6) and org_body8(8)")
    first17 = f"{authority}{kind}{division}{org_body8}{org_check_char(org_body8)}".upper()
    if not _USCC_RE.fullmatch(first17 + "0"):
        raise ValueError(f"characters outside the USCC alphabet in {first17!r}")
    return first17 + uscc_check_char(first17)


# A long number a spreadsheet showed in scientific notation and wrote out so (a CSV saved by Excel):
# its digits past the sixth are gone.
_SCIENTIFIC = re.compile(r"[0-9](?:\.[0-9]+)?E\+?[0-9]{1,3}")
SCIENTIFIC_WHY = ("was written in scientific notation by a spreadsheet, which has lost its digits: format the "
                  "column as text (文本) and enter the numbers again")


def _unknown_kind(value: str) -> str:
    """Why positions 1-2 are no 登记管理部门码 and 机构类别码 of GB 32100, or '' when they are."""
    categories = _USCC_KINDS.get(value[0])
    if categories is None:
        return (f'has "{value[0]}" in position 1, which is no registration authority (登记管理部门码) of '
                f"GB 32100 (one of {''.join(_USCC_KINDS)})")
    if value[1] not in categories:
        return (f'has "{value[1]}" in position 2, which is no category (机构类别码) of registration authority '
                f"{value[0]} in GB 32100 (one of {categories})")
    return ""


def looks_like_id_number(value: str) -> bool:
    """Whether ``value`` reads as a person's ID number: 18 (or legacy 15) digits holding a birth
    date, whatever its check digit."""
    if _ID_RE.fullmatch(value):
        born = _birth(value)
    elif len(value) == 15 and value.isdigit():
        born = _birth(f"{value[:6]}19{value[6:]}")
    else:
        return False
    return born is not None and born >= _EARLIEST_BIRTH


def shown_subject_code(value: str) -> str:
    """A subject code as an operator's list shows it when whose it is is not known: a USCC as it
    is, anything else (an ID number, a passport number) masked."""
    if _USCC_RE.fullmatch(value) and not looks_like_id_number(value):
        return value
    return mask_id_number(value)


def _quoted(value: str) -> str:
    """``value`` as a USCC problem quotes it: masked when it reads as a person's ID number."""
    return mask_id_number(value) if looks_like_id_number(value) else clipped(value, 100)


def check_uscc(value: str, *, field: str = "", label: str = "统一社会信用代码",
               allowlist: Set[str] = frozenset()) -> Problem | None:
    """``None`` if ``value`` (upper-cased, normalised) is a valid USCC, else the problem.

    A person's ID number given as the code (a 自然人's 证件号码 in the USCC column) is quoted
    masked, as every problem message shows one.
    """
    if not _USCC_RE.fullmatch(value):
        bad = sorted({c for c in value if c not in _USCC_VALUE})
        why = f"contains {''.join(bad)!r}, not allowed in a USCC" if bad and len(value) == 18 \
            else SCIENTIFIC_WHY if _SCIENTIFIC.fullmatch(value) \
            else f"must be 18 characters of 0-9 and A-Y without I, O, Z, S, V (got {len(value)})"
        return Problem("E_USCC_FORMAT", field, f'{label}: "{_quoted(value)}" {why}')
    if not value[2:8].isdigit():
        return Problem("E_USCC_FORMAT", field, f'{label}: "{_quoted(value)}" has "{value[2:8]}" in positions 3-8, which '
                       "hold the registering authority's division code: 6 digits (GB/T 2260)")
    # The stand-in 双公示 v2.0 allows (00…0X) keeps its own message: it fails position 18.
    kind_ok = value[:2] in _USCC_KIND_PAIRS or value == USCC_STAND_IN
    org_ok = _ORG_BY_REMAINDER[sum(map(_get, _ORG_TERMS, value[8:16])) % 11] == value[16]
    if kind_ok and org_ok and _USCC_BY_REMAINDER[sum(map(_get, _USCC_TERMS, value)) % 31] == value[17]:
        return None  # the usual case, kept free of function calls: it runs for every code of every row
    if not kind_ok and value not in allowlist:
        return Problem("E_USCC_FORMAT", field, f'{label}: "{_quoted(value)}" {_unknown_kind(value)}')
    failed = [] if org_ok else ["E_USCC_ORG_CHECK"]
    if uscc_check_char(value[:17]) != value[17]:
        failed.append("E_USCC_CHECK")
    which = " and ".join("organisation-code check (pos 17)" if c == "E_USCC_ORG_CHECK"
                         else "check character (pos 18)" for c in failed)
    if not failed:  # only positions 1-2 are amiss, and the code is allow-listed
        return Problem("W_USCC_ALLOWLISTED", field, f'{label}: "{_quoted(value)}" {_unknown_kind(value)}, but is on the '
                       "allow-list of issued codes", warning=True)
    if value in allowlist:
        return Problem("W_USCC_ALLOWLISTED", field,
                       f'{label}: "{_quoted(value)}" fails its {which} but is on the allow-list of issued codes',
                       warning=True)
    # The inner check first: a code passing pos 18 but failing it was computed, not issued.
    return Problem(failed[0], field, f'{label}: "{_quoted(value)}" fails its {which}')


# What 双公示 v2.0 lets a 个体工商户 without a USCC yet report in its place (its 工商注册号 is then
# required): it fails the pos-18 check, and stands for no one.
USCC_STAND_IN: Final = "0" * 17 + "X"


# --- organisation code (GB 11714), the USCC's positions 9-17 on its own --------------------------
_ORG_RE: Final = re.compile(r"[0-9A-Z]{8}-?[0-9X]")


def canonical_org_code(value: str) -> str:
    """``12345678-9`` whether written with the hyphen or without (GB 11714 prints it with one)."""
    return f"{value[:8]}-{value[8]}" if len(value) == 9 and "-" not in value else value


def check_org_code(value: str, *, field: str = "", label: str = "组织机构代码") -> Problem | None:
    """``None`` if ``value`` (upper-cased, canonical) is a valid GB 11714 code, else the problem."""
    if not _ORG_RE.fullmatch(value):
        why = "must be 8 digits or capital letters, a hyphen, and a check character 0-9 or X"
        if value.isdigit() and len(value) < 9:
            why += " (a spreadsheet that holds it as a number drops its leading zeros: format the column as text)"
        return Problem("E_ORG_FORMAT", field, f'{label}: "{value}" {why}')
    if org_check_char(value[:8]) != value[-1]:
        return Problem("E_ORG_CHECK", field, f'{label}: "{value}" fails its check character')
    return None


def is_valid_uscc(value: str) -> bool:
    return check_uscc(value) is None


# --- resident ID number ---------------------------------------------------------------------------
_ID_RE: Final = re.compile(r"[0-9]{17}[0-9X]")
_ID_WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK: Final = "10X98765432"
_EARLIEST_BIRTH: Final = date(1900, 1, 1)


_ID_TERMS: Final = tuple({str(d): d * w for d in range(10)} for w in _ID_WEIGHTS)


def id_check_char(first17: str) -> str:
    if len(first17) != 17:
        raise ValueError("id_check_char needs 17 digits")
    return _ID_CHECK[sum(map(_get, _ID_TERMS, first17)) % 11]


def _birth(value: str) -> date | None:
    try:
        return date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return None


_BEIJING = timezone(timedelta(hours=8))


# Positions 1-2: the province (GB/T 2260) of the address where the number was issued, or 81/82/83
# for the 港澳台居民居住证 (Hong Kong, Macao, Taiwan). Stable since 1997 (46 Hainan 1988, 50 Chongqing
# 1997 were added; none was withdrawn), so every number issued carries one of them.
_ID_PROVINCES: Final = frozenset(["11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65", "71", "81", "82", "83"])


def check_id_number(value: str, *, field: str = "", label: str = "公民身份号码",
                    today: date | None = None) -> Problem | None:
    """``None`` if ``value`` is a valid 18-character resident ID number, else the problem."""
    problem = check_gb11643(value, field, label, today)
    if problem is None and value[:2] not in _ID_PROVINCES:
        # Checked last: a number passing its check digit in no province was computed, not issued.
        return Problem("E_ID_FORMAT", field, f'{label}: "{mask_id_number(value)}" has "{value[:2]}" in positions '
                       "1-2, which is no province of GB/T 2260 (where the number was issued)")
    return problem


def check_gb11643(value: str, field: str, label: str, today: date | None) -> Problem | None:
    """The GB 11643 checks (shape, birth date, check digit) of a resident ID number and of the
    numbers laid out as one (外国人永久居留身份证 from 2023), whatever their first positions."""
    if not _ID_RE.fullmatch(value):
        why = "is a 15-digit legacy number; convert it to 18 digits" if len(value) == 15 and value.isdigit() \
            else SCIENTIFIC_WHY if _SCIENTIFIC.fullmatch(value) \
            else "must be 17 digits and a check digit 0-9 or X"
        return Problem("E_ID_FORMAT", field, f'{label}: "{mask_id_number(value)}" {why}')
    born = _birth(value)
    # A birth date is a Beijing date: one that is today there (00:00-08:00) is tomorrow in UTC.
    if born is None or born < _EARLIEST_BIRTH or born > (today or datetime.now(_BEIJING).date()):
        return Problem("E_ID_BIRTHDATE", field,
                       f'{label}: "{mask_id_number(value)}" has no real birth date in positions 7-14')
    if id_check_char(value[:17]) != value[17]:
        return Problem("E_ID_CHECK", field, f'{label}: "{mask_id_number(value)}" fails its check digit')
    return None


def is_valid_id_number(value: str, today: date | None = None) -> bool:
    return check_id_number(value, today=today) is None


def make_id_number(division6: str, birth: date, seq3: str) -> str:
    """A valid ID number from its parts (seq3's last digit is odd for men, even for women)."""
    if not (len(division6) == 6 and division6.isdigit() and len(seq3) == 3 and seq3.isdigit()):
        raise ValueError("make_id_number needs a 6-digit division and a 3-digit sequence")
    first17 = f"{division6}{birth:%Y%m%d}{seq3}"
    return first17 + id_check_char(first17)


def id15_to_id18(value: str) -> str:
    """The 18-digit form of a first-generation 15-digit number (born 19xx, check digit added)."""
    if not (len(value) == 15 and value.isdigit()):
        raise ValueError("not a 15-digit ID number")
    first17 = f"{value[:6]}19{value[6:]}"
    return first17 + id_check_char(first17)


def mask_id_number(value: str) -> str:
    """Hide the middle of an ID number: ``11010519491231002X`` → ``1101**********002X``.

    A quarter of the characters (at most 4) stays visible at each end, so passports and other
    short numbers are masked in proportion and a value of 3 characters or fewer is masked whole.
    """
    keep = min(4, len(value) // 4)
    if keep == 0:
        return "*" * len(value)
    return value[:keep] + "*" * (len(value) - 2 * keep) + value[-keep:]


# --- text -----------------------------------------------------------------------------------------
# Zero-width and direction marks (U+200E/200F, U+202A-202E, U+2066-2069 come with text pasted from
# right-to-left aware editors): invisible, so never part of a name or code.
_ZERO_WIDTH: Final = "\u200b\u200c\u200d\u200e\u200f\u2060\ufeff\u00ad\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
# Control characters that are not whitespace to str.split (NUL, BEL, ESC, DEL, C1 …): never
# text, only what a system or a copy left in a cell. Dropped like the zero-width characters, so a
# decision number with a trailing NUL is the same decision, not a second record.
_CONTROLS: Final = "".join(chr(c) for c in (*range(0x00, 0x09), *range(0x0E, 0x1C), *range(0x7F, 0x85),
                                            *range(0x86, 0xA0)))
_FOLD_ALL: Final = {**{0xFF01 + i: 0x21 + i for i in range(0x5E)}, 0x3000: 0x20, 0x00A0: 0x20,
                    **{ord(c): None for c in _ZERO_WIDTH + _CONTROLS}}
# Prose keeps line breaks and tabs; the other whitespace controls (VT, FF, the separators
# U+001C-U+001F that content digests join with) become spaces.
_FOLD_ALNUM: Final = {**{k: v for k, v in _FOLD_ALL.items() if v is None or chr(v).isalnum() or v == 0x20},
                      **{c: 0x20 for c in (0x0B, 0x0C, 0x1C, 0x1D, 0x1E, 0x1F, 0x85)}}
# Characters that make a value differ from its plain strip() (besides runs of spaces): full-width
# forms, odd spaces, line breaks and tabs, zero-width characters. A character class without
# alternation lets the regex engine scan fast; most cells contain none of these. Public so that
# the validator can test a cell inline (ASCII cells: str.isprintable() answers the same).
NEEDS_NORMALIZING: Final = re.compile("[\uff01-\uff5e\u3000\u00a0\u200b-\u200f\u2060\ufeff\u00ad\x00-\x1f"
                           "\x7f-\x9f\u1680\u2000-\u200a\u2028\u2029\u202a-\u202f\u205f\u2066-\u2069]")
NEEDS_NORMALIZING_PROSE: Final = re.compile("[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a\u3000\u00a0\u200b-\u200f"
                                 "\u2060\ufeff\u00ad\u202a-\u202e\u2066-\u2069\r\x00-\x08\x0b\x0c\x0e-\x1f"
                                 "\x7f-\x9f]")


def normalize_text(s: str, *, prose: bool = False) -> str:
    """Normalise a cell: full-width ASCII → half-width, no zero-width chars/BOM, stripped.

    By default (names, codes, numbers, dates, enum values) every full-width ASCII character and
    U+3000 is folded and internal whitespace runs collapse to one space, so equal values compare
    equal. With ``prose=True`` (free text such as 违法事实) only full-width digits, letters and
    spaces are folded and line breaks are kept: Chinese punctuation （，。；） is correct in prose.
    """
    if prose:
        if (s.isprintable() if s.isascii() else NEEDS_NORMALIZING_PROSE.search(s) is None):
            return s.strip()
        return s.translate(_FOLD_ALNUM).replace("\r\n", "\n").replace("\r", "\n").strip()
    if (s.isprintable() if s.isascii() else NEEDS_NORMALIZING.search(s) is None) and "  " not in s:
        return s.strip()
    return " ".join(s.translate(_FOLD_ALL).split())


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def readable_name(name: str) -> str:
    """A file's name as text that can be stored, sent and shown: each byte that is not UTF-8 (a name
    made on a GBK system), which Python keeps as a lone surrogate, becomes U+FFFD, as ``ls`` shows it."""
    return _LONE_SURROGATE.sub("\ufffd", name)
