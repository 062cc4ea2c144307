"""Numbers of 外国人永久居留身份证 and 港澳台居民居住证 (node/documents.py)."""

from __future__ import annotations

from datetime import date

import pytest

from node.documents import check_permanent_residence_number, check_residence_permit_number
from node.identifiers import id_check_char, make_id_number

ID_EXAMPLE = "11010519491231002X"  # GB 11643-1999's worked example


# --- 外国人永久居留身份证 ------------------------------------------------------------------------------
# The 2023 card: 9, province (2), nationality (3), birth date (8), sequence (3), GB 11643 check digit.
_FOREIGN_17 = "9" + "11" + "250" + "19760229" + "017"


def test_2023_permanent_residence_number_is_checked_as_a_gb11643_number() -> None:
    number = _FOREIGN_17 + id_check_char(_FOREIGN_17)
    assert check_permanent_residence_number(number) is None
    wrong = number[:17] + ("0" if number[17] != "0" else "1")
    problem = check_permanent_residence_number(wrong, field="ZJHM")
    assert problem is not None and (problem.code, problem.field) == ("E_ID_CHECK", "ZJHM")
    assert number[4:14] not in problem.message


def test_2023_permanent_residence_number_without_a_real_birth_date_is_refused() -> None:
    first17 = _FOREIGN_17.replace("19760229", "19770229")
    problem = check_permanent_residence_number(first17 + id_check_char(first17))
    assert problem is not None and problem.code == "E_ID_BIRTHDATE"


def test_earlier_permanent_residence_number_is_accepted_by_its_shape() -> None:
    assert check_permanent_residence_number("CAN440076053012") is None


@pytest.mark.parametrize("value", ["110105194912310021", "E12345678", "CA4400760530121", "9112501976022901"])
def test_number_of_no_permanent_residence_card_is_a_format_error(value: str) -> None:
    problem = check_permanent_residence_number(value, label="证件号码")
    assert problem is not None and problem.code == "E_ID_FORMAT"
    assert "外国人永久居留身份证" in problem.message and "starting with 9" in problem.message


@pytest.mark.parametrize("division", ["810000", "820000", "830000"])
def test_residence_permit_number_is_checked_as_a_gb11643_number(division: str) -> None:
    number = make_id_number(division, date(1984, 2, 29), "020")
    assert check_residence_permit_number(number) is None
    wrong = number[:17] + ("0" if number[17] != "0" else "1")
    problem = check_residence_permit_number(wrong)
    assert problem is not None and problem.code == "E_ID_CHECK"


def test_residence_permit_number_with_a_mainland_address_code_is_a_format_error() -> None:
    problem = check_residence_permit_number(ID_EXAMPLE, label="证件号码")
    assert problem is not None and problem.code == "E_ID_FORMAT"
    assert "港澳台居民居住证" in problem.message and ID_EXAMPLE[4:14] not in problem.message
