"""Catalogue YAML → :mod:`node.catalog_model` objects, refusing anything doubtful.

Each refusal is a :class:`~node.errors.CatalogError` naming the dotted path of the offending key
(``items.admin_penalty.fields[3].maxlen``). Parsing (:mod:`node.catalog_reader`) checks shapes and
types; :func:`check_item` then checks meaning: declared references, duplicates, consistent subject
kinds, and the prohibited-field rule (:mod:`node.prohibited`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from node import prohibited
from node.catalog_model import (
    CROSS_RULE_KINDS,
    DISCLOSURE_CLASSES,
    DISCLOSURE_KINDS,
    FIELD_TYPES,
    KEY_PSEUDO_FIELDS,
    LEVELS_UP,
    SUBJECT_KINDS,
    Condition,
    CrossRule,
    DisclosureRule,
    FieldSpec,
    Item,
    Routing,
    Severity,
    normalize_header,
)
from node.catalog_reader import Obj
from node.errors import CatalogError
from node.identifiers import check_uscc, normalize_text

_CODE_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_ITEM_RE: Final = re.compile(r"[a-z][a-z0-9_]*")


# --- parsing shapes ---------------------------------------------------------------------------------
def _condition(o: Obj) -> Condition:
    return Condition(field=o.text("field"), values=o.texts("values", required=True))


# The field types of cross rules whose fields play different parts, in order.
_CROSS_TYPES = {"org_code_of": (("org_code",), ("uscc",)), "amount_in_text": (("decimal",), ("text", "string"))}

def _field(o: Obj) -> FieldSpec:
    aliases = o.mapping("value_aliases")
    return FieldSpec(
        code=o.text("code"), name=o.text("name"), type=o.one_of("type", FIELD_TYPES),
        max_length=o.count("max_length"), required=o.flag("required"),
        required_when=o.objs("required_when", _condition), forbidden_when=o.objs("forbidden_when", _condition),
        enum=o.texts("enum"), multi=o.flag("multi"), aliases=o.texts("aliases"),
        description=o.text("description", ""), value_aliases=tuple(aliases.items()),
        checked_when=o.objs("checked_when", _condition),
        permanent_residence_when=o.objs("permanent_residence_when", _condition),
        residence_permit_when=o.objs("residence_permit_when", _condition), minimum=o.number("minimum"),
        maximum=o.number("maximum"), scale=None if o.raw("scale", False) is None else o.count("scale"),
        not_future=o.flag("not_future"), consent=o.text("consent", ""), specified=o.texts("specified"),
    )


def _cross_rule(o: Obj) -> CrossRule:
    return CrossRule(id=o.text("id"), kind=o.one_of("kind", CROSS_RULE_KINDS),
                     fields=o.texts("fields", required=True), message=o.text("message"),
                     when=o.objs("when", _condition), word=o.text("word", ""))


DEFAULT_SHARED_MONTHS = 3


def _severity(o: Obj) -> Severity:
    max_months = o.count("max_months")
    # A class never published and written before shared_months existed (a signed release still
    # held by nodes) keeps loading, with DOMAIN §4's bound for such penalties (≤ 3 months).
    return Severity(name=o.text("name"), values=o.texts("values"), min_months=o.count("min_months"),
                    max_months=max_months,
                    shared_months=o.count("shared_months", DEFAULT_SHARED_MONTHS if max_months == 0 else 0))


def _disclosure(o: Obj) -> DisclosureRule:
    return DisclosureRule(
        kind=o.one_of("kind", DISCLOSURE_KINDS), years=o.count("years"), months=o.count("months"),
        start_field=o.text("start_field", ""), end_field=o.text("end_field", ""),
        severity_field=o.text("severity_field", ""), default_severity=o.text("default_severity", ""),
        severities=o.objs("severities", _severity), ended_field=o.text("ended_field", ""),
        ended_values=o.texts("ended_values"), removal_field=o.text("removal_field", ""),
        open_ended_years=o.count("open_ended_years"), open_ended_months=o.count("open_ended_months"))


def parse_item(o: Obj) -> Item:
    """Read one item mapping (its path names the item) and check its meaning."""
    disclosure = o.obj("disclosure")
    routing = o.obj("routing")
    subject = o.obj("subject")
    d = _disclosure(disclosure)
    r = Routing(rule_id=routing.text("rule_id"), up_to=routing.one_of("up_to", LEVELS_UP))
    s = (subject.text("name_field"), subject.text("kind_field", ""), subject.mapping("kinds"),
         subject.mapping("code_fields"), subject.mapping("stand_in"))
    for sub in (disclosure, routing, subject):
        sub.close()
    item = Item(
        code=o.text("code"), name=o.text("name"), category=o.text("category"),
        description=o.text("description", ""), subject_kinds=o.texts("subject_kinds", required=True),
        disclosure_class=o.one_of("disclosure_class", DISCLOSURE_CLASSES), legal_basis=o.text("legal_basis", ""),
        disclosure=d, source_units=o.texts("source_units") or ("*",), routing=r,
        fields=o.objs("fields", _field), key_fields=o.texts("key_fields", required=True),
        subject_name_field=s[0], subject_kind_field=s[1], subject_kind_values=s[2], subject_code_fields=s[3],
        subject_stand_ins=s[4],
        source_unit_field=o.text("source_unit_field"), decision_date_field=o.text("decision_date_field", ""),
        cross_rules=o.objs("cross_rules", _cross_rule), is_list=o.flag("is_list"), measures=o.texts("measures"),
    )
    o.close()
    check_item(item, o.path)
    return item


# --- meaning --------------------------------------------------------------------------------------
def check_item(item: Item, path: str) -> None:
    """Refuse an item whose parts do not fit together. ``path`` prefixes every message."""

    def fail(where: str, msg: str) -> CatalogError:
        return CatalogError(f"{path}.{where}: {msg}")

    if not _ITEM_RE.fullmatch(item.code):
        raise fail("code", f"{item.code!r} must be lower-case letters, digits and _")
    if not item.fields:
        raise fail("fields", "an item needs fields")
    seen_codes: set[str] = set()
    headers: dict[str, str] = {}
    for i, f in enumerate(item.fields):
        _check_field(f, f"{path}.fields[{i}]")
        if f.code in seen_codes:
            raise fail(f"fields[{i}].code", f"duplicate field code {f.code}")
        seen_codes.add(f.code)
        for h in (f.code, f.name, *f.aliases):
            other = headers.setdefault(normalize_header(h), f.code)
            if other != f.code:
                raise fail(f"fields[{i}]", f"header {h!r} of {f.code} is already a header of {other}")
        prohibited.check_field(item.code, f.code, f.name, f.aliases, f.consent)

    def declared(where: str, code: str, types: tuple[str, ...] = ()) -> FieldSpec:
        if not item.has_field(code):
            raise fail(where, f"refers to undeclared field {code!r}")
        spec = item.field(code)
        if types and spec.type not in types:
            raise fail(where, f"field {code} must be of type {' or '.join(types)}, not {spec.type}")
        return spec

    def conditions(where: str, conds: tuple[Condition, ...]) -> None:
        for j, c in enumerate(conds):
            spec = declared(f"{where}[{j}].field", c.field)
            bad = [v for v in c.values if spec.enum and v not in spec.enum]
            if bad:
                raise fail(f"{where}[{j}].values", f"{bad[0]!r} is not a value of {c.field}")

    for i, f in enumerate(item.fields):
        for name in ("required_when", "forbidden_when", "checked_when", "permanent_residence_when",
                     "residence_permit_when"):
            conditions(f"fields[{i}].{name}", getattr(f, name))

    # subjects
    kinds = item.subject_kinds
    if not kinds or any(k not in SUBJECT_KINDS for k in kinds):
        raise fail("subject_kinds", f"must be a non-empty list of {', '.join(SUBJECT_KINDS)}")
    declared("subject.name_field", item.subject_name_field)
    if item.subject_kind_field:
        spec = declared("subject.kind_field", item.subject_kind_field, ("enum",))
        for value, kind in item.subject_kind_values.items():
            if value not in spec.enum:
                raise fail("subject.kinds", f"{value!r} is not a value of {spec.code}")
            if kind not in kinds:
                raise fail("subject.kinds", f"{kind!r} is not one of the item's subject_kinds")
        missing = set(kinds) - set(item.subject_kind_values.values())
        if missing:
            raise fail("subject.kinds", f"no value of {spec.code} means {', '.join(sorted(missing))}")
    elif len(kinds) > 1:
        raise fail("subject.kind_field", "an item with several subject kinds needs a kind field")
    if set(item.subject_code_fields) != set(kinds):
        raise fail("subject.code_fields", f"needs exactly one code field per subject kind ({', '.join(kinds)})")
    for kind, code in item.subject_code_fields.items():
        declared(f"subject.code_fields.{kind}", code)
    for kind, code in item.subject_stand_ins.items():
        if kind not in item.subject_code_fields:
            raise fail(f"subject.stand_in.{kind}", "is not one of the item's subject kinds")
        declared(f"subject.code_fields.{kind}", item.subject_code_fields[kind], ("uscc",))
        declared(f"subject.stand_in.{kind}", code)
    if "natural_person" in kinds and item.disclosure_class == "A" and not item.legal_basis:
        raise fail("disclosure_class", "natural persons' information is never class A unless a law says so: "
                                       "name it in legal_basis")

    # source, dates, keys
    su = declared("source_unit_field", item.source_unit_field, ("uscc",))
    if not su.required:
        raise fail("source_unit_field", f"{su.code} must be required")
    for i, unit in enumerate(item.source_units):
        if unit != "*" and check_uscc(unit) is not None:
            raise fail(f"source_units[{i}]", f"{unit!r} is not a valid USCC (or '*')")
    if "*" in item.source_units and len(item.source_units) > 1:
        raise fail("source_units", "'*' means any unit and stands alone")
    if item.decision_date_field:
        declared("decision_date_field", item.decision_date_field, ("date",))
    for i, k in enumerate(item.key_fields):
        if k not in KEY_PSEUDO_FIELDS and not declared(f"key_fields[{i}]", k).required:
            raise fail(f"key_fields[{i}]", f"key field {k} must be required")
    if not item.routing.rule_id:
        raise fail("routing.rule_id", "must not be empty")
    if item.measures and not item.is_list:
        raise fail("measures", "only list items (is_list: true) carry measures")

    # cross rules
    ids: set[str] = set()
    arity = {"not_before": (2, 2), "positive": (1, 1), "together": (2, 99), "at_least_one": (2, 99),
             "org_code_of": (2, 2), "amount_in_text": (2, 2)}
    for i, rule in enumerate(item.cross_rules):
        where = f"cross_rules[{i}]"
        if rule.id in ids:
            raise fail(f"{where}.id", f"duplicate rule id {rule.id}")
        ids.add(rule.id)
        lo, hi = arity[rule.kind]
        if not lo <= len(rule.fields) <= hi:
            raise fail(f"{where}.fields", f"a {rule.kind} rule takes {lo if lo == hi else f'{lo} or more'} fields")
        types = {"not_before": ("date",), "positive": ("decimal", "integer")}.get(rule.kind, ())
        for j, code in enumerate(rule.fields):
            declared(f"{where}.fields[{j}]", code, _CROSS_TYPES[rule.kind][j] if rule.kind in _CROSS_TYPES else types)
        if (rule.kind == "amount_in_text") != bool(rule.word):
            raise fail(f"{where}.word", "an amount_in_text rule names the word before the amount, and only it does")
        conditions(f"{where}.when", rule.when)

    _check_disclosure(item, fail, declared)


def _check_field(f: FieldSpec, where: str) -> None:
    def fail(key: str, msg: str) -> CatalogError:
        return CatalogError(f"{where}.{key}: {msg}")

    if not _CODE_RE.fullmatch(f.code):
        raise fail("code", f"{f.code!r} must be letters, digits and _")
    if not f.name:
        raise fail("name", "must not be empty")
    if (f.type == "enum") != bool(f.enum):
        raise fail("enum", "an enum field lists its values, and only an enum field has them")
    if f.multi and f.type != "enum":
        raise fail("multi", "only an enum field can be multi-valued")
    if any(";" in v for v in f.enum):
        raise fail("enum", "values must not contain ';' (the multi-value separator)")
    for value in f.specified:
        if value not in f.enum:
            raise fail("specified", f"{value!r} is not one of the enum values")
    for raw, canon in f.value_aliases:
        if f.enum and canon not in f.enum:
            raise fail(f"value_aliases.{raw}", f"{canon!r} is not one of the enum values")
        # A cell is normalised before the alias lookup, and an alias wins over an enum value:
        # one naming another value would turn every report of that value into its target.
        if f.enum and (cell := normalize_text(raw)) in f.enum and cell != canon:
            raise fail(f"value_aliases.{raw}", f"{cell!r} is an enum value itself; an alias would turn it into "
                                               f"{canon!r}")
    numeric = f.type in ("decimal", "integer")
    if not numeric and (f.minimum is not None or f.maximum is not None or f.scale is not None):
        raise fail("minimum", "minimum, maximum and scale apply to decimal and integer fields")
    if f.minimum is not None and f.maximum is not None and f.minimum > f.maximum:
        raise fail("maximum", "is below minimum")
    if f.not_future and f.type != "date":
        raise fail("not_future", "applies to date fields")
    if f.checked_when and f.type not in ("uscc", "id_number", "org_code"):
        raise fail("checked_when", "applies to uscc, id_number and org_code fields")
    for name in ("permanent_residence_when", "residence_permit_when"):
        if getattr(f, name) and f.type != "id_number":
            raise fail(name, "applies to id_number fields")
    if f.consent not in ("", "written"):
        raise fail("consent", "the only kind of consent the law accepts is 'written'")
    if f.required and (f.required_when or f.forbidden_when):
        raise fail("required", "a required field has no required_when/forbidden_when")


def _check_disclosure(item: Item, fail: Callable[[str, str], CatalogError],
                      declared: Callable[..., FieldSpec]) -> None:
    d = item.disclosure
    if d.start_field:
        declared("disclosure.start_field", d.start_field, ("date",))
    if d.end_field:
        declared("disclosure.end_field", d.end_field, ("date",))
    if d.open_ended_period_months and d.kind != "while_listed":
        raise fail("disclosure.open_ended_years", "open_ended_years/months bound while_listed rules only")
    if d.removal_field:
        if d.kind != "while_listed":
            raise fail("disclosure.removal_field", "a removal date ends while_listed rules only")
        declared("disclosure.removal_field", d.removal_field, ("date",))
    if d.ended_field or d.ended_values:
        if d.kind != "while_valid_plus" or not (d.ended_field and d.ended_values):
            raise fail("disclosure.ended_field", "ended_field and ended_values go together, in while_valid_plus rules")
        spec = declared("disclosure.ended_field", d.ended_field, ("enum",))
        unknown = [v for v in d.ended_values if v not in spec.enum]
        if unknown:
            raise fail("disclosure.ended_values", f"not values of {d.ended_field}: {', '.join(unknown)}")
    needs_period = d.kind in ("from_decision", "while_valid_plus")
    if d.kind == "from_decision" and not d.period_months:
        raise fail("disclosure", "from_decision needs years and/or months")
    if d.kind == "from_decision" and not (d.start_field or item.decision_date_field):
        raise fail("disclosure.start_field", "from_decision needs a start field or a decision_date_field")
    if not needs_period and d.period_months and d.kind != "while_listed":  # a list's is an optional cap
        raise fail("disclosure", f"{d.kind} takes no years/months")
    if d.kind != "penalty_severity":
        if d.severities or d.severity_field or d.default_severity:
            raise fail("disclosure", "severities belong to penalty_severity rules")
        return
    if not item.decision_date_field:
        raise fail("decision_date_field", "a penalty_severity rule counts from the decision date")
    if not d.severities:
        raise fail("disclosure.severities", "penalty_severity needs severity classes")
    names = [s.name for s in d.severities]
    if len(set(names)) != len(names):
        raise fail("disclosure.severities", "duplicate severity name")
    if d.default_severity not in names:
        raise fail("disclosure.default_severity", f"must be one of {', '.join(names)}")
    for i, s in enumerate(d.severities):
        if s.min_months > s.max_months:
            raise fail(f"disclosure.severities[{i}]", "min_months exceeds max_months")
        # Without it a class never published would be shared for ever (seed 003 篇2 第二十四条(二)).
        if s.max_months == 0 and s.shared_months == 0:
            raise fail(f"disclosure.severities[{i}]", "a class with max_months 0 (not published) needs "
                       "shared_months > 0 (how long it stays shared with government)")
        if s.max_months > 0 and s.shared_months:
            raise fail(f"disclosure.severities[{i}]", "shared_months is for a class with max_months 0 (not "
                       "published); a published class is shared as long as it is published")
    if d.severity_field:
        spec = declared("disclosure.severity_field", d.severity_field, ("enum",))
        covered = {v for s in d.severities for v in s.values}
        missing = [v for v in spec.enum if v not in covered]
        if missing:
            raise fail("disclosure.severities", f"no class covers {d.severity_field} value {missing[0]!r}")
