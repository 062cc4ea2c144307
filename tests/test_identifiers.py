"""USCC (GB 32100-2015), resident ID number (GB 11643-1999), masking and text normalisation."""

from __future__ import annotations

from datetime import date

import pytest

from node.identifiers import (
    USCC_ALPHABET,
    canonical_org_code,
    check_id_number,
    check_org_code,
    check_uscc,
    id15_to_id18,
    id_check_char,
    is_valid_id_number,
    is_valid_uscc,
    make_id_number,
    make_uscc,
    mask_id_number,
    normalize_text,
    org_check_char,
    uscc_check_char,
)

STANDARD_EXAMPLE = "91350100M000100Y43"  # GB 32100-2015's worked example
ID_EXAMPLE = "11010519491231002X"  # GB 11643-1999's worked example


def _code(value: str, **kw: object) -> str:
    p = check_uscc(value, **kw)  # type: ignore[arg-type]
    return "" if p is None else p.code


# --- USCC -----------------------------------------------------------------------------------------
def test_uscc_standard_worked_example_is_valid() -> None:
    assert check_uscc(STANDARD_EXAMPLE) is None
    assert is_valid_uscc(STANDARD_EXAMPLE)


def test_uscc_standard_counter_example_is_refused() -> None:
    p = check_uscc("91350100M000100Y4Z")
    assert p is not None and not p.warning
    assert p.code == "E_USCC_FORMAT"  # Z is outside the alphabet


def test_uscc_check_characters_match_the_standard() -> None:
    assert org_check_char("M000100Y") == "4"
    assert uscc_check_char("91350100M000100Y4") == "3"


def test_uscc_pos18_weights_are_powers_of_three_mod_31() -> None:
    # 1 3 9 27 19 26 16 17 20 29 25 13 8 24 10 30 28, as DOMAIN.md §2 lists them.
    weights = []
    for i in range(17):
        probe = ["0"] * 17
        probe[i] = "1"
        weights.append((31 - USCC_ALPHABET.index(uscc_check_char("".join(probe)))) % 31)
    assert weights == [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]


def test_uscc_with_one_wrong_character_fails_the_pos18_check() -> None:
    wrong = STANDARD_EXAMPLE[:3] + "6" + STANDARD_EXAMPLE[4:]  # division 350100 → 360100
    assert _code(wrong) == "E_USCC_CHECK"


def test_uscc_with_wrong_check_character_is_refused() -> None:
    assert _code(STANDARD_EXAMPLE[:17] + "4") == "E_USCC_CHECK"


def test_uscc_passing_pos18_but_failing_inner_check_is_refused() -> None:
    first17 = "91350100M000100Y" + "5"  # the inner GB 11714 check of M000100Y is 4, not 5
    fabricated = first17 + uscc_check_char(first17)
    p = check_uscc(fabricated)
    assert p is not None and p.code == "E_USCC_ORG_CHECK"
    assert "organisation-code check" in p.message


@pytest.mark.parametrize("letter", ["I", "O", "Z", "S", "V"])
def test_uscc_with_a_letter_the_standard_excludes_is_a_format_error(letter: str) -> None:
    p = check_uscc(STANDARD_EXAMPLE[:10] + letter + STANDARD_EXAMPLE[11:])
    assert p is not None and p.code == "E_USCC_FORMAT"
    assert repr(letter) in p.message


@pytest.mark.parametrize("value", ["", "91350100M000100Y4", "91350100M000100Y433", "91350100m000100y43",
                                   "9135 0100M000100Y43"])
def test_uscc_of_wrong_length_or_case_or_with_spaces_is_a_format_error(value: str) -> None:
    # Upper-casing and removing spaces is normalisation (the validator's job), not the check's.
    assert _code(value) == "E_USCC_FORMAT"


def test_uscc_on_the_allow_list_is_accepted_with_a_warning() -> None:
    early = STANDARD_EXAMPLE[:17] + "0"  # fails pos 18, as the 2015 Fujian pilot codes do
    p = check_uscc(early, field="CF_XDR_SHXYM", allowlist=frozenset({early}))
    assert p is not None and p.warning and p.code == "W_USCC_ALLOWLISTED"
    assert p.field == "CF_XDR_SHXYM" and early in p.message


def test_uscc_allow_list_does_not_excuse_a_format_error() -> None:
    bad = "91350100M000100Y4Z"
    assert _code(bad, allowlist=frozenset({bad})) == "E_USCC_FORMAT"


def test_uscc_problem_names_field_and_label() -> None:
    p = check_uscc(STANDARD_EXAMPLE[:17] + "4", field="CF_CFJGDM", label="处罚机关统一社会信用代码 (CF_CFJGDM)")
    assert p is not None and p.field == "CF_CFJGDM"
    assert p.message.startswith("处罚机关统一社会信用代码 (CF_CFJGDM): ")


def test_make_uscc_computes_both_check_characters() -> None:
    assert make_uscc("9", "1", "350100", "M000100Y") == STANDARD_EXAMPLE
    for body in ("00000001", "ABCDEFGH", "12345678", "XY000000"):
        assert is_valid_uscc(make_uscc("1", "1", "330102", body))


def test_make_uscc_refuses_wrong_part_lengths_and_letters() -> None:
    with pytest.raises(ValueError):
        make_uscc("9", "1", "350100", "M000100Y4")  # the body is 8 characters, without its check
    with pytest.raises(ValueError):
        make_uscc("9", "1", "350100", "M00010OY")


def test_org_check_ten_is_x_and_eleven_is_zero() -> None:
    bodies = {org_check_char(f"{n:08d}") for n in range(0, 400)}
    assert {"X", "0"} <= bodies


@pytest.mark.parametrize("code", ["D2143569-X", "M000100Y-4"])  # GB 11714's example; the one inside GB 32100's
def test_organisation_codes_of_the_standards_are_valid(code: str) -> None:
    assert check_org_code(code) is None
    assert canonical_org_code(code.replace("-", "")) == code


@pytest.mark.parametrize(("code", "problem"), [("D2143569-0", "E_ORG_CHECK"), ("12345678-0", "E_ORG_CHECK"),
                                               ("D2143569X-", "E_ORG_FORMAT"), ("D214356-9X", "E_ORG_FORMAT"),
                                               ("D2143569-A", "E_ORG_FORMAT"), ("2501234", "E_ORG_FORMAT")])
def test_organisation_codes_with_a_wrong_check_or_shape_are_refused(code: str, problem: str) -> None:
    p = check_org_code(code, field="CF_XDR_ZZJG")
    assert p is not None and (p.code, p.field) == (problem, "CF_XDR_ZZJG")


def test_an_organisation_code_that_lost_its_leading_zeros_says_so() -> None:
    p = check_org_code("2501234")
    assert p is not None and "leading zeros" in p.message


# --- resident ID number ---------------------------------------------------------------------------
def test_id_number_standard_worked_example_is_valid() -> None:
    assert check_id_number(ID_EXAMPLE) is None
    assert id_check_char(ID_EXAMPLE[:17]) == "X"


def test_id_number_with_wrong_check_digit_is_refused() -> None:
    p = check_id_number(ID_EXAMPLE[:17] + "1")
    assert p is not None and p.code == "E_ID_CHECK"


def test_id_number_problem_message_masks_the_number() -> None:
    p = check_id_number(ID_EXAMPLE[:17] + "1", label="证件号码 (CF_XDR_ZJHM)")
    assert p is not None and ID_EXAMPLE[:17] not in p.message and "1101**********0021" in p.message


@pytest.mark.parametrize("birth", ["19490230", "19491301", "19490000", "18991231"])
def test_id_number_without_a_real_birth_date_is_refused(birth: str) -> None:
    first17 = f"110105{birth}002"
    p = check_id_number(first17 + id_check_char(first17))
    assert p is not None and p.code == "E_ID_BIRTHDATE"


def test_id_number_born_in_the_future_is_refused() -> None:
    future = make_id_number("110105", date(2030, 1, 1), "002")
    assert check_id_number(future, today=date(2026, 11, 22)) is not None
    assert check_id_number(future, today=date(2031, 1, 1)) is None


@pytest.mark.parametrize("value", ["", "1101051949123100", "11010519491231002Y", "110105194912310021X"])
def test_id_number_of_wrong_shape_is_a_format_error(value: str) -> None:
    p = check_id_number(value)
    assert p is not None and p.code == "E_ID_FORMAT"


def test_fifteen_digit_legacy_id_is_refused_with_a_hint() -> None:
    p = check_id_number("110105491231002")
    assert p is not None and p.code == "E_ID_FORMAT" and "15-digit" in p.message


def test_fifteen_digit_legacy_id_converts_to_eighteen() -> None:
    assert id15_to_id18("110105491231002") == ID_EXAMPLE


def test_make_id_number_builds_valid_numbers() -> None:
    assert make_id_number("110105", date(1949, 12, 31), "002") == ID_EXAMPLE
    assert is_valid_id_number(make_id_number("330102", date(2000, 2, 29), "131"))


@pytest.mark.parametrize("province", ["00", "10", "19", "20", "47", "55", "70", "80", "90", "99"])
def test_id_number_issued_in_no_province_is_refused(province: str) -> None:
    # Positions 1-2 are the province of the issuing address (GB/T 2260): a number outside every
    # province passing its check digit was computed, not issued.
    problem = check_id_number(make_id_number(province + "0105", date(1980, 1, 1), "123"), field="ZJHM")
    assert problem is not None and (problem.code, problem.field) == ("E_ID_FORMAT", "ZJHM")
    assert f'"{province}"' in problem.message and "GB/T 2260" in problem.message


@pytest.mark.parametrize("province", ["11", "15", "21", "23", "31", "37", "41", "46", "50", "54", "61", "65", "71",
                                      "81", "82", "83"])
def test_id_number_of_every_province_and_region_is_accepted(province: str) -> None:
    assert check_id_number(make_id_number(province + "0000", date(1980, 1, 1), "123")) is None


# --- masking --------------------------------------------------------------------------------------
def test_mask_id_number_keeps_four_characters_each_end() -> None:
    assert mask_id_number(ID_EXAMPLE) == "1101**********002X"


def test_mask_short_numbers_proportionally() -> None:
    assert mask_id_number("E12345678") == "E1*****78"
    assert mask_id_number("123") == "***"


# --- text -----------------------------------------------------------------------------------------
def test_normalize_text_folds_full_width_digits_letters_and_space() -> None:
    assert normalize_text("ＡＢＣ１２３\u3000ｘｙｚ") == "ABC123 xyz"


def test_normalize_text_folds_full_width_punctuation_in_names() -> None:
    assert normalize_text("杭州某某（集团）有限公司") == "杭州某某(集团)有限公司"


def test_normalize_text_removes_bom_and_zero_width_characters() -> None:
    assert normalize_text("\ufeff91350100\u200bM000100Y43\u200d") == STANDARD_EXAMPLE


def test_normalize_text_strips_and_collapses_whitespace_runs() -> None:
    assert normalize_text("  某某  公司\t\n分店 ") == "某某 公司 分店"


def test_normalize_text_leaves_clean_text_alone() -> None:
    assert normalize_text("杭上市监罚〔2024〕1号") == "杭上市监罚〔2024〕1号"


def test_normalize_prose_keeps_chinese_punctuation_and_line_breaks() -> None:
    assert normalize_text(" 经查，当事人于２０２４年\r\n销售（过期）食品。 ", prose=True) == \
        "经查，当事人于2024年\n销售（过期）食品。"


@pytest.mark.parametrize("raw, plain, prose", [
    ("杭上市监罚〔2026〕1号\x00", "杭上市监罚〔2026〕1号", "杭上市监罚〔2026〕1号"),
    ("杭州\x07测试\x1b公司", "杭州测试公司", "杭州测试公司"),
    ("abc\x7f\x9b", "abc", "abc"),
    ("第一行\n第二\t行\x00", "第一行 第二 行", "第一行\n第二\t行"),
    ("x\x1ey\x1fz", "x y z", "x y z"),  # the separators content digests join with never survive
])
def test_control_characters_are_not_text(raw: str, plain: str, prose: str) -> None:
    assert normalize_text(raw) == plain
    assert normalize_text(raw, prose=True) == prose


def test_a_birth_date_that_is_today_in_beijing_is_real_while_utc_is_still_on_the_day_before(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime as dt

    import node.identifiers as identifiers

    class EarlyMorningInBeijing(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> EarlyMorningInBeijing:  # type: ignore[override]
            utc = cls(2026, 12, 7, 23, 30, tzinfo=dt.UTC)  # 07:30 on 12-08 in Beijing
            return utc.astimezone(tz) if tz else utc.replace(tzinfo=None)  # type: ignore[return-value]

    monkeypatch.setattr(identifiers, "datetime", EarlyMorningInBeijing)
    born_today = identifiers.make_id_number("330102", date(2026, 12, 8), "001")
    assert identifiers.check_id_number(born_today) is None
    born_tomorrow = identifiers.make_id_number("330102", date(2026, 12, 9), "001")
    assert identifiers.check_id_number(born_tomorrow).code == "E_ID_BIRTHDATE"  # type: ignore[union-attr]


@pytest.mark.parametrize(("check", "value"), [(check_id_number, "3.30102E+17"), (check_uscc, "9.13301E+17"),
                                              (check_id_number, "1.1E17")])
def test_a_number_a_spreadsheet_wrote_in_scientific_notation_is_named_so(check, value: str):
    p = check(value)
    assert p is not None and p.code.endswith("_FORMAT") and "scientific notation" in p.message


# --- USCC structure (GB 32100-2015 and its amendment): checked against an implementation written
# here from the standard's text, not with the module's own functions.
_GB32100_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
# 登记管理部门码 → its 机构类别码 (1 机构编制, 2 外交, 3 司法行政, 4 文化, 5 民政, 6 旅游, 7 宗教, 8 工会,
# 9 市场监管/工商, A 中央军委改革和编制办公室, N 农业, Y 其他).
_GB32100_KINDS = {"1": "1239", "2": "19", "3": "123459", "4": "19", "5": "1239", "6": "129", "7": "129",
                  "8": "19", "9": "123", "A": "19", "N": "1239", "Y": "1"}


def _gb11714(body: str) -> str:
    total = sum((int(c) if c.isdigit() else ord(c) - ord("A") + 10) * w
                for c, w in zip(body, (3, 7, 9, 10, 5, 8, 4, 2), strict=True))
    c = 11 - total % 11
    return "X" if c == 10 else "0" if c == 11 else str(c)


def _gb32100(first16: str) -> str:
    first17 = first16 + _gb11714(first16[8:16])
    total = sum(_GB32100_ALPHABET.index(c) * pow(3, i, 31) for i, c in enumerate(first17))
    return first17 + _GB32100_ALPHABET[(31 - total % 31) % 31]


def test_the_independent_implementation_gives_the_standards_example() -> None:
    assert _gb32100("91350100M000100Y") == STANDARD_EXAMPLE


@pytest.mark.parametrize("kind", [a + k for a, ks in _GB32100_KINDS.items() for k in ks])
def test_every_authority_and_category_the_standard_defines_is_valid(kind: str) -> None:
    for body in ("MA2K3L4P", "00000001", "L1234567"):
        code = _gb32100(f"{kind}330102{body}")
        assert check_uscc(code) is None, code


@pytest.mark.parametrize(("kind", "position"), [("01", "position 1"), ("B1", "position 1"), ("X1", "position 1"),
                                                ("94", "position 2"), ("1A", "position 2"), ("Y2", "position 2"),
                                                ("50", "position 2"), ("N4", "position 2")])
def test_an_authority_or_category_the_standard_does_not_define_is_a_format_error(kind: str, position: str) -> None:
    # Both check characters are right: such a code was computed, never issued.
    code = _gb32100(f"{kind}330102MA2K3L4P")
    p = check_uscc(code, field="CF_XDR_SHXYM", label="统一社会信用代码 (CF_XDR_SHXYM)")
    assert p is not None and (p.code, p.field, p.warning) == ("E_USCC_FORMAT", "CF_XDR_SHXYM", False)
    assert p.message.startswith("统一社会信用代码 (CF_XDR_SHXYM): ") and position in p.message


@pytest.mark.parametrize("division", ["33AB02", "3301K2", "HJ0102"])
def test_a_division_code_with_letters_is_a_format_error(division: str) -> None:
    p = check_uscc(_gb32100(f"91{division}MA2K3L4P"))
    assert p is not None and p.code == "E_USCC_FORMAT" and "positions 3-8" in p.message


def test_the_allow_list_can_admit_a_category_added_after_this_table() -> None:
    # An amendment may add a category; an operator who lists that exact code accepts it, with a warning.
    code = _gb32100("94330102MA2K3L4P")
    p = check_uscc(code, allowlist=frozenset({code}))
    assert p is not None and p.warning and p.code == "W_USCC_ALLOWLISTED"
    letters = _gb32100("9133AB02MA2K3L4P")
    assert _code(letters, allowlist=frozenset({letters})) == "E_USCC_FORMAT"


def _gb11643(first17: str) -> str:
    total = sum(int(c) * w for c, w in zip(first17, (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2), strict=True))
    return first17 + "10X98765432"[total % 11]


@pytest.mark.parametrize("first17", ["11010519491231002", "33010220000229123", "33010219960229004",
                                     # 港澳台居民居住证 numbers follow GB 11643 with division 810000/820000/830000
                                     "81000019900101000", "82000019851231011", "83000019700615002"])
def test_id_numbers_with_a_check_computed_from_the_standard_are_valid(first17: str) -> None:
    assert check_id_number(_gb11643(first17), today=date(2026, 11, 22)) is None


@pytest.mark.parametrize("first17", ["33010219000229123", "33010221000229123", "33010220230229123"])
def test_a_29_february_of_a_year_without_one_is_no_birth_date(first17: str) -> None:
    p = check_id_number(_gb11643(first17), today=date(2026, 11, 22))
    assert p is not None and p.code == "E_ID_BIRTHDATE"


def test_uscc_problem_quotes_a_persons_id_number_masked() -> None:
    # A 自然人's 证件号码 typed into the USCC column: the refusal is kept, listed, logged and sent
    # back, so it must not write the person's number out.
    for value in (ID_EXAMPLE, "110105194912310021", "110105491231002"):  # valid, bad check, 15 digits
        p = check_uscc(value, field="CF_XDR_SHXYM")
        assert p is not None
        assert "19491231" not in p.message and "491231" not in p.message, p.message
    p = check_uscc(ID_EXAMPLE)
    assert p is not None and '"1101**********002X"' in p.message


def test_uscc_problem_quotes_a_mistyped_code_in_full() -> None:
    p = check_uscc("91350100M000100Y4Z")
    assert p is not None and '"91350100M000100Y4Z"' in p.message
