"""The disclosure policy, table-driven: every role against every class, status and window."""

from __future__ import annotations

import datetime as dt

import pytest

from node.access import (
    MARK_ARCHIVED,
    MARK_DISPUTED,
    MARK_NOT_PUBLIC,
    MARK_REPAIRED,
    MARK_REVOKED,
    MARK_WITHHELD,
    Caller,
    Policy,
    RecordFacts,
    admit,
    classes_for,
    decide,
    id_fields,
    mask_in_place,
    mask_view,
    own_id_field,
    self_subject,
    shown_subject,
    today_in_china,
    window_state,
)
from node.catalog import Catalog, load_catalog
from node.errors import NotAuthorizedError
from node.provisioning import bundled_catalog
from node.records import pb


@pytest.fixture(scope="module")
def cat() -> Catalog:
    return load_catalog(bundled_catalog())


ORG = "91350100M000100Y43"
PERSON = "11010519491231002X"

PUBLIC = Caller("public:portal", "public")
AGENCY = Caller("agency:bank1", "agency")
AGENCY_B = Caller("agency:bank1", "agency", authorized_items=frozenset({"qual", "pen"}))
GOV = Caller("gov:330100:fgw", "gov", purpose="行政许可审查")
JUDICIAL = Caller("judicial:330100:court", "judicial", purpose="(2026)浙01执123号")
SELF_PERSON = Caller(f"self:{PERSON.lower()}", "self")
SELF_ORG = Caller(f"self:{ORG.lower()}", "self")


def rec(cls: str, *, status: str = "active", window: str = "open", subject: str = ORG,
        item: str = "pen") -> RecordFacts:
    kind = "natural_person" if subject == PERSON else "legal_person"
    return RecordFacts(item=item, disclosure_class=cls, subject_code=subject, subject_kind=kind,
                       status=status, window=window)  # type: ignore[arg-type]


# --- who may query at all --------------------------------------------------------------------------
@pytest.mark.parametrize(("caller", "code"), [
    (Caller("admin:ops", "admin"), "E_SEPARATION_OF_DUTIES"),
    (Caller("auditor:audit", "auditor"), "E_ROLE_CANNOT_QUERY"),
    (Caller("source:330100:scjgj", "source"), "E_ROLE_CANNOT_QUERY"),
    (Caller("city:330100", "node"), "E_DELEGATION_REQUIRED"),
    (Caller("gov:330100:fgw", "gov"), "E_PURPOSE_REQUIRED"),
    (Caller("gov:330100:fgw", "gov", purpose="   "), "E_PURPOSE_REQUIRED"),
    (Caller("judicial:court", "judicial"), "E_PURPOSE_REQUIRED"),
    (Caller("x:y", "stranger"), "E_ROLE_CANNOT_QUERY"),
])
def test_admit_refuses(caller: Caller, code: str) -> None:
    with pytest.raises(NotAuthorizedError) as info:
        admit(caller)
    assert info.value.code == code
    assert info.value.exit_code == 3


@pytest.mark.parametrize("caller", [PUBLIC, AGENCY, AGENCY_B, GOV, JUDICIAL, SELF_PERSON])
def test_admit_lets_querying_roles_in(caller: Caller) -> None:
    admit(caller)


# --- classes ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("caller", "subject", "item", "classes"), [
    (PUBLIC, ORG, "pen", "A"),
    (AGENCY, ORG, "pen", "A"),
    (AGENCY_B, ORG, "pen", "AB"),
    (AGENCY_B, ORG, "other", "A"),
    (GOV, ORG, "pen", "ABC"),
    (JUDICIAL, PERSON, "pen", "ABC"),
    (SELF_PERSON, PERSON, "pen", "AB"),
    (SELF_PERSON, ORG, "pen", "A"),
    (SELF_ORG, ORG, "qual", "AB"),
    (Caller("admin:ops", "admin"), ORG, "pen", ""),
    (Caller("auditor:a", "auditor"), ORG, "pen", ""),
])
def test_classes_for(caller: Caller, subject: str, item: str, classes: str) -> None:
    assert classes_for(caller, subject, item) == frozenset(classes)


def test_self_subject_is_the_upper_cased_first_name() -> None:
    assert self_subject("self:11010519491231002x") == PERSON
    assert self_subject("self:11010519491231002x:phone") == PERSON
    assert self_subject("public:11010519491231002x") == ""


# --- the full table: role x class x status/window --------------------------------------------------
V, H = True, False
ROLES = {"public": PUBLIC, "agency": AGENCY, "agency+code": AGENCY_B, "gov": GOV, "judicial": JUDICIAL,
         "self": SELF_ORG, "self-other": SELF_PERSON}
#                 (class, status, window):  public agency agency+code gov judicial self self-other
TABLE: list[tuple[tuple[str, str, str], tuple[bool, ...]]] = [
    (("A", "active", "open"),              (V, V, V, V, V, V, V)),
    (("B", "active", "open"),              (H, H, V, V, V, V, H)),
    (("C", "active", "open"),              (H, H, H, V, V, H, H)),
    (("A", "confirmed", "open"),           (V, V, V, V, V, V, V)),
    (("A", "corrected", "open"),           (V, V, V, V, V, V, V)),
    (("A", "expired", "open"),             (H, H, H, H, V, H, H)),
    (("A", "revoked", "open"),             (H, H, H, H, V, H, H)),
    (("A", "deleted", "open"),             (H, H, H, H, V, H, H)),
    (("A", "active", "closed"),            (H, H, H, H, V, H, H)),
    (("C", "active", "closed"),            (H, H, H, H, V, H, H)),
    (("A", "repaired", "open"),            (H, H, H, V, V, V, H)),  # the subject sees its own, marked
    (("B", "repaired", "open"),            (H, H, H, V, V, V, H)),
    (("C", "repaired", "open"),            (H, H, H, V, V, H, H)),
    (("A", "active", "not_public"),        (H, H, H, V, V, V, H)),
    (("A", "disputed", "open"),            (H, H, H, H, V, V, H)),  # suspend; the subject sees its own
    (("B", "disputed", "open"),            (H, H, H, H, V, V, H)),
    (("A", "withheld", "open"),            (H, H, H, H, V, V, H)),  # still disputed: suspended
]


@pytest.mark.parametrize(("facts", "expected"), TABLE, ids=lambda v: "-".join(v) if isinstance(v[0], str) else "")
def test_visibility_table(facts: tuple[str, str, str], expected: tuple[bool, ...]) -> None:
    cls, status, window = facts
    got = tuple(decide(c, rec(cls, status=status, window=window), Policy()).visible for c in ROLES.values())
    assert dict(zip(ROLES, got, strict=True)) == dict(zip(ROLES, expected, strict=True))


@pytest.mark.parametrize(("caller", "visible"), [(PUBLIC, V), (AGENCY, V), (GOV, V), (SELF_PERSON, V),
                                                 (JUDICIAL, V)])
def test_disputed_marked_when_configured(caller: Caller, visible: bool) -> None:
    d = decide(caller, rec("A", status="disputed"), Policy(disputed="mark"))
    assert d.visible is visible
    assert d.marks == (MARK_DISPUTED,)


@pytest.mark.parametrize(("caller", "visible"), [(PUBLIC, H), (AGENCY, H), (AGENCY_B, H), (GOV, V), (JUDICIAL, V),
                                                 (SELF_ORG, V), (SELF_PERSON, H)])
def test_withheld_stays_in_government_sharing_marked_when_disputed_records_are_shown(
        caller: Caller, visible: bool) -> None:
    d = decide(caller, rec("A", status="withheld"), Policy(disputed="mark"))
    assert d.visible is visible
    if visible:
        assert d.marks == (MARK_WITHHELD, MARK_DISPUTED)


@pytest.mark.parametrize(("status", "window", "reason"), [
    ("expired", "open", "status:expired"), ("revoked", "open", "status:revoked"),
    ("active", "closed", "window"), ("disputed", "open", "disputed"),
    ("repaired", "open", "status:repaired"), ("active", "not_public", "not_public"),
    ("withheld", "open", "status:withheld"),
])
def test_reasons_for_withholding(status: str, window: str, reason: str) -> None:
    d = decide(PUBLIC, rec("A", status=status, window=window), Policy())
    assert (d.visible, d.reason) == (False, reason)
    assert decide(PUBLIC, rec("B"), Policy()).reason == "class"


@pytest.mark.parametrize(("status", "window", "marks"), [
    ("active", "open", ()),
    ("expired", "open", (MARK_ARCHIVED,)),
    ("active", "closed", (MARK_ARCHIVED,)),
    ("revoked", "open", (MARK_REVOKED,)),
    ("repaired", "open", (MARK_REPAIRED,)),
    ("disputed", "open", (MARK_DISPUTED,)),
    ("active", "not_public", (MARK_NOT_PUBLIC,)),  # a minor penalty: marked as gov sees it
])
def test_judicial_sees_archived_with_marks(status: str, window: str, marks: tuple[str, ...]) -> None:
    d = decide(JUDICIAL, rec("C", status=status, window=window), Policy())
    assert d.visible and d.marks == marks


def test_gov_marks_for_repaired_and_not_public() -> None:
    assert decide(GOV, rec("A", status="repaired"), Policy()).marks == (MARK_REPAIRED,)
    assert decide(SELF_ORG, rec("A", status="repaired"), Policy()).marks == (MARK_REPAIRED,)
    assert decide(GOV, rec("A", window="not_public"), Policy()).marks == (MARK_NOT_PUBLIC,)


# --- masking ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("caller", "masked"), [
    (PUBLIC, True), (AGENCY, True), (AGENCY_B, False), (GOV, False), (JUDICIAL, False),
    (SELF_PERSON, False), (SELF_ORG, True),
])
def test_id_numbers_masked_outside_class_b(caller: Caller, masked: bool) -> None:
    d = decide(caller, rec("A", subject=PERSON), Policy())
    assert d.visible and d.mask_ids is masked
    fields, subject = mask_view(d, frozenset({"CF_XDR_ZJHM"}), {"CF_XDR_ZJHM": PERSON, "CF_XDR_MC": "张三"},
                                PERSON, "natural_person", own="CF_XDR_ZJHM")
    if masked:
        assert fields == {"CF_XDR_ZJHM": "1101**********002X", "CF_XDR_MC": "张三"}
        assert subject == "1101**********002X"
    else:
        assert fields["CF_XDR_ZJHM"] == subject == PERSON


def test_legal_person_code_is_not_masked_but_its_representative_id_is() -> None:
    d = decide(PUBLIC, rec("A"), Policy())
    fields, subject = mask_view(d, frozenset({"CF_FR_ZJHM"}), {"CF_FR_ZJHM": PERSON, "CF_FR_ZJLX": ""}, ORG,
                                "legal_person")
    assert subject == ORG
    assert fields == {"CF_FR_ZJHM": "1101**********002X", "CF_FR_ZJLX": ""}


@pytest.mark.parametrize(("caller", "masked"), [
    (PUBLIC, True), (AGENCY, True), (AGENCY_B, True), (SELF_ORG, True), (SELF_PERSON, True),
    (GOV, False), (JUDICIAL, False),
])
def test_a_representatives_id_number_opens_to_legal_authority_only(cat: Catalog, caller: Caller,
                                                                   masked: bool) -> None:
    """法定代表人证件号码 is the representative's B information: the organisation's own B (its
    certificate, or a code it gave) does not open it; gov and judicial callers' legal authority does."""
    item = cat.item("admin_penalty")
    d = decide(caller, rec("A"), Policy())
    own = own_id_field(item, "legal_person")
    assert own == ""  # an organisation's code is a USCC: every ID number in its record is another person's
    fields, subject = mask_view(d, id_fields(item), {"CF_FR_ZJHM": PERSON, "CF_XDR_SHXYM": ORG}, ORG,
                                "legal_person", own)
    assert subject == ORG and fields["CF_XDR_SHXYM"] == ORG
    assert fields["CF_FR_ZJHM"] == ("1101**********002X" if masked else PERSON)


@pytest.mark.parametrize("caller", [PUBLIC, AGENCY, AGENCY_B, GOV, JUDICIAL, SELF_PERSON, SELF_ORG])
@pytest.mark.parametrize("kind", ["natural_person", "legal_person"])
def test_masking_in_place_shows_what_mask_view_shows(caller: Caller, kind: str) -> None:
    subject = PERSON if kind == "natural_person" else ORG
    d = decide(caller, rec("A", subject=subject), Policy())
    masked = frozenset({"CF_XDR_ZJHM", "CF_FR_ZJHM"})
    given = {"CF_XDR_ZJHM": PERSON, "CF_FR_ZJHM": "", "CF_XDR_MC": "张三", "CF_WSH": PERSON}
    own = "CF_XDR_ZJHM" if kind == "natural_person" else ""
    expected, expected_subject = mask_view(d, masked, given, subject, kind, own)
    fields = [pb.Field(name=k, value=v) for k, v in given.items()]
    mask_in_place(d, masked, fields, own)
    assert {f.name: f.value for f in fields} == expected
    assert shown_subject(d, subject, kind) == expected_subject


def test_id_fields_of_the_bundled_catalogue(cat: Catalog) -> None:
    assert id_fields(cat.item("admin_penalty")) == {"CF_XDR_ZJHM", "CF_FR_ZJHM"}
    assert id_fields(cat.item("admin_license")) == {"XK_XDR_ZJHM", "XK_FR_ZJHM"}
    assert id_fields(cat.item("professional_qualification")) == {"ZG_ZJHM"}
    assert id_fields(cat.item("registration")) == frozenset()


# --- disclosure windows ----------------------------------------------------------------------------
D = dt.date.fromisoformat


@pytest.mark.parametrize(("item", "fields", "decided", "today", "state"), [
    # penalties: severity from CF_SXCD (default ordinary = 12 months), 公示截止期 ends earlier
    ("admin_penalty", {}, "2025-01-31", "2026-01-31", "open"),  # the anniversary is the last day (民法典 第二百零二条)
    ("admin_penalty", {}, "2025-01-31", "2026-02-01", "closed"),
    ("admin_penalty", {"CF_SXCD": "严重"}, "2025-01-31", "2027-06-01", "open"),
    ("admin_penalty", {"CF_SXCD": "严重"}, "2025-01-31", "2028-01-31", "open"),
    ("admin_penalty", {"CF_SXCD": "严重"}, "2025-01-31", "2028-02-01", "closed"),
    ("admin_penalty", {"CF_SXCD": "轻微"}, "2025-01-31", "2025-02-01", "not_public"),  # minor: not published
    # ... and shared with government for 3 months only (seed 003 篇2 第二十四条(二); DOMAIN §4)
    ("admin_penalty", {"CF_SXCD": "轻微"}, "2025-01-31", "2025-04-30", "not_public"),
    ("admin_penalty", {"CF_SXCD": "轻微"}, "2025-01-31", "2025-05-01", "closed"),
    ("admin_penalty", {"CF_GSJZQ": "2025-03-01"}, "2025-01-31", "2025-03-01", "open"),
    # 处罚有效期 is how long the penalty runs, not how long it is published: neither way does it move the end
    ("admin_penalty", {"CF_YXQ": "2025-02-07"}, "2025-01-31", "2026-01-31", "open"),
    ("admin_penalty", {"CF_YXQ": "2099-12-31"}, "2025-01-31", "2026-02-01", "closed"),
    ("admin_penalty", {"CF_GSJZQ": "2025-03-01"}, "2025-01-31", "2025-03-02", "closed"),
    # inspections: 3 years from the decision
    ("admin_inspection", {}, "2023-02-28", "2026-02-28", "open"),
    ("admin_inspection", {}, "2023-02-28", "2026-03-01", "closed"),
    # qualifications: while valid + 3 years; no end date = while valid
    ("professional_qualification", {"ZG_YXQZ": "2024-06-30"}, "2020-01-01", "2027-06-30", "open"),
    ("professional_qualification", {"ZG_YXQZ": "2024-06-30"}, "2020-01-01", "2027-07-01", "closed"),
    ("professional_qualification", {}, "2000-01-01", "2099-01-01", "open"),
    # lists: while listed, until the end date inclusive
    ("serious_dishonest_list", {"SX_YXQZ": "2026-05-01"}, "2025-05-01", "2026-05-01", "open"),
    ("serious_dishonest_list", {"SX_YXQZ": "2026-05-01"}, "2025-05-01", "2026-05-02", "closed"),
    # ... and never longer than 5 years (失信, seed 003 篇5 第二十条) or 3 years (经营异常, 监管信息)
    ("serious_dishonest_list", {}, "2021-05-01", "2026-05-01", "open"),
    ("serious_dishonest_list", {}, "2021-05-01", "2026-05-02", "closed"),
    ("serious_dishonest_list", {"SX_YXQZ": "2099-12-31"}, "2021-05-01", "2026-05-02", "closed"),
    # ... or until it is taken off (移出日期, its first day off the list), if before the planned end
    ("serious_dishonest_list", {"SX_YXQZ": "2027-05-01", "SX_YCRQ": "2025-09-01"}, "2025-05-01", "2025-08-31", "open"),
    ("serious_dishonest_list", {"SX_YXQZ": "2027-05-01", "SX_YCRQ": "2025-09-01"}, "2025-05-01", "2025-09-01",
     "closed"),
    ("serious_dishonest_list", {"SX_YXQZ": "2025-08-01", "SX_YCRQ": "2025-09-01"}, "2025-05-01", "2025-08-02",
     "closed"),
    ("abnormal_operation", {"YC_YCRQ": "2025-06-01"}, "2025-01-01", "2025-06-02", "closed"),
    ("abnormal_operation", {}, "2023-01-01", "2026-01-01", "open"),
    ("abnormal_operation", {}, "2023-01-01", "2026-01-02", "closed"),
])
def test_window_state(cat: Catalog, item: str, fields: dict[str, str], decided: str, today: str,
                      state: str) -> None:
    assert window_state(cat.item(item), fields, decided, D(today)) == state


@pytest.mark.parametrize(("item", "fields", "last_listed"), [
    ("serious_dishonest_list", {"SX_YXQZ": "2027-05-01", "SX_YCRQ": "2025-09-01", "SX_YCYY": "信用修复"}, "2025-08-31"),
    ("abnormal_operation", {"YC_YCRQ": "2025-06-01", "YC_YCYY": "已补报年报"}, "2025-05-31"),
])
def test_a_list_entry_is_off_its_list_on_its_removal_day(cat: Catalog, item: str, fields: dict[str, str],
                                                         last_listed: str) -> None:
    """移出日期 is the day the entry was taken off its list: from that day the subject is not
    listed and no measure applies, unlike 有效期至, whose day is the validity's last."""
    last = D(last_listed)
    assert window_state(cat.item(item), fields, "2025-01-01", last) == "open"
    assert window_state(cat.item(item), fields, "2025-01-01", last + dt.timedelta(days=1)) == "closed"


def test_window_of_a_penalty_class_never_published(cat: Catalog) -> None:
    import dataclasses

    item = cat.item("admin_penalty")
    rule = item.disclosure
    sev = tuple(dataclasses.replace(s, max_months=0) if s.name == "minor" else s for s in rule.severities)
    item = dataclasses.replace(item, disclosure=dataclasses.replace(rule, severities=sev))
    assert window_state(item, {"CF_SXCD": "轻微"}, "2025-01-01", D("2025-01-02")) == "not_public"


def test_window_with_a_bad_date_stays_open(cat: Catalog) -> None:
    assert window_state(cat.item("admin_inspection"), {}, "not-a-date", D("2099-01-01")) == "open"


def test_today_in_china_is_utc_plus_8() -> None:
    assert today_in_china(dt.datetime(2026, 1, 1, 16, 0, tzinfo=dt.UTC)) == D("2026-01-02")
    assert today_in_china(dt.datetime(2026, 1, 1, 15, 59, tzinfo=dt.UTC)) == D("2026-01-01")
