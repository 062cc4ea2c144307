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
``E_FIELD_ENCODING``   Chinese text (GBK or UTF-8 bytes) read as latin1: ``º¼ÖÝ`` for 杭州
``E_FIELD_FORBIDDEN``  a field that must be empty under a condition (e.g. 法定代表人 of 自然人)
``E_CROSS_FIELD``      a cross-field rule of the item failed (dates in order, fine amount …)
``E_SOURCE_UNIT``      the 数据来源单位 is not this department, or may not report the item
``E_SUBJECT_KIND``     the subject's kind is not one the item carries
``E_USCC_FORMAT``      USCC: not 18 characters of the GB 32100 alphabet, or not its structure
``E_USCC_ORG_CHECK``   USCC: the inner GB 11714 organisation-code check (pos 17) fails
``E_USCC_CHECK``       USCC: the check character (pos 18) fails
``E_ID_FORMAT``        ID number: not 17 digits + 0-9/X (15-digit legacy numbers included), no province
``E_ID_BIRTHDATE``     ID number: positions 7-14 are no real birth date, or a future one
``E_ID_CHECK``         ID number: the check digit fails
``W_USCC_ALLOWLISTED`` warning: an allow-listed USCC that fails a check character
``W_FIELD_UNKNOWN``    warning: the row has columns the item does not declare (dropped)
=====================  ======================================================================
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType
from typing import Final

from node.catalog import Catalog, Condition, Item
from node.cells import BLANKS, DIRT, DIRT_PROSE, NOT_VALUES, SHORT, is_value, latin1_shaped, misread
from node.cross_rules import failure_test
from node.errors import Problem
from node.field_checks import TEXT_MARK, Conv, IdCheck, Today, compile_field, document_check, identifier_check
from node.identifiers import USCC_STAND_IN, normalize_text

__all__ = ["Checked", "Validator"]


# 工商注册号 as registrations issued them: 15 digits (GB/T 17710 check digit) since 2007, 13 before.
_REGISTRATION_NO = re.compile(r"[0-9]{15}|[0-9]{13}")
_NAMED = 10  # unknown columns a warning names; the rest are counted
_NAME_CHARS = 64


def _few(names: Iterable[str]) -> str:
    """The first names in order, each cut to a readable length, and how many more there are: a
    pushed row may carry any number of fields, and the warning is echoed in its ack."""
    ordered = sorted(names)
    shown = ", ".join(n if len(n) <= _NAME_CHARS else n[:_NAME_CHARS] + "…" for n in ordered[:_NAMED])
    return shown if len(ordered) <= _NAMED else f"{shown} and {len(ordered) - _NAMED:,} more"


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
        return not self.problems or not any(not p.warning for p in self.problems)


# A compiled condition: (field, accepted values, field is multi-valued).
Cond = tuple[str, frozenset[str], bool]
# A conditional rule: (REQUIRED | FORBIDDEN | CHECKED, field, message, identifier check or None).
Action = tuple[int, str, str, "IdCheck | None"]
REQUIRED, FORBIDDEN, CHECKED = 0, 1, 2
# A compiled cross rule: (conditions, failure test over (values, invalid), field, message).
CrossCheck = tuple[tuple[Cond, ...], Callable[[dict[str, str], set[str]], bool], str, str]


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


def _apply(action: Action, values: dict[str, str], invalid: set[str], problems: list[Problem], row: int) -> None:
    """Apply a conditional rule whose condition holds."""
    kind, code, msg, id_check = action
    if kind == REQUIRED:
        if code not in values and code not in invalid:
            problems.append(Problem("E_FIELD_REQUIRED", code, msg, row))
    elif kind == FORBIDDEN:
        if code in values or code in invalid:
            problems.append(Problem("E_FIELD_FORBIDDEN", code, msg, row))
    elif id_check is not None and code in values:
        id_check(values[code], problems, row)


def _conditional(item: Item, actions: list[tuple[tuple[Condition, ...], Action]]) -> tuple[
        tuple[tuple[str, Mapping[str, tuple[Action, ...]]], ...], tuple[tuple[tuple[Cond, ...], Action], ...]]:
    """Split conditional rules into (indexed by a single-valued field's value, general)."""
    tables: dict[str, dict[str, list[Action]]] = {}
    general = []
    for conds, action in actions:
        names = {c.field for c in conds}
        if len(names) == 1 and not item.field(conds[0].field).multi:
            table = tables.setdefault(conds[0].field, {})
            for v in {v for c in conds for v in c.values}:
                table.setdefault(v, []).append(action)
        else:
            general.append((_conds(conds, item), action))
    by_value = tuple((name, MappingProxyType({v: tuple(a) for v, a in t.items()})) for name, t in tables.items())
    return by_value, tuple(general)


@dataclass(frozen=True)
class _Plan:
    """An item compiled for :meth:`Validator.check`."""

    item: Item
    # (code, converter, max length if plain text else -1, search for characters to normalise, part of the key)
    convs: tuple[tuple[str, Conv, int, Callable[[str], object], bool], ...]
    codes: frozenset[str]
    required: frozenset[str]
    required_msgs: tuple[tuple[str, str], ...]  # (code, message) in catalogue order
    # Conditional rules (required_when, forbidden_when, checked_when). Those whose conditions all
    # name one single-valued field are indexed by that field's value: one lookup per row instead
    # of one condition test per rule. The rest are tested one by one.
    by_value: tuple[tuple[str, Mapping[str, tuple[Action, ...]]], ...]
    general: tuple[tuple[tuple[Cond, ...], Action], ...]
    not_before: tuple[tuple[str, str, str, str], ...]  # (later, earlier, field, message)
    cross: tuple[CrossCheck, ...]  # the other cross rules
    key: tuple[str, ...]
    units: frozenset[str] | None  # units that may report the item; None = any


_ADULT: Final = 18
_ADULT_FROM_16: Final = 16


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
        if time.time() >= self._today.until:
            self._today.refresh()
        problems: list[Problem] = []
        values: dict[str, str] = {}
        invalid: set[str] = set()
        get = raw.get
        for code, conv, plain, dirt, keyed in plan.convs:
            v = get(code)
            if v is None or v == "":
                continue
            if type(v) is str:
                # Clean text (nothing normalize_text would change but outer whitespace) is only
                # stripped: C-level tests here instead of a normalisation call per cell.
                ascii_only = v.isascii()
                ok = (v.isprintable() if ascii_only else dirt(v) is None) and "  " not in v
                # Most short cells are values: one C-level lookup before any call.
                if (len(v) <= SHORT and v.strip(BLANKS) in NOT_VALUES
                        and not is_value(v, code, plan.item, problems, invalid, row)):
                    continue
                if not ok and not ascii_only and latin1_shaped(v) and misread(v, code, plan.item, problems, row):
                    invalid.add(code)
                    continue
            else:
                ok = False
            if ok and plain >= 0:  # the commonest case: clean text within its length
                s = v.strip()  # type: ignore[attr-defined]
                # A key's text mark, Excel's scientific notation of a number, or a number's ".0", is the converter's.
                if len(s) <= plain and not (keyed and (s[:1] == TEXT_MARK or "E+" in s or ".0" in s)):
                    if s:
                        values[code] = s
                    continue
            s = conv(v, problems, row, ok)
            if s:
                values[code] = s
            elif s is None:
                invalid.add(code)
        if not plan.codes.issuperset(raw):
            problems.append(Problem("W_FIELD_UNKNOWN", "", f"columns not in {item.code} ignored: "
                                    f"{_few(str(k) for k in raw if k not in plan.codes)}", row, warning=True))
        if not values.keys() >= plan.required:
            for code, msg in plan.required_msgs:
                if code not in values and code not in invalid:
                    problems.append(Problem("E_FIELD_REQUIRED", code, msg, row))
        for name, table in plan.by_value:
            actions = table.get(values.get(name, ""))
            if actions:
                for action in actions:
                    _apply(action, values, invalid, problems, row)
        for conds, action in plan.general:
            if _holds(values, conds):
                _apply(action, values, invalid, problems, row)
        for later, earlier, code, msg in plan.not_before:
            if later in values and earlier in values and values[later] < values[earlier]:  # ISO dates
                problems.append(Problem("E_CROSS_FIELD", code, msg, row))
        for when, failed, code, msg in plan.cross:
            if (not when or _holds(values, when)) and failed(values, invalid):
                problems.append(Problem("E_CROSS_FIELD", code, msg, row))

        if item.subject_kind_field:
            kind = item.subject_kind_values.get(values.get(item.subject_kind_field, ""), "")
        else:
            kind = item.subject_kinds[0]
        subject_code = values.get(item.subject_code_fields[kind], "") if kind else ""
        if subject_code == USCC_STAND_IN and item.subject_stand_ins:
            subject_code = self._stand_in(item, kind, values, problems, row)
        if not subject_code:
            kind = self._no_subject(item, values, invalid, problems, row)
        elif kind == "natural_person" and len(subject_code) == 18 and subject_code[:17].isdigit():
            self._check_age(item, values, subject_code, problems, row)
        unit = values.get(item.source_unit_field, "")
        if unit and ((self._own_unit_only and unit != self.source_unit)
                     or (plan.units is not None and unit not in plan.units)):
            self._check_unit(item, plan, unit, problems, row)
        key = "\x1f".join([subject_code if k == "@subject_code" else kind if k == "@subject_kind"
                           else values.get(k, "") for k in plan.key])
        c = object.__new__(Checked)
        # Bypasses the frozen dataclass's per-field object.__setattr__: a tenth of a clean row's check.
        object.__setattr__(c, "__dict__", {
            "item": item.code, "fields": tuple(values.items()), "subject_code": subject_code,
            "subject_kind": kind, "subject_name": values.get(item.subject_name_field, ""), "source_unit": unit,
            "decision_date": values.get(item.decision_date_field, "") if item.decision_date_field else "",
            "key": key, "problems": tuple(problems)})
        return c

    def _stand_in(self, item: Item, kind: str, values: dict[str, str], problems: list[Problem], row: int) -> str:
        """The subject of a row whose USCC is the 17 zeros and X of 双公示 v2.0: a 个体工商户 without a
        USCC yet, known by its 工商注册号 until it has one (the item's ``subject.stand_in``)."""
        field = item.subject_code_fields[kind]
        instead = item.subject_stand_ins.get(kind, "")
        if instead and values.get(instead) and not _REGISTRATION_NO.fullmatch(values[instead]):
            # The subject's own old number, or the row would be filed under whatever the cell holds:
            # another company's USCC, or a person's ID number shown as the subject's code.
            problems.append(Problem("E_STAND_IN_FORMAT", instead, f"{item.field(instead).label}: "
                                    f'"{values[instead]}" is no registration number (15 digits, or 13 in older ones); '
                                    f"it cannot name the subject in place of {USCC_STAND_IN}", row))
            return USCC_STAND_IN
        if instead and values.get(instead):
            problems.append(Problem("W_USCC_STAND_IN", field, f"{item.field(field).label}: {USCC_STAND_IN} stands in "
                                    f"for a USCC not issued yet; the subject is known by its "
                                    f"{item.field(instead).label} until the row is reported with one", row,
                                    warning=True))
            return values[instead]
        why = (f"is allowed only for a subject that has no USCC yet and gives its {item.field(instead).label}"
               if instead else "stands for no one")
        problems.append(Problem("E_USCC_CHECK", field, f"{item.field(field).label}: {USCC_STAND_IN} {why}", row))
        return USCC_STAND_IN  # refused: one problem for one mistake, not a missing subject too

    def _check_age(self, item: Item, values: dict[str, str], id_number: str, problems: list[Problem],
                   row: int) -> None:
        """The natural persons of public credit information are adults: 年满十八周岁, or from 16
        when living on their own work's income (seed 001 附件1 一; seed 003 篇5 第十一条). Under 16
        on the decision date is refused; 16 or 17 is accepted with a warning for the source to
        check."""
        try:
            born = date(int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14]))
        except ValueError:
            return  # the ID check has said what is wrong
        on = values.get(item.decision_date_field, "") if item.decision_date_field else ""
        try:
            day = date.fromisoformat(on) if on else self._today.date
        except ValueError:
            return
        age = day.year - born.year - ((day.month, day.day) < (born.month, born.day))
        field = item.subject_code_fields["natural_person"]
        if any(p.field == field and p.code.startswith("E_ID_") for p in problems):
            return  # one report per mistake: a birth date the ID check refused has no age
        if age < 0:
            problems.append(Problem("E_CROSS_FIELD", field, f"the person was born on {born.isoformat()}, after "
                                    f"the decision of {day.isoformat()}", row))
        elif age < _ADULT_FROM_16:
            problems.append(Problem("E_SUBJECT_MINOR", field, f"the person was {age} on {day.isoformat()}: public "
                                    "credit information covers persons of 18, or 16 living on their own income "
                                    "(seed 001 附件1 一, seed 003 篇5 第十一条)", row))
        elif age < _ADULT:
            problems.append(Problem("W_SUBJECT_MINOR", field, f"the person was {age} on {day.isoformat()}: under 18, "
                                    "so covered only when living on their own work's income (seed 001 附件1 一)",
                                    row, warning=True))

    def _no_subject(self, item: Item, values: dict[str, str], invalid: set[str], problems: list[Problem],
                    row: int) -> str:
        """Explain a row whose subject is not identified; returns the subject kind, if known."""
        said = values.get(item.subject_kind_field, "") if item.subject_kind_field else ""
        kind = item.subject_kind_values.get(said, "") if said else item.subject_kinds[0] \
            if not item.subject_kind_field else ""
        if said and not kind:
            spec = item.field(item.subject_kind_field)
            problems.append(Problem("E_SUBJECT_KIND", spec.code,
                                    f'{spec.label}: {item.name} does not carry "{said}" subjects', row))
        if kind:
            code_field = item.subject_code_fields[kind]
            if code_field not in invalid and not any(p.field == code_field for p in problems):
                problems.append(Problem("E_FIELD_REQUIRED", code_field,
                                        f"{item.field(code_field).label}: required to identify the subject", row))
        return kind

    def _check_unit(self, item: Item, plan: _Plan, unit: str, problems: list[Problem], row: int) -> None:
        label = item.field(item.source_unit_field).label
        if self._own_unit_only and unit != self.source_unit:
            problems.append(Problem("E_SOURCE_UNIT", item.source_unit_field,
                                    f"{label}: {unit} is not this node's unit {self.source_unit}", row))
        if plan.units is not None and unit not in plan.units:
            problems.append(Problem("E_SOURCE_UNIT", item.source_unit_field,
                                    f"{label}: {unit} may not report {item.code} ({item.name})", row))

    def _compile(self, item: Item) -> _Plan:
        stand_in_fields = {item.subject_code_fields[kind] for kind in item.subject_stand_ins}
        convs = []
        actions: list[tuple[tuple[Condition, ...], Action]] = []
        for f in item.fields:
            check = None
            if f.type in ("uscc", "id_number", "org_code"):
                check = identifier_check(f, allowlist=self.allowlist, good=self._good_uscc, today=self._today,
                                         stand_in=f.code in stand_in_fields)
                if f.checked_when:  # depends on another field: run after all fields are read
                    actions.append((f.checked_when, (CHECKED, f.code, "", check)))
                    check = None
            for document, conds in (("permanent_residence", f.permanent_residence_when),
                                    ("residence_permit", f.residence_permit_when)):
                if conds:
                    actions.append((conds, (CHECKED, f.code, "", document_check(f, document, today=self._today))))
            if f.required_when:
                msg = f"{f.label}: required when {_describe(f.required_when, item)}"
                actions.append((f.required_when, (REQUIRED, f.code, msg, None)))
            if f.forbidden_when:
                msg = f"{f.label}: must be empty when {_describe(f.forbidden_when, item)}"
                actions.append((f.forbidden_when, (FORBIDDEN, f.code, msg, None)))
            plain = -1
            key = f.code in item.key_fields  # a 文号: Excel's text mark is read past (by the converter)
            if f.type in ("string", "text") and not f.value_aliases:
                plain = f.max_length or 1 << 62
            dirt = (DIRT_PROSE if f.type == "text" else DIRT).search
            convs.append((f.code, compile_field(f, check=check, today=self._today, key=key), plain, dirt, key))
        required = [f for f in item.fields if f.required]
        by_value, general = _conditional(item, actions)
        return _Plan(
            item=item, convs=tuple(convs), codes=frozenset(item.field_codes),
            required=frozenset(f.code for f in required),
            required_msgs=tuple((f.code, f"{f.label}: required") for f in required),
            by_value=by_value, general=general,
            not_before=tuple((r.fields[0], r.fields[1], r.fields[0], f"{r.message} [{r.id}]")
                             for r in item.cross_rules if r.kind == "not_before" and not r.when),
            cross=tuple((_conds(r.when, item), failure_test(r), r.fields[0], f"{r.message} [{r.id}]")
                        for r in item.cross_rules if r.kind != "not_before" or r.when),
            key=item.key_fields, units=None if item.source_units == ("*",) else frozenset(item.source_units))
