"""Personal information the law forbids a credit catalogue to collect [seed 003 篇2 第十二条, 篇5 第十五条].

Two kinds, found by keywords in a field's Chinese name, its header aliases and its code:

- **never**: religion, race/ethnicity, family origin, genes, fingerprints, blood type, diseases and
  medical history. Nothing makes such a field lawful.
- **consent**: income, deposits, securities, commercial insurance, real estate, tax amounts. Lawful
  only with the subject's written consent after being told the consequences; the catalogue says so
  with ``consent: written`` on the field.

The check applies to every item, legal persons' included: a field such as "法定代表人宗教信仰"
concerns a person even in an enterprise's record, and refusing is the safe failure of a keyword
rule (an author can rename a field; nobody can un-collect data).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final, NamedTuple

from node.errors import CatalogError, ProhibitedFieldError


class _Kind(NamedTuple):
    name: str
    chinese: tuple[str, ...]  # substrings of a Chinese name or alias
    words: tuple[str, ...]  # whole English words (tokens of a code or an English alias)
    word_pairs: tuple[tuple[str, str], ...] = ()  # two tokens that together name the kind


NEVER: Final = (
    _Kind("religion", ("宗教", "信仰"), ("RELIGION", "RELIGIOUS", "FAITH", "BELIEF", "BELIEFS")),
    _Kind("race or ethnicity", ("种族", "民族", "族别"), ("RACE", "ETHNIC", "ETHNICITY")),
    _Kind("family origin", ("家庭出身", "出身", "家族成分", "家庭成分"), ("CASTE",),
          (("FAMILY", "ORIGIN"), ("FAMILY", "BACKGROUND"))),
    _Kind("genes", ("基因", "DNA", "遗传"), ("GENE", "GENES", "GENETIC", "GENOME", "DNA")),
    _Kind("fingerprints", ("指纹",), ("FINGERPRINT", "FINGERPRINTS")),
    _Kind("blood type", ("血型",), ("BLOODTYPE", "BLOOD")),
    _Kind("diseases or medical history", ("疾病", "病史", "病历", "病情", "诊断", "患病"),
          ("DISEASE", "DISEASES", "ILLNESS", "MEDICAL", "DIAGNOSIS", "SICKNESS")),
)
CONSENT: Final = (
    _Kind("income", ("收入", "工资", "薪酬", "薪金", "年薪"), ("INCOME", "SALARY", "WAGE", "WAGES")),
    _Kind("deposits", ("存款", "储蓄"), ("DEPOSIT", "DEPOSITS", "SAVINGS")),
    _Kind("securities", ("有价证券", "证券账户", "持有证券", "股票账户", "持股"),
          ("SECURITIES", "STOCKS", "SHAREHOLDING")),
    _Kind("commercial insurance", ("商业保险", "保单", "人寿保险"), ("INSURANCE",)),
    _Kind("real estate", ("不动产", "房产", "房屋产权"), ("REALESTATE",),
          (("REAL", "ESTATE"),)),
    _Kind("tax amounts", ("纳税数额", "纳税额", "纳税金额", "缴税金额", "应纳税额", "个人所得税"),
          ("TAXAMOUNT",), (("TAX", "AMOUNT"), ("TAX", "PAID"))),
)

_CAMEL: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_WORD: Final = re.compile(r"[^A-Za-z0-9]+")


def _tokens(texts: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for t in texts:
        out.update(w.upper() for w in _NON_WORD.split(_CAMEL.sub("_", t)) if w)
    return out


def _matches(kind: _Kind, chinese_texts: tuple[str, ...], tokens: set[str]) -> str:
    """The keyword of ``kind`` found, or ''."""
    for kw in kind.chinese:
        if any(kw in t for t in chinese_texts):
            return kw
    for w in kind.words:
        if w in tokens:
            return w.lower()
    for a, b in kind.word_pairs:
        if a in tokens and b in tokens:
            return f"{a} {b}".lower()
    return ""


def check_field(item: str, code: str, name: str, aliases: tuple[str, ...], consent: str) -> None:
    """Raise :class:`ProhibitedFieldError` if this field of ``item`` names forbidden information."""
    texts = (name.upper(), *(a.upper() for a in aliases))
    tokens = _tokens((code, name, *aliases))
    where = f"item {item}: field {code} ({name})"
    for kind in NEVER:
        kw = _matches(kind, texts, tokens)
        if kw:
            raise ProhibitedFieldError(
                f"{where} collects {kind.name} (keyword {kw!r}); the law forbids collecting it"
                + (", even with consent" if consent else ""), field=code)
    for kind in CONSENT:
        kw = _matches(kind, texts, tokens)
        if kw and consent != "written":
            raise ProhibitedFieldError(
                f"{where} collects {kind.name} (keyword {kw!r}); lawful only with the subject's "
                "written consent: mark the field `consent: written` if that is how it is collected",
                field=code)
        if kw:
            return
    if consent:
        raise CatalogError(f"{where}: `consent` applies only to income, deposit, securities, "
                           "insurance, real-estate and tax-amount fields", field=code)
