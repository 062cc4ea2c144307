"""Numbers of the identity documents besides the resident ID card that 证件类型 names for a natural
person or a legal representative: 外国人永久居留身份证 and 港澳台居民居住证.

Both are laid out as a GB 11643 number (:func:`node.identifiers.check_gb11643`), with their own first
positions. The others a 双公示 file names (护照, 港澳居民来往内地通行证, 台湾居民来往大陆通行证) have
no published check and are taken as written. Problems use the ``E_ID_`` codes of
:mod:`node.identifiers`.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Final

from node.errors import Problem
from node.identifiers import check_gb11643, check_id_number, mask_id_number

__all__ = ["check_permanent_residence_number", "check_residence_permit_number"]


# 外国人永久居留身份证 (Foreign Permanent Resident ID Card): the card issued from 2023-12 has an
# 18-character number laid out as a resident ID number, 9 (foreigner), the province (2), the
# nationality (3), the birth date (8), a sequence (3) and a GB 11643 check digit, so it gets that
# check in full. Earlier cards, valid for ten years, carry 3 letters (nationality) and 12 digits
# with no published check digit: only their shape can be checked.
_FOREIGN_EARLIER_RE: Final = re.compile(r"[A-Z]{3}[0-9]{12}")
_FOREIGN_SHAPES: Final = ("a 外国人永久居留身份证 number is 18 characters starting with 9 (cards from 2023), or 3 letters "
                          "and 12 digits (earlier cards)")


def check_permanent_residence_number(value: str, *, field: str = "", label: str = "外国人永久居留身份证号码",
                                     today: date | None = None) -> Problem | None:
    """``None`` if ``value`` (upper-cased, no spaces) is a 外国人永久居留身份证 number, else the problem."""
    if len(value) == 18 and value[0] == "9":
        return check_gb11643(value, field, f"{label} (外国人永久居留身份证)", today)
    if _FOREIGN_EARLIER_RE.fullmatch(value):
        return None
    return Problem("E_ID_FORMAT", field, f'{label}: "{mask_id_number(value)}" is no such number: {_FOREIGN_SHAPES}')


# 港澳台居民居住证 (residence permit of Hong Kong, Macao and Taiwan residents): a GB 11643 number
# whose address code is always the region's, 810000, 820000 or 830000. Another address code is a
# mainland resident's number reported under the wrong 证件类型.
_RESIDENCE_PERMIT_AREAS: Final = ("810000", "820000", "830000")


def check_residence_permit_number(value: str, *, field: str = "", label: str = "港澳台居民居住证号码",
                                  today: date | None = None) -> Problem | None:
    """``None`` if ``value`` is a 港澳台居民居住证 number, else the problem."""
    problem = check_id_number(value, field=field, label=label, today=today)
    if problem is None and value[:6] not in _RESIDENCE_PERMIT_AREAS:
        return Problem("E_ID_FORMAT", field, f'{label}: "{mask_id_number(value)}" is no 港澳台居民居住证 number, whose '
                       "positions 1-6 are 810000 (Hong Kong), 820000 (Macao) or 830000 (Taiwan): a mainland "
                       "resident's number is reported as 身份证")
    return problem
