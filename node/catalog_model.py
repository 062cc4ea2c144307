"""The catalogue's value types: items, fields, rules. Import them from :mod:`node.catalog`.

Everything is a frozen dataclass built once by the loader (:mod:`node.catalog_schema`); other
modules read these names and attributes as their contract, so add fields only with defaults.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from decimal import Decimal
from types import MappingProxyType
from typing import Final

from node.errors import UnknownItemError
from node.identifiers import normalize_text

FIELD_TYPES: Final = ("string", "text", "date", "decimal", "integer", "enum", "uscc", "id_number", "org_code", "code")
SUBJECT_KINDS: Final = ("legal_person", "individual_business", "natural_person")
DISCLOSURE_CLASSES: Final = ("A", "B", "C")
DISCLOSURE_KINDS: Final = ("from_decision", "while_valid_plus", "penalty_severity", "while_listed",
                           "permanent")
CROSS_RULE_KINDS: Final = ("not_before", "positive", "together", "at_least_one", "org_code_of", "amount_in_text")
LEVELS_UP: Final = ("department", "district", "city", "province", "national")
SUBJECT_CODE: Final = "@subject_code"  # pseudo-field usable in key_fields
KEY_PSEUDO_FIELDS: Final = (SUBJECT_CODE, "@subject_kind")

# Marks of a required column (*, ★, ※) at either end, a trailing colon, (必填) at either end
# (【必填】行政相对人名称 reads so once its brackets are parentheses).
_HEADER_DECORATION: Final = re.compile(r"^[*★☆※]+|[*★☆※]+$|[:：]$|\((必填|选填|可选|非必填|\*)\)$"
                                       r"|^\((必填|选填|可选|非必填)\)")
# The number a template puts before each column's name (1. 1、 (1) 一、): the name follows it.
_HEADER_NUMBER: Final = re.compile(r"^(?:[0-9]{1,2}[.、)]|[一二三四五六七八九十]{1,3}、|\([0-9]{1,2}\))(?=\D)")
# Other brackets templates put a unit or a note in (罚款金额【万元】, 罚款金额[万元]) are parentheses;
# so is a unit after a slash (罚款金额/万元).
_BRACKETS: Final = str.maketrans("【】[]〔〕", "()()()")
_UNIT_SLASH: Final = re.compile(r"/((?:万)?元)$")
# A trailing note on how to fill the column in (a date format, an example, 长期填2099/12/31, a
# length such as 18位, 年-月-日) is no part of its name; a unit (元, 万元) is, and stays.
_HEADER_HINT: Final = re.compile(r"\((?:[^()]*(?:YYYY|格式|填|例|如|[0-9]+位|年.?月.?日)[^()]*)\)$")
# "(单位：万元)" says what "(万元)" says.
_UNIT_LABEL: Final = re.compile(r"\(单位:?(?=[^()]+\)$)")


def normalize_header(header: str) -> str:
    """The form under which :meth:`Item.header_map` files a column header.

    Full-width folded, all whitespace removed, letters upper-cased (codes are case-insensitive),
    and the decorations templates add (a leading ``*``, a trailing ``(必填)`` or ``(YYYY/MM/DD)``)
    dropped.
    """
    h = _UNIT_SLASH.sub(r"(\1)", "".join(normalize_text(header).split()).upper().translate(_BRACKETS))
    return _UNIT_LABEL.sub("(", _HEADER_HINT.sub("", _HEADER_DECORATION.sub("", _HEADER_NUMBER.sub("", h))))


@dataclass(frozen=True)
class Condition:
    """Holds when ``field``'s normalised value is one of ``values`` (multi fields: any of them)."""

    field: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class FieldSpec:
    code: str
    name: str
    type: str
    max_length: int = 0  # characters; 0 = unlimited
    required: bool = False
    required_when: tuple[Condition, ...] = ()
    forbidden_when: tuple[Condition, ...] = ()
    enum: tuple[str, ...] = ()
    multi: bool = False  # enum values separated by ";" (also "；" and "、")
    aliases: tuple[str, ...] = ()  # other header spellings
    description: str = ""
    # Extensions beyond the first contract (all defaulted):
    value_aliases: tuple[tuple[str, str], ...] = ()  # cell value → canonical value (e.g. 长期 → 2099-12-31)
    checked_when: tuple[Condition, ...] = ()  # identifier check only if one holds (() = always)
    # an id_number is a 外国人永久居留身份证 number if one holds (its own check, not GB 11643's alone)
    permanent_residence_when: tuple[Condition, ...] = ()
    residence_permit_when: tuple[Condition, ...] = ()  # … a 港澳台居民居住证 number (810000/820000/830000)
    minimum: Decimal | None = None  # decimal/integer bounds, inclusive
    maximum: Decimal | None = None
    scale: int | None = None  # most decimal places of a decimal
    not_future: bool = False  # a date that cannot lie after today (decisions, births)
    consent: str = ""  # "written": the subject's written consent makes a property/tax field lawful
    # enum values that carry what they stand for: 其他-补办, 其他（补办） → "其他-补办"
    specified: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.name} ({self.code})"


@dataclass(frozen=True)
class CrossRule:
    """A check over several fields of one record (kinds: :data:`CROSS_RULE_KINDS`).

    - ``not_before`` [a, b]: date a is not earlier than date b (when both are present);
    - ``positive`` [x]: x is present and > 0;
    - ``together`` [x, y, …]: all present or none;
    - ``at_least_one`` [x, y, …]: one of them is present;
    - ``org_code_of`` [org, uscc]: the organisation code is the USCC's positions 9-17 (when both are
      present and valid: GB 32100 builds the USCC around it);
    - ``amount_in_text`` [amount in 万元, text]: the amount is not 10,000 times what the text states
      after ``word`` (``罚款人民币5000元`` in a 万元 column holding 5000: a figure in 元).
    The rule applies only when one of ``when`` holds (``()`` = always).
    """

    id: str
    kind: str
    fields: tuple[str, ...]
    message: str
    when: tuple[Condition, ...] = ()
    word: str = ""  # amount_in_text: what precedes the amount in the text (罚款)


@dataclass(frozen=True)
class Severity:
    """A severity class of a ``penalty_severity`` rule: disclosed ``min_months``-``max_months``."""

    name: str  # minor | ordinary | serious
    values: tuple[str, ...]  # values of the severity field that mean this class
    min_months: int  # earliest end (repair may be applied for after it)
    max_months: int  # latest end; 0 = not disclosed publicly at all
    # A class never published (max_months 0) is still shared with government and shown to its
    # subject, and that sharing is a disclosure with a limit too (披露 = 公开、共享或者查询, seed 003
    # 篇5 第十九条; 监管信息最长不得超过三年, 篇2 第二十四条(二)): its end, from the decision date.
    shared_months: int = 0


@dataclass(frozen=True)
class DisclosureRule:
    """How long a record is disclosed (kinds: :data:`DISCLOSURE_KINDS`).

    - ``from_decision``: ``years``/``months`` from ``start_field`` (default: the decision date);
    - ``while_valid_plus``: while valid (until the date in ``end_field``, or until revoked when
      it is empty or absent) plus ``years``/``months``; with ``ended_field``, a record whose
      field holds one of ``ended_values`` (当前状态 无效: 撤销, 注销 …) ended by the day its
      source reported it so, if that is earlier;
    - ``penalty_severity``: by the severity in ``severity_field`` (``default_severity`` when the
      field is absent or empty), counted from the decision date; a date in ``end_field``
      (e.g. 公示截止期) set by the source ends it earlier;
    - ``while_listed``: while the list entry stands (until ``end_field`` if given, or removal:
      ``removal_field``, the day the entry was taken off and so its first day off the list,
      where a list has both a planned end and an actual removal), and, with ``years``/``months``, at most that long from the
      listing (decision) date; with ``open_ended_years``/``open_ended_months``, an entry that
      gives no end date at all ends that long after listing (提示信息 without a validity: 3 years,
      seed 003 篇1 第二十四条(二));
    - ``permanent``: never expires by time.
    After the period a record is archived: kept, not disclosed.
    """

    kind: str
    years: int = 0
    months: int = 0
    start_field: str = ""
    end_field: str = ""
    severity_field: str = ""
    default_severity: str = ""
    severities: tuple[Severity, ...] = ()
    ended_field: str = ""
    ended_values: tuple[str, ...] = ()
    removal_field: str = ""
    open_ended_years: int = 0
    open_ended_months: int = 0

    @property
    def period_months(self) -> int:
        return self.years * 12 + self.months

    @property
    def open_ended_period_months(self) -> int:
        return self.open_ended_years * 12 + self.open_ended_months

    def gives_no_end(self, fields: Mapping[str, str]) -> bool:
        """A list entry that states neither a planned end nor a removal (a stored 长期 is an end)."""
        return not any(fields.get(f, "") for f in (self.end_field, self.removal_field) if f)

    def severity(self, value: str) -> Severity | None:
        """The severity class a severity-field value names (the default class for '')."""
        for s in self.severities:
            if value in s.values or (not value and s.name == self.default_severity):
                return s
        return None


@dataclass(frozen=True)
class Routing:
    rule_id: str
    up_to: str  # department | district | city | province | national


@dataclass(frozen=True)
class Item:
    code: str
    name: str
    category: str
    subject_kinds: tuple[str, ...]
    disclosure_class: str
    disclosure: DisclosureRule
    source_units: tuple[str, ...]  # USCCs allowed to report it, or ("*",)
    routing: Routing
    fields: tuple[FieldSpec, ...]
    key_fields: tuple[str, ...]  # field codes and pseudo-fields (@subject_code)
    subject_name_field: str
    subject_kind_field: str  # '' when the item has one subject kind
    subject_kind_values: Mapping[str, str]
    subject_code_fields: Mapping[str, str]
    source_unit_field: str
    decision_date_field: str
    cross_rules: tuple[CrossRule, ...]
    is_list: bool = False
    measures: tuple[str, ...] = ()
    legal_basis: str = ""  # law allowing what the catalogue could otherwise not do (class A persons)
    description: str = ""
    # kind → field naming the subject when its USCC field holds USCC_STAND_IN (17 zeros and X)
    subject_stand_ins: Mapping[str, str] = dc_field(default_factory=dict)
    _by_code: Mapping[str, FieldSpec] = dc_field(init=False, repr=False, compare=False)
    _headers: Mapping[str, str] = dc_field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Frozen: derived lookups are set once here, never changed.
        object.__setattr__(self, "subject_kind_values", MappingProxyType(dict(self.subject_kind_values)))
        object.__setattr__(self, "subject_code_fields", MappingProxyType(dict(self.subject_code_fields)))
        object.__setattr__(self, "subject_stand_ins", MappingProxyType(dict(self.subject_stand_ins)))
        object.__setattr__(self, "_by_code", MappingProxyType({f.code: f for f in self.fields}))
        headers: dict[str, str] = {}
        for f in self.fields:
            for h in (f.code, f.name, *f.aliases):
                headers[h] = f.code
                headers[normalize_header(h)] = f.code
        object.__setattr__(self, "_headers", MappingProxyType(headers))

    def field(self, code: str) -> FieldSpec:
        try:
            return self._by_code[code]
        except KeyError:
            raise KeyError(f"item {self.code} has no field {code}") from None

    def has_field(self, code: str) -> bool:
        return code in self._by_code

    def header_map(self) -> Mapping[str, str]:
        """Accepted header → field code: each code, Chinese name and alias as written and as
        :func:`normalize_header` files it. Look a file's header up as ``normalize_header(h)``."""
        return self._headers

    @property
    def field_codes(self) -> tuple[str, ...]:
        return tuple(f.code for f in self.fields)


@dataclass(frozen=True)
class Catalog:
    version: str
    items: Mapping[str, Item]
    authority: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", MappingProxyType(dict(self.items)))

    def item(self, code: str) -> Item:
        try:
            return self.items[code]
        except KeyError:
            known = ", ".join(sorted(self.items)) or "none"
            shown = code if len(code) <= 64 else f"{code[:64]}…"
            raise UnknownItemError(f"unknown catalogue item {shown!r} (catalogue {self.version} has: {known})",
                                   field="item") from None
