"""Catalogue loading: the shipped release, and every refusal the loader owes the law and authors."""

from __future__ import annotations

import copy
import pathlib
import re
from typing import Any

import pytest
import yaml

from node.catalog import (
    Catalog,
    check_catalog,
    load_catalog,
    normalize_header,
    parse_catalog,
    template_headers,
)
from node.errors import CatalogError, ProhibitedFieldError, UnknownItemError

ROOT = pathlib.Path(__file__).resolve().parent.parent
CATALOG_DIR = ROOT / "exchange_config" / "catalog"
EXAMPLES = ROOT / "exchange_config" / "catalog-examples"

# DOMAIN.md §3: the 双公示 v2.0 national exchange fields (code → Chinese name).
PENALTY_FIELDS = {
    "CF_XDR_MC": "行政相对人名称", "CF_XDR_LB": "行政相对人类别", "CF_XDR_SHXYM": "统一社会信用代码",
    "CF_XDR_GSZC": "工商注册号", "CF_XDR_ZZJG": "组织机构代码", "CF_XDR_SWDJ": "税务登记号",
    "CF_XDR_SYDW": "事业单位证书号", "CF_XDR_SHZZ": "社会组织登记证号", "CF_FRDB": "法定代表人",
    "CF_FR_ZJLX": "法定代表人证件类型", "CF_FR_ZJHM": "法定代表人证件号码", "CF_XDR_ZJLX": "证件类型",
    "CF_XDR_ZJHM": "证件号码", "CF_WSH": "行政处罚决定书文号", "CF_WFXW": "违法行为类型", "CF_SY": "违法事实",
    "CF_YJ": "处罚依据", "CF_CFLB": "处罚类别", "CF_NR": "处罚内容", "CF_NR_FK": "罚款金额（万元）",
    "CF_NR_WFFF": "没收违法所得、没收非法财物的金额（万元）", "CF_NR_ZKDX": "暂扣或吊销证照名称及编号",
    "CF_JDRQ": "处罚决定日期", "CF_YXQ": "处罚有效期", "CF_GSJZQ": "公示截止期", "CF_CFJG": "处罚机关",
    "CF_CFJGDM": "处罚机关统一社会信用代码", "CF_SJLY": "数据来源单位", "CF_SJLYDM": "数据来源单位统一社会信用代码",
    "BZ": "备注",
}
PENALTY_REQUIRED = {"CF_XDR_MC", "CF_XDR_LB", "CF_WSH", "CF_WFXW", "CF_SY", "CF_YJ", "CF_CFLB", "CF_NR",
                    "CF_JDRQ", "CF_YXQ", "CF_CFJG", "CF_CFJGDM", "CF_SJLY", "CF_SJLYDM"}
LICENSE_FIELDS = {
    "XK_XDR_MC": "行政相对人名称", "XK_XDR_LB": "行政相对人类别", "XK_XDR_SHXYM": "统一社会信用代码",
    "XK_XDR_GSZC": "工商注册号", "XK_XDR_ZZJG": "组织机构代码", "XK_XDR_SWDJ": "税务登记号",
    "XK_XDR_SYDW": "事业单位证书号", "XK_XDR_SHZZ": "社会组织登记证号", "XK_FRDB": "法定代表人",
    "XK_FR_ZJLX": "法定代表人证件类型", "XK_FR_ZJHM": "法定代表人证件号码", "XK_XDR_ZJLX": "证件类型",
    "XK_XDR_ZJHM": "证件号码", "XK_XKWS": "行政许可决定文书名称", "XK_WSH": "行政许可决定文书号",
    "XK_XKLB": "许可类别", "XK_XKZS": "许可证书名称", "XK_XKBH": "许可编号", "XK_NR": "许可内容",
    "XK_JDRQ": "许可决定日期", "XK_YXQZ": "有效期自", "XK_YXQZI": "有效期至", "XK_XKJG": "许可机关",
    "XK_XKJGDM": "许可机关统一社会信用代码", "XK_ZT": "当前状态", "XK_LYDW": "数据来源单位",
    "XK_LYDWDM": "数据来源单位统一社会信用代码", "BZ": "备注",
}
LICENSE_REQUIRED = {"XK_XDR_MC", "XK_XDR_LB", "XK_XKWS", "XK_WSH", "XK_XKLB", "XK_NR", "XK_JDRQ", "XK_YXQZ",
                    "XK_YXQZI", "XK_XKJG", "XK_XKJGDM", "XK_ZT", "XK_LYDW", "XK_LYDWDM"}


@pytest.fixture(scope="module")
def shipped() -> Catalog:
    return load_catalog(CATALOG_DIR)


def _minimal_item() -> dict[str, Any]:
    """The smallest valid item, to be spoiled one way per test."""
    return {
        "name": "测试事项", "category": "行政管理信息", "subject_kinds": ["legal_person"],
        "disclosure_class": "A", "disclosure": {"kind": "while_listed"},
        "routing": {"rule_id": "t-to-city", "up_to": "city"},
        "subject": {"name_field": "T_MC", "code_fields": {"legal_person": "T_DM"}},
        "source_unit_field": "T_LYDM", "key_fields": ["T_WH", "@subject_code"],
        "fields": [
            {"code": "T_MC", "name": "主体名称", "type": "string", "max_length": 200, "required": True},
            {"code": "T_DM", "name": "统一社会信用代码", "type": "uscc", "required": True},
            {"code": "T_WH", "name": "文号", "type": "string", "max_length": 64, "required": True},
            {"code": "T_LYDM", "name": "数据来源单位统一社会信用代码", "type": "uscc", "required": True},
        ],
    }


def _load(item: dict[str, Any], code: str = "test_item") -> Catalog:
    return parse_catalog([("test.yaml", {"version": "t1", "items": {code: item}})])


def _refusal(item: dict[str, Any]) -> str:
    with pytest.raises(CatalogError) as exc:
        _load(item)
    return exc.value.message


# --- the shipped release ------------------------------------------------------------------------
def test_shipped_catalogue_loads_with_its_version_and_items(shipped: Catalog) -> None:
    assert shipped.version == "2026.12.13"
    assert {"admin_penalty", "admin_license", "registration", "serious_dishonest_list", "red_list",
            "abnormal_operation", "professional_qualification", "admin_inspection"} <= set(shipped.items)


def test_shipped_catalogue_has_no_advice_beyond_lawful_class_a_persons(shipped: Catalog) -> None:
    notes = check_catalog(shipped)
    assert all("natural persons disclosed as class A under 《" in n for n in notes), notes


def test_admin_penalty_has_every_shuanggongshi_field_with_its_chinese_name(shipped: Catalog) -> None:
    item = shipped.item("admin_penalty")
    assert {f.code: f.name for f in item.fields if f.code in PENALTY_FIELDS} == PENALTY_FIELDS
    assert {f.code for f in item.fields if f.required} == PENALTY_REQUIRED


def test_admin_license_has_every_shuanggongshi_field_with_its_chinese_name(shipped: Catalog) -> None:
    item = shipped.item("admin_license")
    assert {f.code: f.name for f in item.fields if f.code in LICENSE_FIELDS} == LICENSE_FIELDS
    assert {f.code for f in item.fields if f.required} == LICENSE_REQUIRED


def test_admin_penalty_lengths_follow_the_national_standard(shipped: Catalog) -> None:
    item = shipped.item("admin_penalty")
    assert {c: item.field(c).max_length for c in ("CF_XDR_MC", "CF_WSH", "CF_SY", "CF_NR", "CF_CFJGDM")} == \
        {"CF_XDR_MC": 200, "CF_WSH": 128, "CF_SY": 2000, "CF_NR": 4000, "CF_CFJGDM": 18}
    fine = item.field("CF_NR_FK")
    assert (fine.type, fine.minimum, fine.scale) == ("decimal", 0, 6)


def test_penalty_categories_accept_the_2021_and_the_older_lists(shipped: Catalog) -> None:
    cflb = shipped.item("admin_penalty").field("CF_CFLB")
    assert cflb.multi
    assert {"通报批评", "降低资质等级", "限制从业", "没收违法所得、没收非法财物",
            "暂扣或者吊销许可证、暂扣或者吊销执照"} <= set(cflb.enum)


def test_subject_codes_are_required_by_subject_kind(shipped: Catalog) -> None:
    item = shipped.item("admin_penalty")
    (org,) = item.field("CF_XDR_SHXYM").required_when
    assert (org.field, set(org.values)) == ("CF_XDR_LB", {"法人及非法人组织", "个体工商户"})
    for code in ("CF_XDR_ZJLX", "CF_XDR_ZJHM"):
        (person,) = item.field(code).required_when
        assert person.values == ("自然人",)
    assert item.subject_code_fields == {"legal_person": "CF_XDR_SHXYM", "individual_business": "CF_XDR_SHXYM",
                                        "natural_person": "CF_XDR_ZJHM"}


def test_routing_and_disclosure_of_the_shipped_items(shipped: Catalog) -> None:
    assert shipped.item("admin_penalty").routing.up_to == "province"
    assert shipped.item("admin_license").routing.up_to == "province"
    internal = shipped.item("admin_inspection")
    assert (internal.disclosure_class, internal.routing.up_to) == ("C", "city")
    penalty = shipped.item("admin_penalty").disclosure
    assert penalty.kind == "penalty_severity"
    assert [(s.name, s.min_months, s.max_months, s.shared_months) for s in penalty.severities] == \
        [("minor", 0, 0, 3), ("ordinary", 3, 12, 0), ("serious", 12, 36, 0)]
    assert penalty.severity("") is not None and penalty.severity("").name == "ordinary"  # type: ignore[union-attr]
    assert penalty.severity("严重").name == "serious"  # type: ignore[union-attr]
    assert shipped.item("registration").disclosure.period_months == 36


def test_list_items_carry_measures(shipped: Catalog) -> None:
    for code in ("serious_dishonest_list", "red_list", "abnormal_operation"):
        item = shipped.item(code)
        assert item.is_list and item.measures and item.disclosure.kind == "while_listed"


def test_natural_persons_are_never_class_a_without_a_legal_basis(shipped: Catalog) -> None:
    for item in shipped.items.values():
        if "natural_person" in item.subject_kinds and item.disclosure_class == "A":
            assert item.legal_basis.startswith("《")
    assert shipped.item("professional_qualification").disclosure_class in ("B", "C")


def test_keys_are_document_number_and_subject_code(shipped: Catalog) -> None:
    assert shipped.item("admin_penalty").key_fields == ("CF_WSH", "@subject_code")
    assert shipped.item("admin_license").key_fields == ("XK_WSH", "@subject_code")


def test_header_map_accepts_names_codes_aliases_in_any_width_and_case(shipped: Catalog) -> None:
    item = shipped.item("admin_penalty")
    headers = item.header_map()
    for header in ("罚款金额（万元）", "罚款金额(万元)", "CF_NR_FK", "cf_nr_fk", " *罚款金额（万元） ", "罚款金额（单位：万元）"):
        assert headers.get(header, headers.get(normalize_header(header))) == "CF_NR_FK", header
    assert headers[normalize_header("行政相对人代码_1(统一社会信用代码)")] == "CF_XDR_SHXYM"
    for note in ("处罚决定日期(必填)", "处罚决定日期（YYYY/MM/DD）", "*处罚决定日期(格式：YYYY-MM-DD)"):
        assert headers[normalize_header(note)] == "CF_JDRQ"
    assert headers[normalize_header("处罚有效期（长期填2099/12/31）")] == "CF_YXQ"
    # An amount's unit is part of its name: without it, or in 元, it is another column.
    for other in ("罚款金额", "罚款金额（元）"):
        assert normalize_header(other) not in headers


def test_headers_of_earlier_templates_name_their_columns(shipped: Catalog) -> None:
    headers = shipped.item("admin_penalty").header_map()
    earlier = {"处罚决定书文号": "CF_WSH", "行政处罚决定文书号": "CF_WSH", "处罚事由": "CF_SY", "处罚结果": "CF_NR",
               "法定代表人姓名": "CF_FRDB", "法定代表人身份证号": "CF_FR_ZJHM"}
    assert {h: headers.get(normalize_header(h)) for h in earlier} == earlier


def test_a_header_marked_with_a_star_or_a_colon_or_its_unit_in_other_brackets_is_the_column(shipped: Catalog) -> None:
    headers = shipped.item("admin_penalty").header_map()
    for header in ("★行政相对人名称", "※行政相对人名称", "行政相对人名称：", "行政相对人名称:"):
        assert headers.get(normalize_header(header)) == "CF_XDR_MC", header
    for header in ("罚款金额【万元】", "罚款金额[万元]", "罚款金额/万元", "罚款金额 / 万元"):
        assert headers.get(normalize_header(header)) == "CF_NR_FK", header
    assert headers.get(normalize_header("处罚决定日期【YYYY-MM-DD】")) == "CF_JDRQ"
    for other in ("罚款金额【元】", "罚款金额/元"):  # still another unit
        assert normalize_header(other) not in headers


def test_unknown_item_names_the_code_and_the_known_items(shipped: Catalog) -> None:
    with pytest.raises(UnknownItemError) as exc:
        shipped.item("admin_pentaly")
    assert "admin_pentaly" in exc.value.message and "admin_penalty" in exc.value.message


def test_template_headers_are_chinese_names_in_catalogue_order(shipped: Catalog) -> None:
    headers = template_headers(shipped.item("admin_penalty"))
    assert headers[:3] == ["行政相对人名称", "行政相对人类别", "统一社会信用代码"]
    assert len(headers) == len(shipped.item("admin_penalty").fields)


def test_a_single_file_catalogue_loads(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump({"version": "x1", "items": {"test_item": _minimal_item()}}, allow_unicode=True),
                    encoding="utf-8")
    assert list(load_catalog(path).items) == ["test_item"]


# --- refusals: shape ------------------------------------------------------------------------------
def test_unknown_key_is_refused_with_its_dotted_path(shipped: Catalog) -> None:
    data = yaml.safe_load((CATALOG_DIR / "admin_penalty.yaml").read_text(encoding="utf-8"))
    data["fields"][3]["maxlen"] = 50
    with pytest.raises(CatalogError) as exc:
        parse_catalog([("catalog.yaml", {"version": "t"}), ("admin_penalty.yaml", data)])
    assert "items.admin_penalty.fields[3].maxlen" in exc.value.message
    assert exc.value.message.startswith("admin_penalty.yaml: ")


def test_unknown_top_level_key_of_an_item_is_refused() -> None:
    item = _minimal_item()
    item["disclosure_clas"] = "B"
    assert "items.test_item.disclosure_clas" in _refusal(item)


@pytest.mark.parametrize(("key", "value", "expect"), [
    ("max_length", "200", "expected a whole number"),
    ("required", "yes", "expected true or false"),
    ("type", "varchar", "is not one of"),
    ("name", 12, "expected a string"),
])
def test_badly_typed_field_keys_are_refused(key: str, value: object, expect: str) -> None:
    item = _minimal_item()
    item["fields"][0][key] = value
    message = _refusal(item)
    assert f"items.test_item.fields[0].{key}" in message and expect in message


def test_unquoted_numeric_version_is_refused_with_a_hint() -> None:
    with pytest.raises(CatalogError) as exc:
        parse_catalog([("catalog.yaml", {"version": 2026.10, "items": {"test_item": _minimal_item()}})])
    assert "version" in exc.value.message and "quote it" in exc.value.message


def test_duplicate_field_codes_are_refused() -> None:
    item = _minimal_item()
    item["fields"].append(dict(item["fields"][2], name="另一个文号"))
    assert "duplicate field code T_WH" in _refusal(item)


def test_duplicate_headers_are_refused() -> None:
    item = _minimal_item()
    item["fields"][2]["aliases"] = ["主体名称"]
    assert "already a header of T_MC" in _refusal(item)


def test_duplicate_item_codes_across_files_are_refused() -> None:
    body = dict(_minimal_item(), code="test_item")
    with pytest.raises(CatalogError) as exc:
        parse_catalog([("catalog.yaml", {"version": "t"}), ("a.yaml", body), ("b.yaml", copy.deepcopy(body))])
    assert "defined twice" in exc.value.message and "a.yaml" in exc.value.message


def test_directory_without_catalog_yaml_is_refused(tmp_path: pathlib.Path) -> None:
    (tmp_path / "x.yaml").write_text("code: x\n", encoding="utf-8")
    with pytest.raises(CatalogError, match=r"catalog\.yaml"):
        load_catalog(tmp_path)


def test_an_impossible_date_in_a_catalogue_file_is_a_catalogue_error(tmp_path: pathlib.Path) -> None:
    (tmp_path / "catalog.yaml").write_text('version: "t"\nreleased: 2026-13-01\n', encoding="utf-8")
    with pytest.raises(CatalogError, match="a value cannot be read"):
        load_catalog(tmp_path)


# --- refusals: meaning ------------------------------------------------------------------------------
@pytest.mark.parametrize(("where", "spoil"), [
    ("subject.name_field", lambda i: i["subject"].update(name_field="T_XX")),
    ("key_fields[0]", lambda i: i.update(key_fields=["T_XX"])),
    ("fields[2].required_when[0].field",
     lambda i: i["fields"][2].update(required=False, required_when=[{"field": "T_XX", "values": ["a"]}])),
    ("cross_rules[0].fields[1]", lambda i: i.update(cross_rules=[
        {"id": "r", "kind": "together", "fields": ["T_WH", "T_XX"], "message": "m"}])),
    ("subject.code_fields.legal_person", lambda i: i["subject"].update(code_fields={"legal_person": "T_XX"})),
])
def test_references_to_undeclared_fields_are_refused(where: str, spoil: Any) -> None:
    item = _minimal_item()
    spoil(item)
    message = _refusal(item)
    assert f"items.test_item.{where}" in message and "undeclared field 'T_XX'" in message


def test_condition_values_must_be_values_of_an_enum_field() -> None:
    item = _minimal_item()
    item["fields"].append({"code": "T_LB", "name": "类别", "type": "enum", "enum": ["甲", "乙"]})
    item["fields"].append({"code": "T_BZ", "name": "备注", "type": "string",
                           "required_when": [{"field": "T_LB", "values": ["丙"]}]})
    assert "'丙' is not a value of T_LB" in _refusal(item)


def test_key_fields_must_be_required() -> None:
    item = _minimal_item()
    item["fields"][2]["required"] = False
    assert "key field T_WH must be required" in _refusal(item)


def test_source_unit_field_must_be_a_uscc() -> None:
    item = _minimal_item()
    item["source_unit_field"] = "T_WH"
    assert "must be of type uscc" in _refusal(item)


def test_natural_persons_in_class_a_need_a_legal_basis() -> None:
    item = _minimal_item()
    item.update(subject_kinds=["natural_person"], subject={"name_field": "T_MC",
                                                            "code_fields": {"natural_person": "T_DM"}})
    assert "never class A" in _refusal(item)
    item["legal_basis"] = "《中华人民共和国行政处罚法》第四十八条"
    assert _load(item).item("test_item").disclosure_class == "A"


def test_several_subject_kinds_need_a_kind_field() -> None:
    item = _minimal_item()
    item["subject_kinds"] = ["legal_person", "individual_business"]
    item["subject"]["code_fields"]["individual_business"] = "T_DM"
    assert "needs a kind field" in _refusal(item)


def test_penalty_severity_rule_needs_a_default_class_and_a_decision_date() -> None:
    item = _minimal_item()
    item["disclosure"] = {"kind": "penalty_severity", "default_severity": "ordinary",
                          "severities": [{"name": "ordinary", "min_months": 3, "max_months": 12}]}
    assert "decision_date_field" in _refusal(item)


def test_a_severity_class_never_published_has_a_sharing_period() -> None:
    """Otherwise it would be shared with government for ever (seed 003 篇2 第二十四条(二))."""
    item = _minimal_item()
    item["fields"].append({"code": "T_RQ", "name": "决定日期", "type": "date", "required": True})
    item["decision_date_field"] = "T_RQ"
    item["disclosure"] = {"kind": "penalty_severity", "default_severity": "minor",
                          "severities": [{"name": "minor", "min_months": 0, "max_months": 0, "shared_months": 0}]}
    assert "needs shared_months > 0" in _refusal(item)
    item["disclosure"]["severities"] = [{"name": "minor", "min_months": 0, "max_months": 3, "shared_months": 3}]
    assert "shared_months is for a class with max_months 0" in _refusal(item)


def test_a_class_never_published_written_before_shared_months_loads_with_three_months() -> None:
    """Releases signed before the key existed are still held by nodes: they must keep loading."""
    item = _minimal_item()
    item["fields"].append({"code": "T_RQ", "name": "决定日期", "type": "date", "required": True})
    item["decision_date_field"] = "T_RQ"
    item["disclosure"] = {"kind": "penalty_severity", "default_severity": "minor",
                          "severities": [{"name": "minor", "min_months": 0, "max_months": 0}]}
    [severity] = _load(item).items["test_item"].disclosure.severities
    assert severity.shared_months == 3


def test_an_open_ended_period_bounds_lists_only() -> None:
    item = _minimal_item()
    item["disclosure"] = {"kind": "permanent", "open_ended_years": 3}
    assert "while_listed rules only" in _refusal(item)
    item["disclosure"] = {"kind": "while_listed", "open_ended_years": 3}
    assert _load(item).item("test_item").disclosure.open_ended_period_months == 36


def test_from_decision_rule_needs_a_period() -> None:
    item = _minimal_item()
    item["disclosure"] = {"kind": "from_decision"}
    assert "needs years and/or months" in _refusal(item)


# --- refusals: prohibited personal information ------------------------------------------------------
@pytest.mark.parametrize(("code", "name", "kind"), [
    ("T_ZJXY", "宗教信仰", "religion"),
    ("T_MZ", "民族", "race or ethnicity"),
    ("T_ZZ", "种族", "race or ethnicity"),
    ("T_JTCS", "家庭出身", "family origin"),
    ("T_JY", "基因检测结果", "genes"),
    ("T_ZW", "指纹信息", "fingerprints"),
    ("T_XX", "血型", "blood type"),
    ("T_JB", "疾病名称", "diseases or medical history"),
    ("T_BS", "既往病史", "diseases or medical history"),
    ("T_SR", "个人月收入", "income"),
    ("T_CK", "存款余额", "deposits"),
    ("T_ZQ", "持有有价证券", "securities"),
    ("T_BX", "商业保险保单号", "commercial insurance"),
    ("T_BDC", "不动产坐落", "real estate"),
    ("T_NS", "纳税数额", "tax amounts"),
    ("BLOOD_TYPE", "类型A", "blood type"),
    ("religionName", "名称A", "religion"),
    ("T_FINGERPRINT", "特征", "fingerprints"),
    ("ANNUAL_INCOME", "金额", "income"),
])
def test_prohibited_personal_fields_are_refused_naming_item_and_field(code: str, name: str, kind: str) -> None:
    item = _minimal_item()
    item["fields"].append({"code": code, "name": name, "type": "string", "max_length": 50})
    with pytest.raises(ProhibitedFieldError) as exc:
        _load(item)
    assert f"item test_item: field {code} ({name})" in exc.value.message
    assert kind in exc.value.message
    assert exc.value.code == "E_CATALOG_PROHIBITED_FIELD" and exc.value.field == code


def test_prohibited_field_hidden_in_an_alias_is_refused() -> None:
    item = _minimal_item()
    item["fields"][2]["aliases"] = ["宗教"]
    with pytest.raises(ProhibitedFieldError):
        _load(item)


@pytest.mark.parametrize("name", ["个人月收入", "存款余额", "不动产坐落", "纳税数额"])
def test_written_consent_makes_a_property_or_tax_field_lawful(name: str) -> None:
    item = _minimal_item()
    item["fields"].append({"code": "T_X", "name": name, "type": "string", "max_length": 50, "consent": "written"})
    assert _load(item).item("test_item").field("T_X").consent == "written"


@pytest.mark.parametrize("name", ["宗教信仰", "基因检测结果", "指纹信息", "血型", "既往病史"])
def test_consent_never_makes_sensitive_personal_fields_lawful(name: str) -> None:
    item = _minimal_item()
    item["fields"].append({"code": "T_X", "name": name, "type": "string", "max_length": 50, "consent": "written"})
    with pytest.raises(ProhibitedFieldError, match="even with consent"):
        _load(item)


def test_consent_on_an_ordinary_field_is_refused() -> None:
    item = _minimal_item()
    item["fields"][2]["consent"] = "written"
    assert "consent` applies only" in _refusal(item)


def test_the_prohibited_example_catalogue_is_refused() -> None:
    with pytest.raises(ProhibitedFieldError) as exc:
        load_catalog(EXAMPLES / "prohibited.yaml")
    assert "volunteer_record" in exc.value.message and "ZY_ZJXY (宗教信仰)" in exc.value.message


def test_ordinary_fields_of_the_shipped_catalogue_are_not_mistaken_for_prohibited(shipped: Catalog) -> None:
    # 社会保险, 证券从业资格, 不动产登记 and the like are lawful words in other contexts; the shipped
    # catalogue loading at all is the real check, this one guards the keyword lists' precision.
    item = _minimal_item()
    item["fields"].append({"code": "T_SB", "name": "欠缴社会保险费金额", "type": "decimal"})
    item["fields"].append({"code": "T_ZG", "name": "证券从业资格证书编号", "type": "string", "max_length": 64})
    item["fields"].append({"code": "GENERAL_NOTE", "name": "一般说明", "type": "text"})
    assert len(_load(item).item("test_item").fields) == 7


def test_duplicate_yaml_key_in_an_item_file_is_refused_with_file_and_path(tmp_path: pathlib.Path) -> None:
    (tmp_path / "catalog.yaml").write_text('version: "t"\n', encoding="utf-8")
    text = (CATALOG_DIR / "admin_penalty.yaml").read_text(encoding="utf-8")
    (tmp_path / "admin_penalty.yaml").write_text(text + "routing: {rule_id: again, up_to: city}\n", encoding="utf-8")
    with pytest.raises(CatalogError) as exc:
        load_catalog(tmp_path)
    assert exc.value.message.startswith("admin_penalty.yaml: routing: key given twice (lines 22 and ")
    assert exc.value.field == "routing"


def test_malformed_yaml_in_an_item_file_names_the_file_on_one_line(tmp_path: pathlib.Path) -> None:
    (tmp_path / "catalog.yaml").write_text('version: "t"\n', encoding="utf-8")
    (tmp_path / "bad.yaml").write_text("code: x\n  name: [\n", encoding="utf-8")
    with pytest.raises(CatalogError) as exc:
        load_catalog(tmp_path)
    assert re.fullmatch(r"bad\.yaml: not valid YAML: .*\(line 2, column \d+\)", exc.value.message)


def test_no_amount_column_is_read_in_a_unit_its_header_does_not_name(shipped: Catalog) -> None:
    # 注册资本 read as 注册资本（万元）would store 5,000,000元 as 5,000,000万元: a column of an
    # amount in a unit is named with the unit, or refused naming the column meant.
    for item in shipped.items.values():
        for f in item.fields:
            for unit in ("（万元）", "(万元)", "（元）", "(元)"):
                if f.name.endswith(unit):
                    bare = f.name.removesuffix(unit)
                    assert bare not in f.aliases, (item.code, f.code, bare)


def test_an_ended_status_names_values_of_an_enum_field_of_a_while_valid_plus_rule() -> None:
    item = _minimal_item()
    item["fields"].append({"code": "T_ZT", "name": "状态", "type": "enum", "enum": ["有效", "注销"]})
    item["fields"].append({"code": "T_YXQZ", "name": "有效期至", "type": "date"})
    item["disclosure"] = {"kind": "while_valid_plus", "years": 3, "end_field": "T_YXQZ", "ended_field": "T_ZT",
                          "ended_values": ["注销"]}
    assert _load(item).item("test_item").disclosure.ended_values == ("注销",)
    item["disclosure"]["ended_values"] = ["作废"]
    assert "not values of T_ZT: 作废" in _refusal(item)
    item["disclosure"] = {"kind": "while_listed", "ended_field": "T_ZT", "ended_values": ["注销"]}
    assert "go together, in while_valid_plus rules" in _refusal(item)


def test_a_list_file_with_a_planned_end_and_a_removal_reads_both(shipped: Catalog, tmp_path: pathlib.Path) -> None:
    # Departments export both: 有效期至 (planned) and 移出日期 with 移出原因 (done). One field for the
    # two refused such files whole (two columns meaning one field).
    from node.tabular import HeaderMap, read_table

    item = shipped.item("serious_dishonest_list")
    headers = HeaderMap(item.header_map(), frozenset({"SX_ZTMC"}))  # the rows' other columns are not the point
    p = tmp_path / "sx.csv"
    p.write_text("失信主体名称,有效期至,移出日期,移出原因\nA公司,2027-05-01,2025-09-01,信用修复后移出\n", encoding="utf-8")
    [row] = list(read_table(p, headers))
    assert row.problem is None
    assert (row.values["SX_YXQZ"], row.values["SX_YCRQ"], row.values["SX_YCYY"]) == ("2027-05-01", "2025-09-01",
                                                                                        "信用修复后移出")


@pytest.mark.parametrize("alias", ["乙", "乙 ", "乙\u3000"])
def test_a_value_alias_that_is_itself_another_enum_value_is_refused(alias: str) -> None:
    # It silently turned every reported 乙 into 甲.
    item = _minimal_item()
    item["fields"].append({"code": "T_LB", "name": "类别", "type": "enum", "enum": ["甲", "乙"],
                           "value_aliases": {alias: "甲", "丙": "甲"}})
    assert re.search(r"fields\[4\]\.value_aliases\.乙: '乙' is an enum value itself", _refusal(item))


def test_a_value_alias_naming_its_own_enum_value_is_harmless() -> None:
    item = _minimal_item()
    item["fields"].append({"code": "T_LB", "name": "类别", "type": "enum", "enum": ["甲", "乙"],
                           "value_aliases": {"乙": "乙"}})
    assert _load(item).items["test_item"].fields[-1].value_aliases == (("乙", "乙"),)


@pytest.mark.parametrize("version", ["", "2026 12", "2026/12", "v" * 65, "-2026"])
def test_a_version_no_release_could_carry_is_refused_at_load(version: str) -> None:
    # It validated, then every record carried it, and downward release could not sign it.
    with pytest.raises(CatalogError, match=r"test\.yaml: version: "):
        parse_catalog([("test.yaml", {"version": version, "items": {"test_item": _minimal_item()}})])


def test_a_header_numbered_by_the_template_or_starred_in_brackets_is_the_column(shipped: Catalog) -> None:
    headers = shipped.item("admin_penalty").header_map()
    for header in ("1.行政相对人名称", "1、行政相对人名称", "12．行政相对人名称", "（1）行政相对人名称", "一、行政相对人名称",
                   "3)行政相对人名称", "行政相对人名称（*）", "行政相对人名称(*)"):
        assert headers.get(normalize_header(header)) == "CF_XDR_MC", header
    # A number that is part of a name stays: 行政相对人代码_1 is not 行政相对人代码.
    assert headers.get(normalize_header("行政相对人代码_1(统一社会信用代码)")) == "CF_XDR_SHXYM"


def test_permanent_residence_when_on_a_field_that_is_no_id_number_is_refused() -> None:
    item = _minimal_item()
    item["fields"].append({"code": "T_ZJLX", "name": "证件类型", "type": "enum", "enum": ["身份证", "外国人永久居留身份证"]})
    item["fields"][2]["permanent_residence_when"] = [{"field": "T_ZJLX", "values": ["外国人永久居留身份证"]}]
    assert "permanent_residence_when" in _refusal(item) and "id_number" in _refusal(item)


def test_shipped_items_check_every_permanent_residence_and_residence_permit_number(shipped: Catalog) -> None:
    for item in shipped.items.values():
        for spec in item.fields:
            types = {c.field for c in spec.checked_when if "身份证" in c.values}
            if spec.type == "id_number" and types:
                assert {c.field for c in spec.permanent_residence_when} == types, (item.code, spec.code)
                assert {c.field for c in spec.residence_permit_when} == types, (item.code, spec.code)


def test_a_header_with_a_leading_required_mark_or_a_length_or_date_hint_is_the_column(shipped: Catalog) -> None:
    headers = shipped.item("admin_penalty").header_map()
    for header, code in (("【必填】行政相对人名称", "CF_XDR_MC"), ("(必填)行政相对人名称", "CF_XDR_MC"),
                         ("统一社会信用代码（18位）", "CF_XDR_SHXYM"), ("处罚决定日期（年-月-日）", "CF_JDRQ"),
                         ("处罚决定日期(年月日)", "CF_JDRQ"), ("罚款金额(单位:万元)", "CF_NR_FK")):
        assert headers.get(normalize_header(header)) == code, header
