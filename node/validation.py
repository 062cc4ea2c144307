"""Record checks (清洗比对): one raw row of an item → normalised fields and every problem found.

Pure: no I/O, no clock beyond "today". A :class:`Validator` compiles each catalogue item once
(per-field converters from :mod:`node.field_checks`, enum lookups, conditions, cross rules) so that
:meth:`Validator.check` only walks prepared tuples; it runs on the ingest hot path next to signing
and storage.

Stable problem codes (part of the wire contract; docs/catalogue.md has the same table):

=====================  ======================================================================
``E_FIELD_REQUIRED``   a required field (or one required by a condition) is empty
``E_FIELD_TOO_LONG``   more characters than the field's ``max_length``
``E_FIELD_TYPE``       a cell of a kind the field cannot hold (a boolean, a list …)
``E_FIELD_ENUM``       not one of the field's values (multi fields: names the unknown parts)
``E_FIELD_DATE``       not a date, an impossible date (2024-02-30), or a future decision date
``E_FIELD_NUMBER``     not a number, out of bounds, too many decimals, not whole
``E_FIELD_FORBIDDEN``  a field that must be empty under a condition (e.g. 法定代表人 of 自然人)
``E_CROSS_FIELD``      a cross-field rule of the item failed (dates in order, fine amount …)
``E_SOURCE_UNIT``      the 数据来源单位 is not this department, or may not report the item
``E_SUBJECT_KIND``     the subject's kind is not one the item carries
``E_USCC_FORMAT``      USCC: not 18 characters of the GB 32100 alphabet
``E_USCC_ORG_CHECK``   USCC: the inner GB 11714 organisation-code check (pos 17) fails
``E_USCC_CHECK``       USCC: the check character (pos 18) fails
``E_ID_FORMAT``        ID number: not 17 digits + 0-9/X (15-digit legacy numbers included)
``E_ID_BIRTHDATE``     ID number: positions 7-14 are no real birth date, or a future one
``E_ID_CHECK``         ID number: the check digit fails
``W_USCC_ALLOWLISTED`` warning: an allow-listed USCC that fails a check character
``W_FIELD_UNKNOWN``    warning: the row has columns the item does not declare (dropped)
=====================  ======================================================================
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import date
from typing import Final

from node.catalog import Catalog, Condition, CrossRule, Item
from node.errors import Problem
from node.field_checks import Conv, IdCheck, Today, compile_field, identifier_check
from node.identifiers import normalize_text

__all__ = ["Checked", "Validator"]


@dataclass(frozen=True)
class Checked:
    """One checked row: what goes into a RecordBody, or why it cannot."""

    item: str
    fields: tuple[tuple[str, str], ...]  # (code, normalised value) in catalogue order, no empty values
    subject_code: str
    subject_kind: str
    subject_name: str
    source_unit: str
    decision_date: str  # ISO yyyy-mm-dd or ""
    key: str  # natural key (key field values joined by U+001F) for records.make_record_id
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not any(not p.warning for p in self.problems)


_CHECKED_FIELDS: Final = tuple(f.name for f in fields(Checked))
_MISSING: Final = object()
# A row is "clean" when its text holds nothing normalize_text would change but outer whitespace
# (same character class as node.identifiers, tested once over the whole row).
_DIRTY: Final = re.compile("[\uff01-\uff5e\u3000\u00a0\u200b-\u200d\u2060\ufeff\u00ad\t\n\r\x0b\x0c"
                           "\x1c-\x1f\x85\u1680\u2000-\u200a\u2028\u2029\u202f\u205f]")
_DIRTY_PROSE: Final = re.compile("[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a\u3000\u00a0\u200b-\u200d"
                                 "\u2060\ufeff\u00ad\r]")
# A compiled condition: (field, accepted values, field is multi-valued).
Cond = tuple[str, frozenset[str], bool]
# A compiled cross rule: (conditions, failure test over (values, invalid), field, message).
CrossCheck = tuple[tuple[Cond, ...], Callable[[dict[str, str], set[str]], bool], str, str]


def _checked(*values: object) -> Checked:
    """A :class:`Checked` without the frozen dataclass's per-field ``object.__setattr__`` calls,
    which cost as much as a tenth of a clean row's check."""
    c = object.__new__(Checked)
    object.__setattr__(c, "__dict__", dict(zip(_CHECKED_FIELDS, values, strict=True)))
    return c


def _conds(conds: tuple[Condition, ...], item: Item) -> tuple[Cond, ...]:
    return tuple((c.field, frozenset(c.values), item.field(c.field).multi) for c in conds)


def _holds(values: Mapping[str, str], conds: tuple[Cond, ...]) -> bool:
    for name, accepted, multi in conds:
        v = values.get(name)
        if v is not None and (not accepted.isdisjoint(v.split(";")) if multi else v in accepted):
            return True
    return False


def _describe(conds: tuple[Condition, ...], item: Item) -> str:
    return " or ".join(f"{item.field(c.field).name} is {'/'.join(c.values)}" for c in conds)


def _cross_test(rule: CrossRule) -> Callable[[dict[str, str], set[str]], bool]:
    """The failure test of a cross rule; a field that failed its own check counts as present."""
    f = rule.fields
    if rule.kind == "not_before":
        a, b = f

        def not_before(values: dict[str, str], invalid: set[str]) -> bool:
            return a in values and b in values and values[a] < values[b]  # ISO dates order as strings

        return not_before
    if rule.kind == "positive":
        (x,) = f

        def positive(values: dict[str, str], invalid: set[str]) -> bool:
            v = values.get(x)  # canonical decimals: zero is "0", negatives start with "-"
            return x not in invalid and (v is None or v == "0" or v[0] == "-")

        return positive
    least = rule.kind == "at_least_one"

    def count(values: dict[str, str], invalid: set[str]) -> bool:
        n = 0
        for x in f:
            if x in values or x in invalid:
                n += 1
        return n == 0 if least else 0 < n < len(f)

    return count


@dataclass(frozen=True)
class _Plan:
    """An item compiled for :meth:`Validator.check`."""

    item: Item
    convs: tuple[tuple[str, Conv, int, bool], ...]  # (code, converter, max length if plain text else -1, prose)
    codes: frozenset[str]
    flat_codes: tuple[str, ...]  # every field but prose
    prose_codes: tuple[str, ...]
    required: frozenset[str]
    required_msgs: tuple[tuple[str, str], ...]  # (code, message) in catalogue order
    required_when: tuple[tuple[str, str, tuple[Cond, ...]], ...]
    forbidden_when: tuple[tuple[str, str, tuple[Cond, ...]], ...]
    deferred: tuple[tuple[str, tuple[Cond, ...], IdCheck], ...]  # identifier checks under conditions
    cross: tuple[CrossCheck, ...]
    units: frozenset[str] | None  # units that may report the item; None = any


class Validator:
    def __init__(self, catalog: Catalog, *, uscc_allowlist: Iterable[str] = (), source_unit: str = "",
                 allow_other_units: bool = False, today: date | None = None) -> None:
        self.catalog = catalog
        self.allowlist = frozenset(normalize_text(c).replace(" ", "").upper() for c in uscc_allowlist)
        self.source_unit = normalize_text(source_unit).upper()
        self.allow_other_units = allow_other_units
        self._own_unit_only = bool(self.source_unit) and not allow_other_units
        self._today = Today(today)
        self._good_uscc: set[str] = set()
        self._plans = {code: self._compile(item) for code, item in catalog.items.items()}

    def check(self, item: Item, raw: Mapping[str, object], row: int = 0) -> Checked:
        """Normalise and check one row of ``item`` (cells by field code); bad data never raises."""
        plan = self._plans.get(item.code)
        if plan is None or plan.item is not item:
            plan = self._compile(item)
        self._today.refresh()
        problems: list[Problem] = []
        values: dict[str, str] = {}
        invalid: set[str] = set()
        # Is the row clean (nothing normalize_text would change but outer whitespace)? One test
        # per row over the joined cells instead of one per cell; prose apart, since Chinese
        # punctuation （，。） is dirt in a name but correct in prose. Non-text cells: per cell.
        get = raw.get
        try:
            flat = "|".join(filter(None, map(get, plan.flat_codes)))  # type: ignore[arg-type]
            prose = "|".join(filter(None, map(get, plan.prose_codes)))  # type: ignore[arg-type]
        except TypeError:
            clean = clean_prose = False
        else:
            clean = "  " not in flat and (flat.isprintable() if flat.isascii() else _DIRTY.search(flat) is None)
            clean_prose = _DIRTY_PROSE.search(prose) is None
        seen = 0
        for code, conv, plain, is_prose in plan.convs:
            v = get(code, _MISSING)
            if v is _MISSING:
                continue
            seen += 1
            if v is None or v == "":
                continue
            ok = clean_prose if is_prose else clean
            if ok and plain >= 0:  # inline the commonest case: clean text within its length
                s = v.strip()  # type: ignore[attr-defined]
                if len(s) <= plain:
                    if s:
                        values[code] = s
                    continue
            s = conv(v, problems, row, ok)
            if s:
                values[code] = s
            elif s is None:
                invalid.add(code)
        if seen < len(raw):
            extra = ", ".join(sorted(str(k) for k in raw if k not in plan.codes))
            problems.append(Problem("W_FIELD_UNKNOWN", "", f"columns not in {item.code} ignored: {extra}",
                                    row, warning=True))
        if not values.keys() >= plan.required:
            for code, msg in plan.required_msgs:
                if code not in values and code not in invalid:
                    problems.append(Problem("E_FIELD_REQUIRED", code, msg, row))
        for code, msg, conds in plan.required_when:
            if code not in values and code not in invalid and _holds(values, conds):
                problems.append(Problem("E_FIELD_REQUIRED", code, msg, row))
        for code, msg, conds in plan.forbidden_when:
            if (code in values or code in invalid) and _holds(values, conds):
                problems.append(Problem("E_FIELD_FORBIDDEN", code, msg, row))
        for code, conds, id_check in plan.deferred:
            s = values.get(code)
            if s and _holds(values, conds):
                id_check(s, problems, row)
        for when, failed, code, msg in plan.cross:
            if (not when or _holds(values, when)) and failed(values, invalid):
                problems.append(Problem("E_CROSS_FIELD", code, msg, row))

        kind, subject_code = self._subject(item, values, invalid, problems, row)
        unit = values.get(item.source_unit_field, "")
        if unit and (self._own_unit_only or plan.units is not None):
            self._check_unit(item, plan, unit, problems, row)
        key = "\x1f".join([subject_code if k == "@subject_code" else kind if k == "@subject_kind"
                           else values.get(k, "") for k in item.key_fields])
        return _checked(item.code, tuple(values.items()), subject_code, kind,
                        values.get(item.subject_name_field, ""), unit,
                        values.get(item.decision_date_field, "") if item.decision_date_field else "",
                        key, tuple(problems))

    def _subject(self, item: Item, values: dict[str, str], invalid: set[str], problems: list[Problem],
                 row: int) -> tuple[str, str]:
        if item.subject_kind_field:
            said = values.get(item.subject_kind_field, "")
            kind = item.subject_kind_values.get(said, "")
            if said and not kind:
                spec = item.field(item.subject_kind_field)
                problems.append(Problem("E_SUBJECT_KIND", spec.code,
                                        f'{spec.label}: {item.name} does not carry "{said}" subjects', row))
        else:
            kind = item.subject_kinds[0]
        if not kind:
            return "", ""
        code_field = item.subject_code_fields[kind]
        subject_code = values.get(code_field, "")
        if not subject_code and code_field not in invalid \
                and not any(p.field == code_field for p in problems):
            problems.append(Problem("E_FIELD_REQUIRED", code_field,
                                    f"{item.field(code_field).label}: required to identify the subject", row))
        return kind, subject_code

    def _check_unit(self, item: Item, plan: _Plan, unit: str, problems: list[Problem], row: int) -> None:
        label = item.field(item.source_unit_field).label
        if self._own_unit_only and unit != self.source_unit:
            problems.append(Problem("E_SOURCE_UNIT", item.source_unit_field,
                                    f"{label}: {unit} is not this node's unit {self.source_unit}", row))
        if plan.units is not None and unit not in plan.units:
            problems.append(Problem("E_SOURCE_UNIT", item.source_unit_field,
                                    f"{label}: {unit} may not report {item.code} ({item.name})", row))

    def _compile(self, item: Item) -> _Plan:
        convs = []
        deferred = []
        for spec in item.fields:
            check = None
            if spec.type in ("uscc", "id_number"):
                check = identifier_check(spec, allowlist=self.allowlist, good=self._good_uscc, today=self._today)
                if spec.checked_when:  # depends on another field: run after all fields are read
                    deferred.append((spec.code, _conds(spec.checked_when, item), check))
                    check = None
            plain = -1
            if spec.type in ("string", "text") and not spec.value_aliases:
                plain = spec.max_length or 1 << 62
            convs.append((spec.code, compile_field(spec, check=check, today=self._today), plain,
                          spec.type == "text"))
        required = [f for f in item.fields if f.required]
        return _Plan(
            item=item, convs=tuple(convs), codes=frozenset(item.field_codes),
            flat_codes=tuple(f.code for f in item.fields if f.type != "text"),
            prose_codes=tuple(f.code for f in item.fields if f.type == "text"),
            required=frozenset(f.code for f in required),
            required_msgs=tuple((f.code, f"{f.label}: required") for f in required),
            required_when=tuple((f.code, f"{f.label}: required when {_describe(f.required_when, item)}",
                                 _conds(f.required_when, item)) for f in item.fields if f.required_when),
            forbidden_when=tuple((f.code, f"{f.label}: must be empty when {_describe(f.forbidden_when, item)}",
                                  _conds(f.forbidden_when, item)) for f in item.fields if f.forbidden_when),
            deferred=tuple(deferred),
            cross=tuple((_conds(r.when, item), _cross_test(r), r.fields[0], f"{r.message} [{r.id}]")
                        for r in item.cross_rules),
            units=None if item.source_units == ("*",) else frozenset(item.source_units))
