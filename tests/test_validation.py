"""Record checks (清洗比对): normalisation, per-field rules, conditions, cross rules, source units."""

from __future__ import annotations

import pathlib
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest

from node.catalog import Catalog, load_catalog, parse_catalog
from node.identifiers import id_check_char, make_id_number, make_uscc, uscc_check_char
from node.validation import Checked, Validator

ROOT = pathlib.Path(__file__).resolve().parent.parent
TODAY = date(2026, 11, 22)
UNIT = make_uscc("1", "1", "330102", "MB000001")  # the department (数据来源单位)
OTHER_UNIT = make_uscc("1", "1", "330106", "MB000002")
COMPANY = make_uscc("9", "1", "330102", "MA2K3L4P")
PERSON = make_id_number("330102", date(1980, 5, 17), "123")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(ROOT / "exchange_config" / "catalog")


@pytest.fixture
def validator(catalog: Catalog) -> Validator:
    return Validator(catalog, source_unit=UNIT, today=TODAY)


def penalty(**changes: Any) -> dict[str, Any]:
    """A clean 行政处罚 row of a company; ``None`` in ``changes`` removes a column."""
    row: dict[str, Any] = {
        "CF_XDR_MC": "杭州某某餐饮管理有限公司", "CF_XDR_LB": "法人及非法人组织", "CF_XDR_SHXYM": COMPANY,
        "CF_FRDB": "王伟", "CF_WSH": "杭上市监罚〔2024〕12号", "CF_WFXW": "销售不符合食品安全标准的食品",
        "CF_SY": "经查，当事人于2024年1月销售过期食品。", "CF_YJ": "《中华人民共和国食品安全法》第一百二十四条",
        "CF_CFLB": "罚款;没收违法所得", "CF_NR": "罚款人民币壹万元，没收违法所得。", "CF_NR_FK": "1",
        "CF_NR_WFFF": "0.05", "CF_JDRQ": "2024-03-01", "CF_YXQ": "2025-03-01", "CF_CFJG": "杭州市上城区市场监督管理局",
        "CF_CFJGDM": UNIT, "CF_SJLY": "杭州市上城区市场监督管理局", "CF_SJLYDM": UNIT,
    }
    for k, v in changes.items():
        if v is None:
            row.pop(k, None)
        else:
            row[k] = v
    return row


def person_penalty(**changes: Any) -> dict[str, Any]:
    return penalty(**{"CF_XDR_MC": "李娜", "CF_XDR_LB": "自然人", "CF_XDR_SHXYM": None, "CF_FRDB": None,
                      "CF_XDR_ZJLX": "身份证", "CF_XDR_ZJHM": PERSON, **changes})


def check(v: Validator, catalog: Catalog, row: dict[str, Any], item: str = "admin_penalty") -> Checked:
    return v.check(catalog.item(item), row, row=7)


def codes(c: Checked) -> list[tuple[str, str]]:
    return [(p.code, p.field) for p in c.problems]


def value(c: Checked, code: str) -> str:
    return dict(c.fields).get(code, "")


# --- a clean row ---------------------------------------------------------------------------------
def test_clean_penalty_row_is_accepted_with_subject_source_and_key(validator: Validator, catalog: Catalog) -> None:
    c = check(validator, catalog, penalty())
    assert c.ok and c.problems == ()
    assert (c.item, c.subject_kind, c.subject_code, c.subject_name) == \
        ("admin_penalty", "legal_person", COMPANY, "杭州某某餐饮管理有限公司")
    assert (c.source_unit, c.decision_date) == (UNIT, "2024-03-01")
    assert c.key == f"杭上市监罚〔2024〕12号\x1f{COMPANY}"


def test_fields_come_in_catalogue_order_without_empty_values(validator: Validator, catalog: Catalog) -> None:
    row = dict(reversed(list(penalty(BZ="", CF_GSJZQ=None, CF_XDR_GSZC="  ").items())))
    c = check(validator, catalog, row)
    order = [f.code for f in catalog.item("admin_penalty").fields]
    assert [k for k, _ in c.fields] == [k for k in order if k in dict(c.fields)]
    assert "BZ" not in dict(c.fields) and "CF_XDR_GSZC" not in dict(c.fields)


def test_natural_person_row_is_identified_by_id_number(validator: Validator, catalog: Catalog) -> None:
    c = check(validator, catalog, person_penalty())
    assert c.ok, c.problems
    assert (c.subject_kind, c.subject_code) == ("natural_person", PERSON)


def test_individual_business_row(validator: Validator, catalog: Catalog) -> None:
    shop = make_uscc("9", "2", "330102", "JY000123")
    c = check(validator, catalog, penalty(CF_XDR_LB="个体工商户", CF_XDR_SHXYM=shop, CF_FRDB=None))
    assert c.ok, c.problems
    assert (c.subject_kind, c.subject_code) == ("individual_business", shop)


# --- normalisation ------------------------------------------------------------------------------
def test_full_width_and_lower_case_input_is_normalised(validator: Validator, catalog: Catalog) -> None:
    full_width_code = "".join(chr(ord(ch) + 0xFEE0) for ch in COMPANY.lower())
    c = check(validator, catalog, penalty(
        CF_XDR_SHXYM=f"\ufeff{full_width_code}\u3000", CF_XDR_MC="杭州某某（集团）\u3000有限公司",
        CF_JDRQ="２０２４年３月１日", CF_NR_FK="１，０００.５０", CF_CFLB="罚款；没收违法所得"))
    assert c.ok, c.problems
    assert c.subject_code == COMPANY
    assert c.subject_name == "杭州某某(集团) 有限公司"
    assert (value(c, "CF_JDRQ"), value(c, "CF_NR_FK"), value(c, "CF_CFLB")) == \
        ("2024-03-01", "1000.5", "罚款;没收违法所得")


def test_prose_keeps_its_chinese_punctuation(validator: Validator, catalog: Catalog) -> None:
    c = check(validator, catalog, penalty(CF_SY="经查，当事人（某某）于２０２４年\r\n销售过期食品。"))
    assert value(c, "CF_SY") == "经查，当事人（某某）于2024年\n销售过期食品。"


@pytest.mark.parametrize("cell", ["2024-03-01", "2024/3/1", "2024.3.1", "2024-3-1", "20240301", "2024年3月1日",
                                  " 2024/03/01 00:00:00", date(2024, 3, 1), datetime(2024, 3, 1, 9, 30),
                                  45352, 45352.0, 20240301, "2024-03-01T09:30:00.000", "2024年3月1日 10:30",
                                  "2024年03月01日10时30分", "2024-02-29T16:00:00Z", "2024-03-01T15:59:59+00:00",
                                  "2024-03-01 00:30:00+0800", "2024-02-29T11:00:00-05:00"])
def test_dates_in_every_common_shape_become_iso(validator: Validator, catalog: Catalog, cell: object) -> None:
    c = check(validator, catalog, penalty(CF_JDRQ=cell))
    assert c.ok, c.problems
    assert c.decision_date == "2024-03-01"


@pytest.mark.parametrize("cell", ["2024-02-30", "2024年2月30日", "2023/2/29", "2024年13月1日", "20240230", 20240230,
                                  "2024-03-01 24:00", "2024-03-01T10:61:00Z", "2024-02-30T10:00:00Z"])
def test_impossible_dates_are_refused(validator: Validator, catalog: Catalog, cell: str) -> None:
    c = check(validator, catalog, penalty(CF_JDRQ=cell))
    assert codes(c) == [("E_FIELD_DATE", "CF_JDRQ")]
    assert c.problems[0].message.startswith("处罚决定日期 (CF_JDRQ): ")
    assert "is not a real date" in c.problems[0].message


@pytest.mark.parametrize("cell", [2024, 2024.0, 1, 1900, 2100])
def test_a_year_or_small_number_in_a_date_cell_is_not_taken_for_an_excel_day(validator: Validator,
                                                                            catalog: Catalog, cell: object) -> None:
    c = check(validator, catalog, penalty(CF_JDRQ=cell))
    assert codes(c) == [("E_FIELD_DATE", "CF_JDRQ")]
    assert "a year alone" in c.problems[0].message


def test_impossible_date_message_reads_as_the_standard_example(validator: Validator, catalog: Catalog) -> None:
    c = check(validator, catalog, penalty(CF_JDRQ="2024-02-30"))
    assert c.problems[0].message == '处罚决定日期 (CF_JDRQ): "2024-02-30" is not a real date'


@pytest.mark.parametrize("cell", ["2024-3", "下月初", "3/1/2024", True, "2024-03-0110:30", "2024-03-01T10:00+15:00"])
def test_non_dates_are_refused(validator: Validator, catalog: Catalog, cell: object) -> None:
    assert ("E_FIELD_DATE", "CF_JDRQ") in codes(check(validator, catalog, penalty(CF_JDRQ=cell)))


@pytest.mark.parametrize("cell", ["45352", "45352.0", "45352.5"])
def test_a_spreadsheet_day_number_written_as_text_is_refused_saying_what_it_is(validator: Validator,
                                                                             catalog: Catalog, cell: str) -> None:
    # A CSV saved from a General-formatted date column holds Excel's day count. A CSV does not say
    # whether it counted from 1900 or 1904 (1,462 days apart), so it is not read as a date; the
    # message says what the number is and what to do, not only "use YYYY-MM-DD".
    c = check(validator, catalog, penalty(CF_JDRQ=cell))
    assert codes(c) == [("E_FIELD_DATE", "CF_JDRQ")]
    assert "处罚决定日期 (CF_JDRQ)" in c.problems[0].message and "2024-03-01" in c.problems[0].message
    assert "day number" in c.problems[0].message


def test_decision_date_in_the_future_is_refused(validator: Validator, catalog: Catalog) -> None:
    c = check(validator, catalog, penalty(CF_JDRQ="2026-11-23", CF_YXQ="2027-11-23"))
    assert codes(c) == [("E_FIELD_DATE", "CF_JDRQ")] and "future" in c.problems[0].message


@pytest.mark.parametrize(("cell", "canonical"), [
    ("1,234.50", "1234.5"), (0.1, "0.1"), (12, "12"), (Decimal("3.000000"), "3"), ("1e2", "100"),
    ("0.000001", "0.000001"), (" 2.5 ", "2.5"), ("1 234", "1234"), (0.1 * 3, "0.3"), ("1,234,567", "1234567"),
])
def test_decimals_become_canonical_strings_without_float_error(validator: Validator, catalog: Catalog,
                                                               cell: object, canonical: str) -> None:
    c = check(validator, catalog, penalty(CF_NR_FK=cell))
    assert c.ok, c.problems
    assert value(c, "CF_NR_FK") == canonical


@pytest.mark.parametrize("cell", ["-1", "0.0000001", "十元", "NaN", "1_000", float("inf"), "0,5", "1,5", "12,34",
                                  "1 2", "1e1000000", "1e40", Decimal("1e999999")])
def test_bad_amounts_are_refused(validator: Validator, catalog: Catalog, cell: object) -> None:
    assert ("E_FIELD_NUMBER", "CF_NR_FK") in codes(check(validator, catalog, penalty(CF_NR_FK=cell)))


@pytest.mark.parametrize(("cell", "canonical"), [("0.5万元", "0.5"), ("1,200 万元", "1200"), ("人民币2万元", "2"),
                                                 ("０.５万", "0.5")])
def test_an_amount_written_with_the_columns_own_unit_is_read(validator: Validator, catalog: Catalog, cell: str,
                                                             canonical: str) -> None:
    c = check(validator, catalog, penalty(CF_NR_FK=cell))
    assert c.ok, c.problems
    assert value(c, "CF_NR_FK") == canonical


@pytest.mark.parametrize(("cell", "says"), [
    ("5000元", '"5000元" is in 元 and the column is in 万元: write 0.5'),
    ("人民币1,500元", "write 0.15"),
    ("壹万元", "written in words: write the amount in figures, in 万元"),
    ("一万五千元", "written in words"),
    ("¥100", "does not say whether it is in 元 or 万元"),
])
def test_an_amount_in_another_unit_or_in_words_is_refused_saying_what_to_write(validator: Validator,
                                                                               catalog: Catalog, cell: str,
                                                                               says: str) -> None:
    c = check(validator, catalog, penalty(CF_NR_FK=cell))
    assert codes(c) == [("E_FIELD_NUMBER", "CF_NR_FK")] and says in c.problems[0].message, c.problems


def test_a_refused_spreadsheet_number_is_shown_as_the_spreadsheet_showed_it(validator: Validator,
                                                                             catalog: Catalog) -> None:
    c = check(validator, catalog, penalty(CF_NR_FK=1 / 3))
    assert codes(c) == [("E_FIELD_NUMBER", "CF_NR_FK")] and '"0.333333333333333" has more' in c.problems[0].message


def test_an_absurd_exponent_is_a_problem_of_its_row_not_an_exception(validator: Validator,
                                                                     catalog: Catalog) -> None:
    c = check(validator, catalog, penalty(CF_NR_FK="1e1000000"))
    assert codes(c) == [("E_FIELD_NUMBER", "CF_NR_FK")] and "out of range" in c.problems[0].message


def test_an_id_number_the_spreadsheet_stored_as_a_number_is_refused_not_stored_with_other_digits(
        validator: Validator, catalog: Catalog) -> None:
    c = check(validator, catalog, person_penalty(CF_XDR_ZJHM=float(int(PERSON[:17] + "0"))))
    assert codes(c) == [("E_FIELD_TYPE", "CF_XDR_ZJHM")] and "text" in c.problems[0].message


def test_an_id_number_the_spreadsheet_stored_as_a_number_is_not_written_out_in_the_refusal(
        validator: Validator, catalog: Catalog) -> None:
    # Problem messages show ID numbers masked: the number's first 15 digits are still the person's
    # (division, birth date, sequence). The refusal shows it as the spreadsheet shows it.
    c = check(validator, catalog, person_penalty(CF_XDR_ZJHM=float(PERSON[:17] + "0")))
    [p] = c.problems
    assert PERSON[:15] not in p.message and PERSON[6:14] not in p.message
    assert "3.30102E+17" in p.message and "text" in p.message


def test_the_future_begins_at_beijing_midnight_not_the_hosts(monkeypatch: pytest.MonkeyPatch,
                                                             catalog: Catalog) -> None:
    import node.field_checks as field_checks

    # 20:50 UTC on 12-06 is 04:50 on 12-07 in Beijing: a decision of 12-07 is today's.
    monkeypatch.setattr(field_checks, "today_in_china", lambda: date(2026, 12, 7))
    v = Validator(catalog, source_unit=UNIT)
    assert check(v, catalog, penalty(CF_JDRQ="2026-12-07", CF_YXQ="2027-12-07")).ok
    assert ("E_FIELD_DATE", "CF_JDRQ") in codes(check(v, catalog, penalty(CF_JDRQ="2026-12-08",
                                                                            CF_YXQ="2027-12-08")))


def test_today_rolls_over_at_beijing_midnight() -> None:
    from datetime import UTC

    from node.field_checks import Today

    assert datetime.fromtimestamp(Today._next_midnight(date(2026, 12, 6)), UTC) == datetime(2026, 12, 6, 16, 0,
                                                                                           tzinfo=UTC)


@pytest.mark.parametrize("placeholder", ["无", "/", "-", " null ", "N/A", "——", "ＮＵＬＬ", "\u3000无"])
def test_a_placeholder_is_an_empty_cell_so_a_required_field_so_written_is_missing(
        validator: Validator, catalog: Catalog, placeholder: str) -> None:
    assert codes(check(validator, catalog, penalty(CF_FRDB=placeholder))) == [("E_FIELD_REQUIRED", "CF_FRDB")]
    noted = check(validator, catalog, penalty(BZ=placeholder))
    assert noted.ok and noted.problems == () and "BZ" not in dict(noted.fields)
    assert value(check(validator, catalog, penalty(BZ="无异议")), "BZ") == "无异议"  # a value that starts so


def test_a_spreadsheet_error_value_is_refused_as_such(validator: Validator, catalog: Catalog) -> None:
    c = check(validator, catalog, penalty(CF_NR_FK="#DIV/0!"))
    assert codes(c) == [("E_FIELD_SPREADSHEET_ERROR", "CF_NR_FK")] and "#DIV/0!" in c.problems[0].message


def _through_latin1(text: str, charset: str) -> str:
    """``text`` as a legacy system wrote it in ``charset`` and a latin1 connection read it back."""
    return text.encode(charset).decode("latin1")


@pytest.mark.parametrize("charset", ["gbk", "utf-8"])
@pytest.mark.parametrize(("field", "text"), [
    ("CF_XDR_MC", "杭州张三餐饮有限公司"), ("CF_XDR_MC", "ABC科技（杭州）有限公司"), ("CF_FRDB", "张三"),
    ("CF_SY", "经查，当事人于2024年1月销售过期食品。"), ("CF_CFLB", "罚款")])
def test_text_a_latin1_connection_garbled_is_refused_naming_what_it_should_read(
        validator: Validator, catalog: Catalog, charset: str, field: str, text: str) -> None:
    garbled = _through_latin1(text, charset)
    c = check(validator, catalog, penalty(**{field: garbled}))
    assert codes(c) == [("E_FIELD_ENCODING", field)], c.problems
    message = c.problems[0].message
    assert text in message and charset.upper() in message and "character set" in message
    assert message.isprintable()  # UTF-8 through latin1 holds C1 controls: escaped in the message


@pytest.mark.parametrize("name", ["Société Générale", "Müller GmbH", "Größe & Söhne", "São Paulo Comércio Ltda",
                                  "Distribuição e Comunicações S.A.", "Ærøskøbing Café", "25°C ±2", "买买提·艾力"])
def test_western_text_with_accented_letters_is_not_taken_for_garbled_text(
        validator: Validator, catalog: Catalog, name: str) -> None:
    c = check(validator, catalog, penalty(CF_XDR_MC=name, BZ=name))
    assert c.ok and c.problems == (), c.problems
    assert value(c, "CF_XDR_MC") == name and value(c, "BZ") == name


@pytest.mark.parametrize("cell", ["0001-01-01", "1899-12-31", datetime(1, 1, 1)])
def test_dates_before_1900_are_placeholders_not_dates(validator: Validator, catalog: Catalog, cell: object) -> None:
    c = check(validator, catalog, penalty(CF_JDRQ=cell))
    assert ("E_FIELD_DATE", "CF_JDRQ") in codes(c) and "1900" in c.problems[0].message


def test_direction_marks_are_dropped_like_zero_width_characters(validator: Validator, catalog: Catalog) -> None:
    c = check(validator, catalog, penalty(CF_XDR_SHXYM=COMPANY + "\u200e", CF_XDR_MC="\u202b杭州某某公司\u202c"))
    assert c.ok, c.problems
    assert value(c, "CF_XDR_SHXYM") == COMPANY and value(c, "CF_XDR_MC") == "杭州某某公司"


# --- enums ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("cell", "canonical"), [
    ("罚款", "罚款"),
    ("警告;罚款", "警告;罚款"),
    ("警告；罚款", "警告;罚款"),
    ("警告、罚款", "警告;罚款"),
    ("罚款; 罚款 ;警告", "罚款;警告"),
    ("没收违法所得、没收非法财物", "没收违法所得、没收非法财物"),  # one value of the pre-2021 list
    ("罚款、没收违法所得、没收非法财物", "罚款;没收违法所得、没收非法财物"),
    ("暂扣或者吊销许可证、暂扣或者吊销执照;罚款", "暂扣或者吊销许可证、暂扣或者吊销执照;罚款"),
])
def test_multi_valued_penalty_categories(validator: Validator, catalog: Catalog, cell: str, canonical: str) -> None:
    row = penalty(CF_CFLB=cell, CF_NR_ZKDX="食品经营许可证 JY13301020001234")
    c = check(validator, catalog, row)
    assert c.ok, c.problems
    assert value(c, "CF_CFLB") == canonical


def test_unknown_penalty_category_is_named(validator: Validator, catalog: Catalog) -> None:
    c = check(validator, catalog, penalty(CF_CFLB="罚款;批评教育"))
    assert codes(c) == [("E_FIELD_ENUM", "CF_CFLB")]
    assert '"批评教育"' in c.problems[0].message


def test_enum_aliases_map_to_canonical_values(validator: Validator, catalog: Catalog) -> None:
    assert check(validator, catalog, penalty(CF_XDR_LB="法人")).subject_kind == "legal_person"
    c = check(validator, catalog, person_penalty(CF_XDR_ZJLX="居民身份证"))
    assert value(c, "CF_XDR_ZJLX") == "身份证"


def test_unknown_subject_category_is_an_enum_error(validator: Validator, catalog: Catalog) -> None:
    c = check(validator, catalog, penalty(CF_XDR_LB="外国企业"))
    assert ("E_FIELD_ENUM", "CF_XDR_LB") in codes(c) and c.subject_kind == ""


# --- conditional requirements by 行政相对人类别 -------------------------------------------------
def test_organisation_without_uscc_is_refused(validator: Validator, catalog: Catalog) -> None:
    c = check(validator, catalog, penalty(CF_XDR_SHXYM=None))
    assert codes(c) == [("E_FIELD_REQUIRED", "CF_XDR_SHXYM")]
    assert "required when 行政相对人类别 is 法人及非法人组织/个体工商户" in c.problems[0].message


def test_individual_business_without_uscc_is_refused(validator: Validator, catalog: Catalog) -> None:
    c = check(validator, catalog, penalty(CF_XDR_LB="个体工商户", CF_XDR_SHXYM=""))
    assert codes(c) == [("E_FIELD_REQUIRED", "CF_XDR_SHXYM")]


def test_an_individual_business_without_a_uscc_yet_is_known_by_its_registration_number(validator: Validator,
                                                                                       catalog: Catalog) -> None:
    # 双公示 v2.0: 17 zeros and X stand in for the USCC of a 个体工商户 not issued one yet.
    c = check(validator, catalog, penalty(CF_XDR_LB="个体工商户", CF_XDR_SHXYM="00000000000000000x",
                                          CF_XDR_GSZC="330102600123456", CF_FRDB=None))
    assert c.ok, c.problems
    assert (c.subject_kind, c.subject_code) == ("individual_business", "330102600123456")
    assert [p.code for p in c.problems] == ["W_USCC_STAND_IN"]
    assert c.key.endswith("\x1f330102600123456")


@pytest.mark.parametrize(("kind", "registration"), [("个体工商户", None), ("法人及非法人组织", "330102600123456")])
def test_the_stand_in_uscc_stands_for_no_one_else(validator: Validator, catalog: Catalog, kind: str,
                                                  registration: str | None) -> None:
    c = check(validator, catalog, penalty(CF_XDR_LB=kind, CF_XDR_SHXYM="00000000000000000X",
                                          CF_XDR_GSZC=registration))
    assert codes(c) == [("E_USCC_CHECK", "CF_XDR_SHXYM")]


@pytest.mark.parametrize("registration", ["91330102MA2B00019Y", "33010219850101105X", "3301026001234", "3301-0260",
                                          "330102600123"])
def test_a_stand_in_must_be_a_registration_number(validator: Validator, catalog: Catalog, registration: str) -> None:
    # Another company's USCC, or a person's ID number shown as the subject's code, would file the
    # record under someone else; 13 digits is an older registration number, 12 is none.
    c = check(validator, catalog, penalty(CF_XDR_LB="个体工商户", CF_XDR_SHXYM="00000000000000000X",
                                          CF_XDR_GSZC=registration, CF_FRDB=None))
    if registration == "3301026001234":
        assert c.ok and c.subject_code == registration
    else:
        assert codes(c) == [("E_STAND_IN_FORMAT", "CF_XDR_GSZC")], c.problems
        assert "no registration number" in c.problems[0].message


def test_the_stand_in_is_no_source_unit(validator: Validator, catalog: Catalog) -> None:
    assert ("E_USCC_CHECK", "CF_SJLYDM") in codes(check(validator, catalog, penalty(CF_SJLYDM="00000000000000000X")))


def test_organisation_without_legal_representative_is_refused(validator: Validator, catalog: Catalog) -> None:
    assert codes(check(validator, catalog, penalty(CF_FRDB=None))) == [("E_FIELD_REQUIRED", "CF_FRDB")]


def test_natural_person_without_id_type_and_number_is_refused(validator: Validator, catalog: Catalog) -> None:
    c = check(validator, catalog, person_penalty(CF_XDR_ZJLX=None, CF_XDR_ZJHM=None))
    assert codes(c) == [("E_FIELD_REQUIRED", "CF_XDR_ZJLX"), ("E_FIELD_REQUIRED", "CF_XDR_ZJHM")]


def test_natural_person_with_organisation_fields_is_refused(validator: Validator, catalog: Catalog) -> None:
    c = check(validator, catalog, person_penalty(CF_FRDB="王伟", CF_XDR_SHXYM=COMPANY))
    assert sorted(codes(c)) == [("E_FIELD_FORBIDDEN", "CF_FRDB"), ("E_FIELD_FORBIDDEN", "CF_XDR_SHXYM")]


def test_natural_person_id_number_is_checked_as_resident_id(validator: Validator, catalog: Catalog) -> None:
    c = check(validator, catalog, person_penalty(CF_XDR_ZJHM=PERSON[:17] + ("0" if PERSON[17] != "0" else "1")))
    assert codes(c) == [("E_ID_CHECK", "CF_XDR_ZJHM")]
    assert PERSON[4:14] not in c.problems[0].message  # masked


def test_lower_case_x_in_an_id_number_is_normalised(validator: Validator, catalog: Catalog) -> None:
    c = check(validator, catalog, person_penalty(CF_XDR_ZJHM="11010519491231002x"))
    assert c.ok and c.subject_code == "11010519491231002X"


def test_id_number_with_a_bad_birth_date_is_refused(validator: Validator, catalog: Catalog) -> None:
    from node.identifiers import id_check_char
    first17 = "33010219800230123"
    c = check(validator, catalog, person_penalty(CF_XDR_ZJHM=first17 + id_check_char(first17)))
    assert codes(c) == [("E_ID_BIRTHDATE", "CF_XDR_ZJHM")]


def test_passport_numbers_are_not_checked_as_resident_ids(validator: Validator, catalog: Catalog) -> None:
    c = check(validator, catalog, person_penalty(CF_XDR_ZJLX="护照号", CF_XDR_ZJHM="E12345678"))
    assert c.ok and c.subject_code == "E12345678"


# 外国人永久居留身份证: the 2023 card's number is 9, the province (2), the nationality (3), the birth
# date (8), a sequence (3) and a GB 11643 check digit; earlier cards' are 3 letters and 12 digits.
FOREIGN_RESIDENT = "9" + "31" + "840" + "19850303" + "001"
FOREIGN_RESIDENT += id_check_char(FOREIGN_RESIDENT)


def _wrong_last(value: str) -> str:
    return value[:17] + ("0" if value[17] != "0" else "1")


def test_permanent_residence_number_with_a_wrong_check_digit_is_refused(validator: Validator,
                                                                         catalog: Catalog) -> None:
    c = check(validator, catalog, person_penalty(CF_XDR_ZJLX="外国人永久居留身份证",
                                                 CF_XDR_ZJHM=_wrong_last(FOREIGN_RESIDENT)))
    assert codes(c) == [("E_ID_CHECK", "CF_XDR_ZJHM")]
    assert "外国人永久居留身份证" in c.problems[0].message and FOREIGN_RESIDENT[4:14] not in c.problems[0].message


def test_legal_representatives_permanent_residence_number_is_checked(validator: Validator, catalog: Catalog) -> None:
    c = check(validator, catalog, penalty(CF_FR_ZJLX="外国人永久居留身份证", CF_FR_ZJHM=_wrong_last(FOREIGN_RESIDENT)))
    assert codes(c) == [("E_ID_CHECK", "CF_FR_ZJHM")]
    row = {"XK_XDR_MC": "杭州某某贸易有限公司", "XK_XDR_LB": "法人及非法人组织", "XK_XDR_SHXYM": COMPANY, "XK_FRDB": "John Smith",
           "XK_FR_ZJLX": "外国人永久居留身份证", "XK_FR_ZJHM": _wrong_last(FOREIGN_RESIDENT), "XK_XKWS": "食品经营许可决定书",
           "XK_WSH": "杭上市监许〔2024〕8号", "XK_XKLB": "普通", "XK_NR": "食品销售", "XK_JDRQ": "2024-03-01",
           "XK_YXQZ": "2024-03-01", "XK_YXQZI": "2029-02-28", "XK_XKJG": "杭州市上城区市场监督管理局", "XK_XKJGDM": UNIT,
           "XK_ZT": "1", "XK_LYDW": "杭州市上城区市场监督管理局", "XK_LYDWDM": UNIT}
    assert codes(check(validator, catalog, row, "admin_license")) == [("E_ID_CHECK", "XK_FR_ZJHM")]
    row["XK_FR_ZJHM"] = FOREIGN_RESIDENT
    assert check(validator, catalog, row, "admin_license").ok


@pytest.mark.parametrize("number", [FOREIGN_RESIDENT, "USA310085071501"])
def test_permanent_residence_number_of_either_card_is_accepted(validator: Validator, catalog: Catalog,
                                                               number: str) -> None:
    c = check(validator, catalog, person_penalty(CF_XDR_ZJLX="外国人永久居留身份证", CF_XDR_ZJHM=number))
    assert c.ok and c.subject_code == number


@pytest.mark.parametrize("number", [PERSON, "E12345678"])
def test_other_documents_number_as_permanent_residence_number_is_refused(validator: Validator, catalog: Catalog,
                                                                         number: str) -> None:
    c = check(validator, catalog, person_penalty(CF_XDR_ZJLX="外国人永久居留身份证", CF_XDR_ZJHM=number))
    assert codes(c) == [("E_ID_FORMAT", "CF_XDR_ZJHM")]
    assert "starting with 9" in c.problems[0].message


@pytest.mark.parametrize("division", ["810000", "820000", "830000"])
def test_residence_permit_numbers_of_hong_kong_macao_and_taiwan_are_accepted(validator: Validator, catalog: Catalog,
                                                                            division: str) -> None:
    number = make_id_number(division, date(1990, 2, 28), "015")
    c = check(validator, catalog, person_penalty(CF_XDR_ZJLX="港澳台居民居住证", CF_XDR_ZJHM=number))
    assert c.ok and c.subject_code == number


def test_mainland_id_number_as_a_residence_permit_number_is_refused(validator: Validator, catalog: Catalog) -> None:
    # A 港澳台居民居住证 number's address code is 810000, 820000 or 830000; any other is a
    # mainland resident's number under the wrong 证件类型.
    c = check(validator, catalog, person_penalty(CF_XDR_ZJLX="港澳台居民居住证", CF_XDR_ZJHM=PERSON))
    assert codes(c) == [("E_ID_FORMAT", "CF_XDR_ZJHM")]
    assert "810000" in c.problems[0].message and PERSON[4:14] not in c.problems[0].message
    c = check(validator, catalog, penalty(CF_FR_ZJLX="港澳台居民居住证", CF_FR_ZJHM=PERSON))
    assert codes(c) == [("E_ID_FORMAT", "CF_FR_ZJHM")]


# --- identifiers in rows ------------------------------------------------------------------------
def test_subject_uscc_with_one_wrong_character_is_refused(validator: Validator, catalog: Catalog) -> None:
    wrong = COMPANY[:-1] + ("0" if COMPANY[-1] != "0" else "1")
    assert codes(check(validator, catalog, penalty(CF_XDR_SHXYM=wrong))) == [("E_USCC_CHECK", "CF_XDR_SHXYM")]


def test_fabricated_uscc_passing_pos18_is_refused_in_a_row(validator: Validator, catalog: Catalog) -> None:
    first17 = COMPANY[:16] + ("0" if COMPANY[16] != "0" else "1")
    fabricated = first17 + uscc_check_char(first17)
    c = check(validator, catalog, penalty(CF_XDR_SHXYM=fabricated))
    assert codes(c) == [("E_USCC_ORG_CHECK", "CF_XDR_SHXYM")]


def test_authority_and_source_codes_must_be_valid_usccs(catalog: Catalog) -> None:
    v = Validator(catalog, today=TODAY)
    wrong = UNIT[:17] + ("0" if UNIT[17] != "0" else "1")
    c = check(v, catalog, penalty(CF_CFJGDM=wrong, CF_SJLYDM=UNIT[:16]))
    assert codes(c) == [("E_USCC_CHECK", "CF_CFJGDM"), ("E_USCC_FORMAT", "CF_SJLYDM")]


def test_allow_listed_uscc_is_accepted_with_a_warning(catalog: Catalog) -> None:
    early = COMPANY[:17] + ("0" if COMPANY[17] != "0" else "1")
    v = Validator(catalog, source_unit=UNIT, today=TODAY, uscc_allowlist=[early.lower()])
    c = check(v, catalog, penalty(CF_XDR_SHXYM=early))
    assert c.ok and c.subject_code == early
    assert [(p.code, p.warning, p.row) for p in c.problems] == [("W_USCC_ALLOWLISTED", True, 7)]


# --- cross rules ----------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", [COMPANY[8:16] + "-" + COMPANY[16], COMPANY[8:17], COMPANY[8:17].lower(),
                                  COMPANY[8:16] + "－" + COMPANY[16]])
def test_an_organisation_code_is_stored_as_gb11714_writes_it(validator: Validator, catalog: Catalog,
                                                              cell: str) -> None:
    c = check(validator, catalog, penalty(CF_XDR_ZZJG=cell))
    assert c.ok, c.problems
    assert value(c, "CF_XDR_ZZJG") == COMPANY[8:16] + "-" + COMPANY[16]


def test_an_organisation_code_failing_its_check_is_refused(validator: Validator, catalog: Catalog) -> None:
    wrong = "0123456789X"[("0123456789X".index(COMPANY[16]) + 1) % 11]
    c = check(validator, catalog, penalty(CF_XDR_ZZJG=COMPANY[8:16] + "-" + wrong))
    assert codes(c) == [("E_ORG_CHECK", "CF_XDR_ZZJG")]


def test_an_organisation_code_that_is_not_the_usccs_own_is_refused(validator: Validator, catalog: Catalog) -> None:
    other = make_uscc("9", "1", "330102", "MA2K3L4Q")
    c = check(validator, catalog, penalty(CF_XDR_ZZJG=other[8:17]))
    assert codes(c) == [("E_CROSS_FIELD", "CF_XDR_ZZJG")] and "positions 9-17" in c.problems[0].message
    license_row = check(validator, catalog, {**licence(), "XK_XDR_ZZJG": other[8:17]}, "admin_license")
    assert codes(license_row) == [("E_CROSS_FIELD", "XK_XDR_ZZJG")]


def test_validity_before_decision_is_refused(validator: Validator, catalog: Catalog) -> None:
    c = check(validator, catalog, penalty(CF_YXQ="2024-02-29"))
    assert codes(c) == [("E_CROSS_FIELD", "CF_YXQ")] and "validity-after-decision" in c.problems[0].message


def test_publicity_deadline_before_decision_is_refused(validator: Validator, catalog: Catalog) -> None:
    assert codes(check(validator, catalog, penalty(CF_GSJZQ="2024-01-01"))) == [("E_CROSS_FIELD", "CF_GSJZQ")]


@pytest.mark.parametrize(("amount", "content", "ok"), [
    ("5000", "罚款人民币5000元", False), ("0.5", "罚款人民币5000元", True), ("50000", "罚款5万元", False),
    ("5", "罚款5万元", True), ("10", "罚款1,000元，没收违法所得", True),  # other figures: no unit mistake shown
    ("1000", "警告", True), ("2", "罚款人民币2万元（20000元）", True), ("20000", "罚款人民币2万元", False)])
def test_a_fine_in_yuan_under_the_wan_yuan_column_is_refused(validator: Validator, catalog: Catalog, amount: str,
                                                             content: str, ok: bool) -> None:
    c = check(validator, catalog, penalty(CF_NR_FK=amount, CF_NR=content))
    assert c.ok is ok, c.problems
    if not ok:
        assert codes(c) == [("E_CROSS_FIELD", "CF_NR_FK")] and "万元" in c.problems[0].message


@pytest.mark.parametrize(("cell", "stored"), [("其他-责令改正", "其他-责令改正"), ("警告;其他（责令改正）", "警告;其他-责令改正"),
                                              ("警告,罚款", "警告;罚款"), ("其他：限期整改、补办;罚款", "其他-限期整改、补办;罚款")])
def test_the_category_other_carries_what_it_stands_for(validator: Validator, catalog: Catalog, cell: str,
                                                       stored: str) -> None:
    c = check(validator, catalog, penalty(CF_CFLB=cell, CF_NR_FK="1" if "罚款" in cell else None))
    assert c.ok, c.problems
    assert value(c, "CF_CFLB") == stored


def test_an_unknown_category_says_how_several_are_separated(validator: Validator, catalog: Catalog) -> None:
    c = check(validator, catalog, penalty(CF_CFLB="警告 罚款"))
    assert codes(c) == [("E_FIELD_ENUM", "CF_CFLB")] and "separated by ';'" in c.problems[0].message


@pytest.mark.parametrize("amount", [None, "0", "0.000"])
def test_fine_without_a_positive_amount_is_refused(validator: Validator, catalog: Catalog, amount: object) -> None:
    c = check(validator, catalog, penalty(CF_NR_FK=amount))
    assert codes(c) == [("E_CROSS_FIELD", "CF_NR_FK")]


def test_warning_without_fine_needs_no_amount(validator: Validator, catalog: Catalog) -> None:
    assert check(validator, catalog, penalty(CF_CFLB="警告", CF_NR_FK=None)).ok


def test_licence_suspension_needs_the_licence_named(validator: Validator, catalog: Catalog) -> None:
    c = check(validator, catalog, penalty(CF_CFLB="罚款;吊销许可证件"))
    assert codes(c) == [("E_FIELD_REQUIRED", "CF_NR_ZKDX")]


def test_unknown_penalty_kind_is_refused_naming_every_kind_and_the_other_form(validator: Validator,
                                                                             catalog: Catalog) -> None:
    # A department that wrote 责令改正 (no penalty kind since 2021) must learn what to write from the
    # message: every value of the list, and that 其他 names such a kind.
    c = check(validator, catalog, penalty(CF_CFLB="罚款;责令改正"))
    assert codes(c) == [("E_FIELD_ENUM", "CF_CFLB")]
    message = c.problems[0].message
    assert all(kind in message for kind in catalog.item("admin_penalty").field("CF_CFLB").enum)
    assert "其他-责令改正" in message


@pytest.mark.parametrize("cflb", ["没收违法所得", "警告;没收非法财物", "没收违法所得、没收非法财物"])
def test_confiscation_without_its_amount_is_refused(validator: Validator, catalog: Catalog, cflb: str) -> None:
    # 双公示 v2.0: the amount confiscated is required whenever 处罚类别 includes a confiscation.
    c = check(validator, catalog, penalty(CF_CFLB=cflb, CF_NR_FK=None, CF_NR_WFFF=None, CF_NR="没收违法所得。"))
    assert codes(c) == [("E_FIELD_REQUIRED", "CF_NR_WFFF")]
    assert check(validator, catalog, penalty(CF_CFLB=cflb, CF_NR_FK=None, CF_NR_WFFF="0", CF_NR="没收违法所得。")).ok


def test_legal_representative_id_type_and_number_go_together(validator: Validator, catalog: Catalog) -> None:
    c = check(validator, catalog, penalty(CF_FR_ZJLX="身份证"))
    assert codes(c) == [("E_CROSS_FIELD", "CF_FR_ZJLX")]
    assert check(validator, catalog, penalty(CF_FR_ZJLX="身份证", CF_FR_ZJHM=PERSON)).ok


def licence() -> dict[str, Any]:
    return {"XK_XDR_MC": "杭州某某有限公司", "XK_XDR_LB": "法人及非法人组织", "XK_XDR_SHXYM": COMPANY, "XK_FRDB": "王伟",
            "XK_XKWS": "食品经营许可决定书", "XK_WSH": "杭上市监许〔2024〕1号", "XK_XKLB": "普通", "XK_NR": "食品经营",
            "XK_JDRQ": "2024/5/6", "XK_YXQZ": "2024-05-06", "XK_YXQZI": "长期", "XK_XKJG": "上城区市场监管局",
            "XK_XKJGDM": UNIT, "XK_ZT": "有效", "XK_LYDW": "上城区市场监管局", "XK_LYDWDM": UNIT}


def test_licence_open_ended_validity_and_order(validator: Validator, catalog: Catalog) -> None:
    row = licence()
    c = check(validator, catalog, row, "admin_license")
    assert c.ok, c.problems
    assert (value(c, "XK_YXQZI"), value(c, "XK_ZT"), c.key) == ("2099-12-31", "1", f"杭上市监许〔2024〕1号\x1f{COMPANY}")
    assert codes(check(validator, catalog, dict(row, XK_YXQZI="2024-05-05"), "admin_license")) == \
        [("E_CROSS_FIELD", "XK_YXQZI")]
    assert check(validator, catalog, dict(row, XK_ZT=2), "admin_license").ok


@pytest.mark.parametrize(("cell", "stored"), [("其他－备案", "其他-备案"), ("其他（备案）", "其他-备案"), ("其他：备案", "其他-备案"),
                                              ("核准", "核准"), ("登记许可", "登记"), ("其他", "其他"),
                                              ("其它", "其他"), ("其它（备案）", "其他-备案")])
def test_a_licence_category_other_carries_what_it_stands_for(validator: Validator, catalog: Catalog, cell: str,
                                                             stored: str) -> None:
    # 双公示 v2.0 行政许可: 许可类别 其他 names the specific kind, as 处罚类别 其他 does.
    c = check(validator, catalog, {**licence(), "XK_XKLB": cell}, "admin_license")
    assert c.ok, c.problems
    assert value(c, "XK_XKLB") == stored
    bad = check(validator, catalog, {**licence(), "XK_XKLB": "备案"}, "admin_license")
    assert codes(bad) == [("E_FIELD_ENUM", "XK_XKLB")] and "许可类别 (XK_XKLB)" in bad.problems[0].message


# --- source units --------------------------------------------------------------------------------
def test_department_refuses_rows_of_another_unit(validator: Validator, catalog: Catalog) -> None:
    c = check(validator, catalog, penalty(CF_SJLYDM=OTHER_UNIT))
    assert codes(c) == [("E_SOURCE_UNIT", "CF_SJLYDM")]


def test_department_allowed_other_units_accepts_them(catalog: Catalog) -> None:
    v = Validator(catalog, source_unit=UNIT, allow_other_units=True, today=TODAY)
    assert check(v, catalog, penalty(CF_SJLYDM=OTHER_UNIT)).ok


def test_item_limited_to_some_units_refuses_the_others(catalog: Catalog) -> None:
    doc = {"version": "t", "items": {"limited": {
        "name": "限定事项", "category": "行政管理信息", "subject_kinds": ["legal_person"], "disclosure_class": "C",
        "disclosure": {"kind": "while_listed"}, "source_units": [UNIT],
        "routing": {"rule_id": "limited-to-city", "up_to": "city"},
        "subject": {"name_field": "L_MC", "code_fields": {"legal_person": "L_DM"}},
        "source_unit_field": "L_LYDM", "key_fields": ["@subject_code"],
        "fields": [{"code": "L_MC", "name": "名称", "type": "string", "required": True},
                   {"code": "L_DM", "name": "代码", "type": "uscc", "required": True},
                   {"code": "L_LYDM", "name": "来源单位代码", "type": "uscc", "required": True}]}}}
    limited = parse_catalog([("t.yaml", doc)])
    v = Validator(limited, today=TODAY)
    item = limited.item("limited")
    assert v.check(item, {"L_MC": "甲", "L_DM": COMPANY, "L_LYDM": UNIT}).ok
    c = v.check(item, {"L_MC": "甲", "L_DM": COMPANY, "L_LYDM": OTHER_UNIT})
    assert codes(c) == [("E_SOURCE_UNIT", "L_LYDM")] and "may not report limited" in c.problems[0].message


def test_subject_kind_the_item_does_not_carry_is_refused() -> None:
    doc = {"version": "t", "items": {"orgs": {
        "name": "组织事项", "category": "行政管理信息", "subject_kinds": ["legal_person"], "disclosure_class": "A",
        "disclosure": {"kind": "while_listed"}, "routing": {"rule_id": "orgs", "up_to": "city"},
        "subject": {"name_field": "O_MC", "kind_field": "O_LB", "kinds": {"法人及非法人组织": "legal_person"},
                    "code_fields": {"legal_person": "O_DM"}},
        "source_unit_field": "O_LYDM", "key_fields": ["@subject_code"],
        "fields": [{"code": "O_MC", "name": "名称", "type": "string", "required": True},
                   {"code": "O_LB", "name": "类别", "type": "enum", "enum": ["法人及非法人组织", "自然人"],
                    "required": True},
                   {"code": "O_DM", "name": "代码", "type": "string"},
                   {"code": "O_LYDM", "name": "来源单位代码", "type": "uscc", "required": True}]}}}
    cat = parse_catalog([("t.yaml", doc)])
    c = Validator(cat, today=TODAY).check(cat.item("orgs"), {"O_MC": "张三", "O_LB": "自然人", "O_LYDM": UNIT})
    assert codes(c) == [("E_SUBJECT_KIND", "O_LB")]


# --- collecting problems -----------------------------------------------------------------------
def test_every_problem_of_a_row_is_reported_with_its_row(validator: Validator, catalog: Catalog) -> None:
    c = check(validator, catalog, penalty(CF_WSH=None, CF_JDRQ="2024-02-30", CF_CFLB="批评教育",
                                          CF_XDR_MC="某" * 201, CF_NR_FK="-5"))
    assert sorted(codes(c)) == sorted([("E_FIELD_REQUIRED", "CF_WSH"), ("E_FIELD_DATE", "CF_JDRQ"),
                                       ("E_FIELD_ENUM", "CF_CFLB"), ("E_FIELD_TOO_LONG", "CF_XDR_MC"),
                                       ("E_FIELD_NUMBER", "CF_NR_FK")])
    assert not c.ok and {p.row for p in c.problems} == {7}


def test_cells_of_impossible_types_are_type_errors(validator: Validator, catalog: Catalog) -> None:
    c = check(validator, catalog, penalty(CF_XDR_MC=["a", "b"], CF_FRDB=True))
    assert sorted(codes(c)) == [("E_FIELD_TYPE", "CF_FRDB"), ("E_FIELD_TYPE", "CF_XDR_MC")]


def test_unknown_columns_are_dropped_with_a_warning(validator: Validator, catalog: Catalog) -> None:
    c = check(validator, catalog, penalty(血型="A", CF_EXTRA="x"))
    assert c.ok
    assert [(p.code, p.warning) for p in c.problems] == [("W_FIELD_UNKNOWN", True)]
    assert "CF_EXTRA" in c.problems[0].message and "血型" not in dict(c.fields)


def test_the_unknown_columns_warning_names_a_few_and_counts_the_rest(validator: Validator, catalog: Catalog) -> None:
    # A pushed row may carry any number of fields of any length: the warning, echoed in the ack and
    # the result file, stays a line (20,000 names made a 5 MB ack, over a default grpc client's 4 MB).
    extra = {f"X{i:05d}" + "名" * 1000: "x" for i in range(20_000)}
    c = check(validator, catalog, penalty(**extra))
    assert c.ok
    [warning] = c.problems
    assert warning.code == "W_FIELD_UNKNOWN" and len(warning.message) < 1_000
    assert warning.message.startswith("columns not in admin_penalty ignored: X00000")
    assert "19,990 more" in warning.message


@pytest.mark.parametrize("field", ["CF_CFLB", "CF_JDRQ", "CF_NR_FK", "CF_XDR_LB", "CF_XDR_SHXYM", "CF_CFJGDM"])
def test_a_refusal_quotes_a_huge_value_cut_with_its_start_and_end(
        validator: Validator, catalog: Catalog, field: str) -> None:
    # The message goes back in the ack, into the rejections kept and the log: a 100,000-character
    # cell must not come back whole (a request of such rows made acks of megabytes).
    c = check(validator, catalog, penalty(**{field: "法" * 100_000}))
    [problem] = [p for p in c.problems if p.field == field]
    assert len(problem.message) <= 600
    assert "…" in problem.message and "法法" in problem.message


def test_spreadsheet_cells_validate_like_text_cells(validator: Validator, catalog: Catalog) -> None:
    text = check(validator, catalog, penalty())
    cells = check(validator, catalog, penalty(CF_JDRQ=datetime(2024, 3, 1), CF_YXQ=45717, CF_NR_FK=1.0,
                                              CF_NR_WFFF=0.05, BZ=None, CF_GSJZQ=None))
    assert cells.ok, cells.problems
    assert cells.fields == text.fields and cells.key == text.key


def test_dirty_row_normalises_like_a_clean_row(validator: Validator, catalog: Catalog) -> None:
    clean = check(validator, catalog, penalty())
    dirty = check(validator, catalog, penalty(CF_CFJG="\u200b杭州市上城区市场监督管理局 "))
    assert dirty.fields == clean.fields


def test_natural_person_item_with_a_single_subject_kind(validator: Validator, catalog: Catalog) -> None:
    row = {"ZG_XM": "李娜", "ZG_ZJLX": "身份证", "ZG_ZJHM": PERSON, "ZG_ZGLB": "职业资格", "ZG_ZGMC": "执业药师",
           "ZG_ZSBH": "ZY2024001", "ZG_QDRQ": "2024-06-01", "ZG_ZT": "有效", "ZG_FZJG": "浙江省药品监督管理局",
           "ZG_SJLY": "浙江省药品监督管理局", "ZG_SJLYDM": UNIT}
    c = check(validator, catalog, row, "professional_qualification")
    assert c.ok, c.problems
    assert (c.subject_kind, c.subject_code, c.key) == ("natural_person", PERSON, f"ZY2024001\x1f{PERSON}")


def registration(**changes: str) -> dict[str, str]:
    return {"DJ_MC": "杭州某某餐饮管理有限公司", "DJ_ZTLB": "法人及非法人组织", "DJ_SHXYM": COMPANY, "DJ_FRDB": "王伟",
            "DJ_CLRQ": "2015-04-01", "DJ_ZS": "杭州市上城区某路1号", "DJ_DJJG": "杭州市上城区市场监督管理局",
            "DJ_ZT": "注销", "DJ_ZXRQ": "2024-06-30", "DJ_SJLY": "杭州市上城区市场监督管理局", "DJ_SJLYDM": UNIT,
            **changes}


def test_a_deregistration_dated_after_today_is_refused(validator: Validator, catalog: Catalog) -> None:
    assert check(validator, catalog, registration(), "registration").ok
    # The end date starts the 3 years of disclosure; one in the future would keep a closed company
    # looking open until then.
    late = check(validator, catalog, registration(DJ_ZXRQ="2026-11-23"), "registration")
    assert codes(late) == [("E_FIELD_DATE", "DJ_ZXRQ")] and "future" in late.problems[0].message


def test_an_item_from_outside_the_catalogue_is_compiled_on_the_fly(validator: Validator) -> None:
    other = load_catalog(ROOT / "exchange_config" / "catalog")
    assert validator.check(other.item("admin_penalty"), penalty()).ok


@pytest.mark.parametrize("cell", ["杭州某某公司", " 杭州某某公司 ", "杭州  某某", "某某\t公司", "ＡＢＣ公司", "A\u00a0B",
                                  "（集团）", "x\u200by", "line\r\nbreak", "plain ascii", "two  spaces", "a\nb"])
def test_stored_text_equals_normalize_text_whatever_path_it_takes(validator: Validator, catalog: Catalog,
                                                                   cell: str) -> None:
    from node.identifiers import normalize_text
    c = check(validator, catalog, penalty(CF_XDR_MC=cell, CF_SY=cell))
    assert value(c, "CF_XDR_MC") == normalize_text(cell)
    assert value(c, "CF_SY") == normalize_text(cell, prose=True)


@pytest.mark.parametrize("cell", [COMPANY + "1", COMPANY[:9] + "-" + COMPANY[9:]])
def test_a_uscc_of_the_wrong_length_is_named_a_uscc_format_error(validator: Validator, catalog: Catalog,
                                                                  cell: str) -> None:
    c = check(validator, catalog, penalty(CF_XDR_SHXYM=cell))
    assert codes(c) == [("E_USCC_FORMAT", "CF_XDR_SHXYM")] and "18 characters" in c.problems[0].message


@pytest.mark.parametrize(("born", "outcome"), [(date(2012, 5, 1), "E_SUBJECT_MINOR"),
                                               (date(2007, 3, 2), "W_SUBJECT_MINOR"),   # 16 on 2024-03-01
                                               (date(2006, 3, 1), None)])               # 18 that day
def test_natural_persons_are_adults_or_16_with_a_warning(validator: Validator, catalog: Catalog, born: date,
                                                         outcome: str | None) -> None:
    c = check(validator, catalog, person_penalty(CF_XDR_ZJHM=make_id_number("330102", born, "123")))
    assert [p.code for p in c.problems] == ([outcome] if outcome else [])
    assert c.ok is (outcome != "E_SUBJECT_MINOR")


def test_a_birth_date_the_id_check_refused_gets_no_age_reported_too(validator: Validator, catalog: Catalog) -> None:
    c = check(validator, catalog, person_penalty(CF_XDR_ZJHM=make_id_number("330102", date(2030, 1, 1), "123")))
    assert [p.code for p in c.problems] == ["E_ID_BIRTHDATE"]


def test_a_person_born_after_the_decision_is_a_contradiction_not_an_age(validator: Validator,
                                                                         catalog: Catalog) -> None:
    c = check(validator, catalog, person_penalty(CF_XDR_ZJHM=make_id_number("330102", date(2024, 6, 1), "123")))
    assert codes(c) == [("E_CROSS_FIELD", "CF_XDR_ZJHM")] and "after the decision" in c.problems[0].message


def test_an_instant_with_a_time_zone_is_dated_by_its_day_in_beijing(validator: Validator, catalog: Catalog) -> None:
    from datetime import UTC, timedelta, timezone

    late_utc = datetime(2024, 3, 1, 17, 30, tzinfo=UTC)  # 2024-03-02 01:30 in Beijing
    midnight_cst = datetime(2024, 3, 1, 0, 0, tzinfo=timezone(timedelta(hours=8)))  # a TIMESTAMPTZ on a UTC server
    assert value(check(validator, catalog, penalty(CF_JDRQ=late_utc)), "CF_JDRQ") == "2024-03-02"
    assert value(check(validator, catalog, penalty(CF_JDRQ=midnight_cst.astimezone(UTC))), "CF_JDRQ") == "2024-03-01"
    # The same instants written as text by an export in UTC.
    assert value(check(validator, catalog, penalty(CF_JDRQ="2024-03-01T17:30:00Z")), "CF_JDRQ") == "2024-03-02"
    assert value(check(validator, catalog, penalty(CF_JDRQ="2024-02-29 16:00:00+00:00")), "CF_JDRQ") == "2024-03-01"


def test_control_characters_left_in_cells_do_not_make_another_fact(validator: Validator, catalog: Catalog) -> None:
    clean = check(validator, catalog, penalty())
    dirty = check(validator, catalog, penalty(CF_WSH="杭上市监罚〔2024〕12号\x00", CF_XDR_MC="杭州某某\x07餐饮管理有限公司",
                                              CF_SY="经查，当事人于2024年1月\x1b销售过期食品。", CF_WFXW="销售不符合食品安全标准的食品\x00"))
    assert clean.ok and dirty.ok, codes(dirty)
    assert (dirty.key, dirty.fields) == (clean.key, clean.fields)


@pytest.mark.parametrize("cell", ["9999-12-31", "9999/12/31", 99991231, datetime(9999, 12, 31), "2100-01-01"])
def test_a_date_past_2099_is_long_term_where_the_field_has_it_and_refused_elsewhere(validator: Validator,
                                                                                  catalog: Catalog,
                                                                                  cell: object) -> None:
    # Another system's "no end": 长期, which the standard writes 2099-12-31, where the field knows it.
    c = check(validator, catalog, penalty(CF_YXQ=cell))
    assert c.ok and value(c, "CF_YXQ") == "2099-12-31"
    assert codes(c) == [("W_DATE_LONG_TERM", "CF_YXQ")] and c.problems[0].warning
    # 公示截止期 has no 长期: no disclosure period can be counted from such a date.
    c = check(validator, catalog, penalty(CF_GSJZQ=cell))
    assert codes(c) == [("E_FIELD_DATE", "CF_GSJZQ")] and "after 2099-12-31" in c.problems[0].message


@pytest.mark.parametrize("field", ["CF_XDR_GSZC", "CF_XDR_ZZJG", "CF_XDR_SWDJ", "CF_XDR_SYDW", "CF_XDR_SHZZ"])
def test_a_natural_person_has_no_organisation_codes(validator: Validator, catalog: Catalog, field: str) -> None:
    # 双公示 v2.0: a 自然人 is known by 证件类型 and 证件号码; 代码_2-6 left filled would carry what
    # masking cannot see (a 税务登记号 is often the person's ID number) into public disclosure.
    c = check(validator, catalog, person_penalty(**{field: "330102198505061234"}))
    assert ("E_FIELD_FORBIDDEN", field) in codes(c) and not c.ok, c.problems


def test_a_natural_persons_licence_has_no_tax_number_either(validator: Validator, catalog: Catalog) -> None:
    row = {**licence(), "XK_XDR_MC": "李娜", "XK_XDR_LB": "自然人", "XK_XDR_SHXYM": "", "XK_FRDB": "",
           "XK_XDR_ZJLX": "身份证", "XK_XDR_ZJHM": PERSON}
    assert check(validator, catalog, row, "admin_license").ok
    c = check(validator, catalog, {**row, "XK_XDR_SWDJ": "330102198505061234"}, "admin_license")
    assert codes(c) == [("E_FIELD_FORBIDDEN", "XK_XDR_SWDJ")]


@pytest.mark.parametrize(("written", "stored"), [("红名单", "守信红名单"), ("守信红名单", "守信红名单"), ("表彰", "表彰奖励")])
def test_a_red_list_category_as_departments_write_it(validator: Validator, catalog: Catalog, written: str,
                                                     stored: str) -> None:
    row = {"HM_ZTMC": "杭州守信有限公司", "HM_ZTLB": "法人及非法人组织", "HM_SHXYM": COMPANY, "HM_MDMC": "浙江省守信企业",
           "HM_LB": written, "HM_RDYJ": "《浙江省守信激励办法》", "HM_RDWH": "浙信〔2026〕1号", "HM_RDJG": "浙江省发展改革委",
           "HM_RDJGDM": UNIT, "HM_RDRQ": "2026-02-01", "HM_SJLY": "浙江省发展改革委", "HM_SJLYDM": UNIT}
    c = check(validator, catalog, row, "red_list")
    assert c.ok, c.problems
    assert value(c, "HM_LB") == stored


@pytest.mark.parametrize(("item", "row", "field"), [
    ("registration", registration(DJ_ZT="存续", DJ_ZXRQ=""), "DJ_YYQXZI"),
    ("red_list", {"HM_ZTMC": "杭州守信有限公司", "HM_ZTLB": "法人及非法人组织", "HM_SHXYM": COMPANY, "HM_MDMC": "浙江省守信企业",
                  "HM_LB": "守信红名单", "HM_RDYJ": "《浙江省守信激励办法》", "HM_RDWH": "浙信〔2026〕1号", "HM_RDJG": "浙江省发展改革委",
                  "HM_RDJGDM": UNIT, "HM_RDRQ": "2026-02-01", "HM_SJLY": "浙江省发展改革委", "HM_SJLYDM": UNIT}, "HM_YXQZ"),
    ("professional_qualification", {"ZG_XM": "李娜", "ZG_ZJLX": "身份证", "ZG_ZJHM": PERSON, "ZG_ZGLB": "职业资格",
                                    "ZG_ZGMC": "执业药师", "ZG_ZSBH": "ZY2024001", "ZG_QDRQ": "2024-06-01", "ZG_ZT": "有效",
                                    "ZG_FZJG": "浙江省药品监督管理局", "ZG_SJLY": "浙江省药品监督管理局", "ZG_SJLYDM": UNIT}, "ZG_YXQZ"),
    ("admin_license", licence(), "XK_YXQZI"),
    ("admin_penalty", penalty(), "CF_YXQ")])
@pytest.mark.parametrize("cell", ["长期", "长期有效", "永久", "永久有效"])
def test_every_field_that_knows_long_term_reads_it_as_departments_write_it(validator: Validator, catalog: Catalog,
                                                                           item: str, row: dict[str, Any], field: str,
                                                                           cell: str) -> None:
    c = check(validator, catalog, {**row, field: cell}, item)
    assert c.ok, c.problems
    assert value(c, field) == "2099-12-31"


@pytest.mark.parametrize(("written", "stored"), [("存续（在营、开业、在册）", "存续"), ("吊销，未注销", "吊销"),
                                                 ("吊销，已注销", "注销"), ("吊销,未注销", "吊销")])
def test_a_registration_status_as_the_enterprise_credit_publicity_system_writes_it(validator: Validator,
                                                                                   catalog: Catalog, written: str,
                                                                                   stored: str) -> None:
    row = registration(DJ_ZT=written, DJ_ZXRQ="" if stored == "存续" else "2024-06-30")
    c = check(validator, catalog, row, "registration")
    assert c.ok, c.problems
    assert value(c, "DJ_ZT") == stored


def test_a_value_alias_written_with_full_width_punctuation_matches_the_cell() -> None:
    # Cells are normalised (（ → (, ， → ,) before the lookup: an alias copied from a standard's
    # table with its full-width punctuation must be normalised too, or it never matches.
    doc = {"version": "t", "items": {"st": {
        "name": "状态事项", "category": "行政管理信息", "subject_kinds": ["legal_person"], "disclosure_class": "C",
        "disclosure": {"kind": "while_listed"}, "routing": {"rule_id": "st", "up_to": "city"},
        "subject": {"name_field": "S_MC", "code_fields": {"legal_person": "S_DM"}},
        "source_unit_field": "S_LYDM", "key_fields": ["@subject_code"],
        "fields": [{"code": "S_MC", "name": "名称", "type": "string", "required": True},
                   {"code": "S_DM", "name": "代码", "type": "uscc", "required": True},
                   {"code": "S_ZT", "name": "状态", "type": "enum", "enum": ["存续"],
                    "value_aliases": {"存续（在营、开业、在册）": "存续"}},
                   {"code": "S_LYDM", "name": "来源单位代码", "type": "uscc", "required": True}]}}}
    cat = parse_catalog([("t.yaml", doc)])
    c = Validator(cat, today=TODAY).check(cat.item("st"), {"S_MC": "甲", "S_DM": COMPANY, "S_LYDM": UNIT,
                                                            "S_ZT": "存续（在营、开业、在册）"})
    assert c.ok, c.problems
    assert value(c, "S_ZT") == "存续"


_KIND_FIELDS = {"admin_penalty": "CF_XDR_LB", "admin_license": "XK_XDR_LB", "registration": "DJ_ZTLB",
                "serious_dishonest_list": "SX_ZTLB", "red_list": "HM_ZTLB", "abnormal_operation": "YC_ZTLB",
                "admin_inspection": "JC_XDR_LB"}


@pytest.mark.parametrize("item", sorted(_KIND_FIELDS))
@pytest.mark.parametrize("written", ["法人和非法人组织", "法人及其他组织", "法人和其他组织", "非法人组织", "企业", "法人",
                                     "企业法人", "法人或非法人组织", "法人或其他组织", "其他组织"])
def test_an_organisation_is_one_whichever_items_column_names_its_kind(catalog: Catalog, item: str,
                                                                      written: str) -> None:
    # One spelling accepted for 行政处罚 and refused for 红名单 would return a department's rows for
    # a word the standard's own texts use (法人和其他组织 is GB 32100's title).
    spec = catalog.item(item).field(_KIND_FIELDS[item])
    canon = dict(spec.value_aliases).get(written, written)
    assert canon == "法人及非法人组织", (item, written)


@pytest.mark.parametrize("item", sorted(_KIND_FIELDS))
def test_a_business_written_as_individual_alone_is_an_individual_business(catalog: Catalog, item: str) -> None:
    spec = catalog.item(item).field(_KIND_FIELDS[item])
    assert dict(spec.value_aliases).get("个体") == "个体工商户", item


@pytest.mark.parametrize(("item", "row", "field", "cell", "stored"), [
    ("admin_penalty", penalty, "CF_CFLB", "罚款;其它-责令改正", "罚款;其他-责令改正"),
    ("admin_penalty", penalty, "CF_XDR_LB", "法人和其它组织", "法人及非法人组织"),
    ("admin_license", licence, "XK_XKLB", "其它", "其他"),
])
def test_a_category_written_with_the_variant_other_reads_as_the_catalogues(
        validator: Validator, catalog: Catalog, item: str, row: Any, field: str,
        cell: str, stored: str) -> None:
    # 其它 and 其他 are both written for "other"; departments' systems use either.
    c = check(validator, catalog, {**row(), field: cell}, item)
    assert c.ok, c.problems
    assert value(c, field) == stored


# --- Excel's text mark ('0571) -------------------------------------------------------------------
def test_excels_text_mark_before_a_code_a_date_an_amount_or_a_category_is_read_past(validator: Validator,
                                                                                    catalog: Catalog) -> None:
    # Typed so that the spreadsheet keeps the value as text, or written into a CSV cell by an export
    # that wants the same in Excel: never part of the value, so the row reads as it would without it.
    clean = check(validator, catalog, penalty())
    marked = check(validator, catalog, penalty(
        CF_XDR_SHXYM="'" + COMPANY, CF_CFJGDM="'" + UNIT, CF_SJLYDM="' " + UNIT, CF_XDR_LB="'法人及非法人组织",
        CF_CFLB="'罚款;没收违法所得", CF_NR_FK="'1", CF_NR_WFFF="＇0.05", CF_JDRQ="'20240301", CF_YXQ="'2025-03-01",
        CF_WSH="'杭上市监罚〔2024〕12号"))
    assert marked.ok, marked.problems
    assert marked.fields == clean.fields and marked.key == clean.key
    person = check(validator, catalog, person_penalty(CF_XDR_ZJHM="'" + PERSON, CF_XDR_ZJLX="'身份证"))
    assert person.ok, person.problems
    assert person.subject_code == PERSON
    fine = check(validator, catalog, penalty(CF_NR_FK="'0571", CF_CFLB="罚款", CF_NR="罚款571万元。"))
    assert value(fine, "CF_NR_FK") == "571"


def test_a_text_mark_stays_in_names_and_free_text(validator: Validator, catalog: Catalog) -> None:
    c = check(validator, catalog, penalty(CF_XDR_MC="'A' 餐饮店", BZ="'见附件'", CF_SY="'说明'：经查属实。"))
    assert c.ok, c.problems
    assert (value(c, "CF_XDR_MC"), value(c, "BZ"), value(c, "CF_SY")) == ("'A' 餐饮店", "'见附件'", "'说明'：经查属实。")


def test_a_cell_holding_only_the_text_mark_is_empty(validator: Validator, catalog: Catalog) -> None:
    c = check(validator, catalog, penalty(CF_GSJZQ="'", CF_JDRQ="'"))
    assert codes(c) == [("E_FIELD_REQUIRED", "CF_JDRQ")]
    assert value(c, "CF_GSJZQ") == ""


def test_a_marked_value_that_is_wrong_is_refused_as_without_the_mark(validator: Validator, catalog: Catalog) -> None:
    c = check(validator, catalog, penalty(CF_XDR_SHXYM="'" + COMPANY[:-1] + "0", CF_JDRQ="'2024-02-30"))
    assert codes(c) == [("E_USCC_CHECK", "CF_XDR_SHXYM"), ("E_FIELD_DATE", "CF_JDRQ")]
    assert [p.message.split(": ", 1)[1][:2] for p in c.problems] == ['"9', '"2']  # quoted without the mark


@pytest.mark.parametrize(("field", "cell"), [("CF_XDR_GSZC", "3.30102E+14"), ("CF_XDR_SWDJ", "3.30102E+14"),
                                             ("CF_WSH", "2.024E+11"), ("CF_XDR_GSZC", "'3.30102E+14")])
def test_a_code_a_csv_kept_in_scientific_notation_is_refused_not_stored(validator: Validator, catalog: Catalog,
                                                                       field: str, cell: str) -> None:
    # Excel shows a long number typed into a General cell as 3.30102E+14, and a CSV saved from it
    # keeps just that: the registration number's digits past the sixth are gone.
    c = check(validator, catalog, penalty(**{field: cell}))
    assert codes(c) == [("E_FIELD_TYPE", field)] and "scientific notation" in c.problems[0].message


def test_a_code_with_an_e_among_its_digits_is_still_a_code(validator: Validator, catalog: Catalog) -> None:
    c = check(validator, catalog, penalty(CF_XDR_SYDW="3E125", CF_WSH="杭上市监罚〔2024〕1E+2号"))
    assert c.ok, c.problems


@pytest.mark.parametrize(("code", "cell"), [("CF_WSH", datetime(2024, 1, 12)), ("CF_XDR_GSZC", date(2024, 1, 12)),
                                            ("CF_XDR_SWDJ", datetime(2024, 3, 1, 0, 0))])
def test_a_code_or_a_key_the_spreadsheet_turned_into_a_date_is_refused_not_stored_as_the_date(
        validator: Validator, catalog: Catalog, code: str, cell: object) -> None:
    # Excel turns what is typed like 1-12 or 2024-1-12 into a date; the workbook then holds a day,
    # and the code as typed is gone. Stored, "2024-01-12" would be the record's 文号 or registration number.
    c = check(validator, catalog, penalty(**{code: cell}))
    assert codes(c) == [("E_FIELD_TYPE", code)]
    assert "2024-" in c.problems[0].message and "text" in c.problems[0].message
    assert code not in dict(c.fields)


def test_a_date_in_a_name_or_free_text_is_still_read_as_its_day(validator: Validator, catalog: Catalog) -> None:
    c = check(validator, catalog, penalty(CF_SY=datetime(2024, 1, 12)))
    assert c.ok and value(c, "CF_SY") == "2024-01-12"


@pytest.mark.parametrize(("field", "cell"), [("CF_XDR_GSZC", "330102000012345.0"), ("CF_XDR_SWDJ", "330102000012345.00"),
                                             ("CF_WSH", "2024012.0")])
def test_a_code_a_program_wrote_as_a_decimal_number_is_refused_not_stored_with_its_point(
        validator: Validator, catalog: Catalog, field: str, cell: str) -> None:
    # A column of codes read as numbers and written out again (a database's FLOAT column, a script's
    # float) ends each in ".0"; stored so, the registration number is another one, and whatever
    # zeros it began with are already gone.
    c = check(validator, catalog, penalty(**{field: cell}))
    assert codes(c) == [("E_FIELD_TYPE", field)] and "as text" in c.problems[0].message
    assert field not in dict(c.fields)


def test_a_code_with_a_point_among_its_characters_is_still_a_code(validator: Validator, catalog: Catalog) -> None:
    c = check(validator, catalog, penalty(CF_XDR_SHZZ="51330100MJ0.01", CF_WSH="杭上市监罚〔2024〕12.0号"))
    assert c.ok, c.problems
