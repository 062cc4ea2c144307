"""Who may see what: the disclosure policy of a lookup, pure (no I/O, no clock of its own).

Classes (DOMAIN §4, seed 001 附件1 三, seed 003 篇1 第十九-二十九条): **A** 社会公开, **B** 授权查询
(the subject's authorisation, or legal authority), **C** 政务共享 (government users, for their
duties). Roles (DESIGN §4) map to classes:

======== ======================================================================================
public   A
self     A+B of its own subject (the certificate is ``self:<subject code, lower case>``); A of others
agency   A; B only for the items a valid authorisation code of the subject names
gov      A+B+C; a purpose is required (``E_PURPOSE_REQUIRED``)
judicial A+B+C including archived, expired, repaired and withdrawn records; a purpose (the
         reference of the official letter, seed 003 篇1 第二十八条) is required
admin    nothing: who grants rights does not query (用管分离, ``E_SEPARATION_OF_DUTIES``)
auditor  nothing: reads the logs, not records (``E_ROLE_CANNOT_QUERY``)
source   nothing: reports only (``E_ROLE_CANNOT_QUERY``)
node     only on behalf of a caller, whose role then applies (``E_DELEGATION_REQUIRED``)
======== ======================================================================================

Natural persons' ID numbers are B information of their person: a caller whose classes for a record
do not include B sees them masked, and another person's in the record (a legal representative's)
is masked for all but legal authority (gov, judicial), as the subject's own B does not cover it. The caller's authorisation code is resolved by the caller of this module
(``node.authz``) and arrives as the set of items it covers; the disclosure window is computed by
:func:`window_state` from the catalogue's rule and the record's own dates.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from node.catalog import DisclosureRule, Item
from node.errors import NotAuthorizedError, UsageError
from node.identifiers import mask_id_number, normalize_text
from node.values import CHINA

__all__ = [
    "MARK_ARCHIVED",
    "MARK_CHECKING",
    "MARK_DELETED",
    "MARK_DISPUTED",
    "MARK_NOT_PUBLIC",
    "MARK_REPAIRED",
    "MARK_REVOKED",
    "MARK_WITHHELD",
    "MAX_PURPOSE",
    "WITHDRAWN_STATUSES",
    "Caller",
    "Decision",
    "EditableField",
    "Policy",
    "RecordFacts",
    "Window",
    "add_months",
    "admit",
    "classes_for",
    "decide",
    "ended_by",
    "id_fields",
    "list_end",
    "mask_in_place",
    "mask_view",
    "masked_fields",
    "own_id_field",
    "self_subject",
    "shown_subject",
    "stated_purpose",
    "stored_date",
    "today_in_china",
    "window_state",
]

Window = Literal["open", "not_public", "closed"]

MARK_DISPUTED: Final = "异议正在处理"
MARK_REPAIRED: Final = "已信用修复"
MARK_NOT_PUBLIC: Final = "不予公开"
MARK_ARCHIVED: Final = "已过公示期"
MARK_REVOKED: Final = "已撤销"
MARK_DELETED: Final = "已删除"
MARK_WITHHELD: Final = "不再向社会披露"
MARK_CHECKING: Final = "信息核查中"

QUERY_ROLES: Final = ("public", "self", "agency", "gov", "judicial")
PURPOSE_ROLES: Final = ("gov", "judicial")
MAX_PURPOSE: Final = 200  # characters: a duty and a case number, kept in every query log row
_ALL: Final = frozenset("ABC")
_WITHDRAWN: Final = {"expired": MARK_ARCHIVED, "revoked": MARK_REVOKED, "deleted": MARK_DELETED}
WITHDRAWN_STATUSES: Final = frozenset(_WITHDRAWN)  # disclosed and shared to no one (judicial callers aside)
_PRIVATE: Final = {"repaired": MARK_REPAIRED, "withheld": MARK_WITHHELD}  # government sharing only


@dataclass(frozen=True)
class Caller:
    """Who is asking, as far as disclosure is concerned (after delegation is resolved)."""

    node_id: str
    role: str
    purpose: str = ""
    authorized_items: frozenset[str] = frozenset()  # items a valid authorisation code covers (agency)


@dataclass(frozen=True)
class RecordFacts:
    item: str
    disclosure_class: str  # A | B | C (from the catalogue item)
    subject_code: str
    subject_kind: str
    status: str
    window: Window = "open"
    # A ``disputed`` record that was repaired (信用修复) when the objection marked it: the mark does
    # not publish it again, it stays government-only (node.disclosure reads it from the history).
    repaired: bool = False


@dataclass(frozen=True)
class Policy:
    disputed: Literal["suspend", "mark"] = "suspend"


@dataclass(frozen=True)
class Decision:
    visible: bool
    reason: str = ""  # why a record is withheld: class | disputed | checking | window | not_public | status:<s>
    mask_ids: bool = False  # the subject's own ID number: a natural person's code and the field holding it
    marks: tuple[str, ...] = ()
    # Other persons' ID numbers in the record (法定代表人证件号码 …) are their B information, not the
    # subject's: no certificate or authorisation code of the subject opens them; legal authority does.
    mask_others: bool = True


def self_subject(node_id: str) -> str:
    """The subject a ``self`` certificate speaks for: ``self:11010519491231002x`` → the ID number.

    Node ids are lower case (nodeid grammar), subject codes upper case; extra name parts
    (``self:<code>:<device>``) name the person's devices and do not change the subject.
    """
    parts = node_id.split(":")
    return parts[1].upper() if len(parts) >= 2 and parts[0] == "self" else ""


def admit(caller: Caller) -> None:
    """Refuse callers who may not query records at all, before anything is read."""
    role = caller.role
    if role == "admin":
        raise NotAuthorizedError("administrators manage rights and cannot query records (用管分离)",
                                 code="E_SEPARATION_OF_DUTIES")
    if role == "node":
        raise NotAuthorizedError("a node queries only on behalf of a caller (signed delegation)",
                                 code="E_DELEGATION_REQUIRED")
    if role not in QUERY_ROLES:
        what = "reads the logs, not records" if role == "auditor" else "may not query records"
        raise NotAuthorizedError(f"role {role!r} {what}", code="E_ROLE_CANNOT_QUERY")
    if role in PURPOSE_ROLES and not caller.purpose.strip():
        raise NotAuthorizedError(f"a {role} caller must state the purpose of the query",
                                 code="E_PURPOSE_REQUIRED", field="purpose")


def stated_purpose(text: str) -> str:
    """A caller's purpose as the query log keeps it: normalised and printable only, so a purpose
    made of invisible characters is no purpose (``E_PURPOSE_REQUIRED``); at most :data:`MAX_PURPOSE`."""
    purpose = normalize_text(text)
    if not purpose.isprintable():
        purpose = "".join(ch for ch in purpose if ch.isprintable()).strip()
    if len(purpose) > MAX_PURPOSE:
        raise UsageError(f"the purpose is {len(purpose)} characters; at most {MAX_PURPOSE}", field="purpose",
                         code="E_PURPOSE_TOO_LONG")
    return purpose


def classes_for(caller: Caller, subject_code: str, item: str) -> frozenset[str]:
    role = caller.role
    if role in ("gov", "judicial"):
        return _ALL
    if role == "self" and self_subject(caller.node_id) == subject_code:
        return frozenset("AB")
    if role == "agency" and item in caller.authorized_items:
        return frozenset("AB")
    if role in QUERY_ROLES:
        return frozenset("A")
    return frozenset()


def decide(caller: Caller, record: RecordFacts, policy: Policy) -> Decision:
    """Whether ``caller`` sees ``record``, with which marks, and whether ID numbers are masked."""
    classes = classes_for(caller, record.subject_code, record.item)
    mask = "B" not in classes
    if record.disclosure_class not in classes:
        return Decision(False, "class", mask)
    if caller.role == "judicial":  # 第二十八条: judicial requests see archived records too
        return Decision(True, "", mask, _judicial_marks(record), mask_others=False)
    if record.status == "checking":
        # 在信息核查期间，该条信息记录应当暂停披露 (seed 003 篇2 第三十三条): the platform doubts it,
        # so neither access.disputed nor the subject's own view shows it meanwhile.
        return Decision(False, "checking", mask)
    withdrawn = _WITHDRAWN.get(record.status)
    if withdrawn is not None:
        return Decision(False, f"status:{record.status}", mask)
    if record.window == "closed":
        return Decision(False, "window", mask)
    marks: list[str] = []
    own = caller.role == "self" and self_subject(caller.node_id) == record.subject_code
    private_status = "repaired" if record.repaired else record.status
    private = _PRIVATE.get(private_status) or (MARK_NOT_PUBLIC if record.window == "not_public" else None)
    if private is not None:
        # Repaired (信用修复), withheld and never-published records stay in government sharing
        # only, and the subject still sees its own, marked (查询自身非公开信息, seed 003 篇5 第二十三条);
        # a repaired record under objection too: the subject's objection does not publish it again.
        if "C" not in classes and not own:
            return Decision(False, f"status:{private_status}" if private_status in _PRIVATE else "not_public", mask)
        marks.append(private)
    if record.status in ("disputed", "withheld"):  # a withheld record's objection is still open
        if policy.disputed == "suspend" and not own:
            return Decision(False, "disputed", mask)
        marks.append(MARK_DISPUTED)
    return Decision(True, "", mask, tuple(marks), mask_others=caller.role not in PURPOSE_ROLES)


def _judicial_marks(record: RecordFacts) -> tuple[str, ...]:
    marks = []
    if record.status in _WITHDRAWN:
        marks.append(_WITHDRAWN[record.status])
    elif record.window == "closed":
        marks.append(MARK_ARCHIVED)
    if record.status in _PRIVATE:
        marks.append(_PRIVATE[record.status])
    elif record.repaired:
        marks.append(MARK_REPAIRED)
    elif record.window == "not_public":
        marks.append(MARK_NOT_PUBLIC)
    if record.status in ("disputed", "withheld"):
        marks.append(MARK_DISPUTED)
    if record.status == "checking":
        marks.append(MARK_CHECKING)
    return tuple(marks)


# --- masking ---------------------------------------------------------------------------------------
def id_fields(item: Item) -> frozenset[str]:
    """Fields of ``item`` holding a person's ID number (证件号码, 法定代表人证件号码 …)."""
    return frozenset(f.code for f in item.fields if f.type == "id_number")


def own_id_field(item: Item, subject_kind: str) -> str:
    """The ID-number field holding the code of a record's subject of ``subject_kind`` ('' if none):
    every other ID-number field of the record is another person's (a legal representative's)."""
    code = item.subject_code_fields.get(subject_kind, "")
    return code if code in id_fields(item) else ""


def masked_fields(decision: Decision, ids: frozenset[str], own: str = "") -> frozenset[str]:
    """Which of a record's ID-number fields ``ids`` the caller sees masked; ``own`` holds the subject's."""
    if decision.mask_ids:
        return ids
    return ids - {own} if decision.mask_others else frozenset()


def mask_view(decision: Decision, ids: frozenset[str], fields: Mapping[str, str], subject_code: str,
              subject_kind: str, own: str = "") -> tuple[dict[str, str], str]:
    """The fields and subject code as ``decision`` lets the caller see them."""
    hidden = masked_fields(decision, ids, own)
    out = {k: (mask_id_number(v) if k in hidden and v else v) for k, v in fields.items()}
    return out, shown_subject(decision, subject_code, subject_kind)


class EditableField(Protocol):
    name: str
    value: str


def mask_in_place(decision: Decision, ids: frozenset[str], fields: Iterable[EditableField], own: str = "") -> None:
    """:func:`mask_view`'s rule applied to fields being built (a response's), in one pass.

    The lookup path copies a record's fields into its answer and masks the copies: building a
    dict of them first and writing every one back cost more than the rest of shaping the view.
    """
    hidden = masked_fields(decision, ids, own)
    if hidden:
        for f in fields:
            if f.name in hidden and f.value:
                f.value = mask_id_number(f.value)


def shown_subject(decision: Decision, subject_code: str, subject_kind: str) -> str:
    """The subject code as ``decision`` lets the caller see it (a person's ID number masked)."""
    if decision.mask_ids and subject_kind == "natural_person":
        return mask_id_number(subject_code)
    return subject_code


# --- disclosure window -----------------------------------------------------------------------------
def today_in_china(now: dt.datetime | None = None) -> dt.date:
    return (now or dt.datetime.now(dt.UTC)).astimezone(CHINA).date()


def reported_day(reported_at_ms: int) -> dt.date | None:
    """The day (in China) a source reported a record revision; None when the body does not say."""
    return dt.datetime.fromtimestamp(reported_at_ms / 1000, CHINA).date() if reported_at_ms > 0 else None


def ended_by(rule: DisclosureRule, fields: Mapping[str, str], reported_on: dt.date | None,
             valid_to: dt.date | None) -> dt.date | None:
    """The end of validity, brought forward to the report day when the record says it has ended
    (a licence reported 无效: 撤销, 注销 … before its 有效期至); seed 003 篇1 第二十四条 counts the
    3 years of basic information from that end."""
    if reported_on is None or not rule.ended_field or fields.get(rule.ended_field, "") not in rule.ended_values:
        return valid_to
    return reported_on if valid_to is None or reported_on < valid_to else valid_to


def window_state(item: Item, fields: Mapping[str, str], decision_date: str, today: dt.date,
                 reported_on: dt.date | None = None) -> Window:
    """Whether ``today`` lies in the record's disclosure period (DOMAIN §4; catalogue rule kinds).

    ``open`` inside it, ``closed`` after it (archived: kept, not disclosed), ``not_public`` for a
    penalty whose severity class is never published (``max_months: 0``), until its
    ``shared_months`` end. A date the rule needs but the record lacks leaves the period open:
    validation has already required what is required, so an absent optional end date means
    "until further notice".
    """
    rule = item.disclosure
    end: dt.date | None = None  # first day the record is no longer disclosed
    if rule.kind == "from_decision":
        start = stored_date(fields.get(rule.start_field, "") if rule.start_field else decision_date)
        end = add_months(start, rule.period_months) + _DAY if start else None  # 民法典 第二百零一、二百零二条
    elif rule.kind == "while_valid_plus":
        valid_to = stored_date(fields.get(rule.end_field, "")) if rule.end_field else None
        valid_to = ended_by(rule, fields, reported_on, valid_to)
        end = add_months(valid_to, rule.period_months) + _DAY if valid_to else None
    elif rule.kind == "penalty_severity":
        severity = rule.severity(fields.get(rule.severity_field, "") if rule.severity_field else "")
        start = stored_date(decision_date)
        if severity is not None and severity.max_months == 0 and start is not None:
            # Shared with government only, and only for its period (seed 003 篇2 第二十四条(二)).
            return "closed" if today >= add_months(start, severity.shared_months) + _DAY else "not_public"
        if severity is not None and severity.max_months == 0:
            return "not_public"
        if severity is not None and start is not None:
            end = add_months(start, severity.max_months) + _DAY
        cut = stored_date(fields.get(rule.end_field, "")) if rule.end_field else None  # 公示截止期, inclusive
        if cut is not None and (end is None or cut + _DAY < end):
            end = cut + _DAY
    elif rule.kind == "while_listed":
        end = list_end(rule, fields)
        start = stored_date(decision_date)
        if rule.period_months and start is not None:  # a cap from listing, whatever the end date says
            cap = add_months(start, rule.period_months) + _DAY
            end = cap if end is None or cap < end else end
        if end is None and start is not None and rule.open_ended_period_months and rule.gives_no_end(fields):
            end = add_months(start, rule.open_ended_period_months) + _DAY  # seed 003 篇1 第二十四条(二)
    return "closed" if end is not None and today >= end else "open"


_DAY: Final = dt.timedelta(days=1)


def list_end(rule: DisclosureRule, fields: Mapping[str, str]) -> dt.date | None:
    """The first day a list entry is off its list by its own dates, None while it states none.

    The earlier of the day after its planned end (有效期至, the validity's last day) and its
    actual removal (移出日期): taken off on that day, the subject is no longer listed on it and
    no measure applies to it any more.
    """
    planned = stored_date(fields.get(rule.end_field, "")) if rule.end_field else None
    removed = stored_date(fields.get(rule.removal_field, "")) if rule.removal_field else None
    ends = [d for d in (planned + _DAY if planned else None, removed) if d]
    return min(ends) if ends else None


def stored_date(text: str) -> dt.date | None:
    """A stored date; None for none, and for one past 2099-12-31 (长期 in the standard's words, and
    validation stores no later one): stored before that rule, 9999-12-31 overflowed the period
    arithmetic and broke every lookup of its subject."""
    try:
        day = dt.date.fromisoformat(text) if text else None
    except ValueError:
        return None
    return day if day is not None and day.year < 2100 else None


def add_months(d: dt.date, months: int) -> dt.date:
    """``d`` plus ``months`` calendar months, clamped to the month's last day (31 Jan + 1 = 28/29 Feb)."""
    y, m = divmod(d.month - 1 + months, 12)
    year, month = d.year + y, m + 1
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    last = (31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[month - 1]
    return dt.date(year, month, min(d.day, last))
