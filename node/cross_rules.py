"""Cross rules (checks over several fields of one record, ``Item.cross_rules``) as compiled tests.

Each kind (:data:`node.catalog_model.CROSS_RULE_KINDS`, documented in docs/catalogue.md) becomes
one function of the row's values and of the fields that failed their own checks; the validator runs
them after the fields are read. A new kind of rule is a branch here and its arity and field types
in ``node.catalog_schema``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import TypeAlias

from node.catalog import CrossRule
from node.identifiers import USCC_STAND_IN

__all__ = ["FailureTest", "failure_test"]

FailureTest: TypeAlias = Callable[[dict[str, str], set[str]], bool]


def failure_test(rule: CrossRule) -> FailureTest:
    """The test of ``rule`` that says it failed; a field that failed its own check counts as present."""
    f = rule.fields
    if rule.kind == "not_before":
        a, b = f

        def not_before(values: dict[str, str], invalid: set[str]) -> bool:
            return a in values and b in values and values[a] < values[b]  # ISO dates order as strings

        return not_before
    if rule.kind == "positive":
        (x,) = f

        def positive(values: dict[str, str], invalid: set[str]) -> bool:
            v = values.get(x)  # canonical decimals: zero is "0", negatives start with "-"
            return x not in invalid and (v is None or v == "0" or v[0] == "-")

        return positive
    if rule.kind == "amount_in_text":
        amount, text = f
        stated_at = re.compile(re.escape(rule.word) + r"(?:人民币)?\s*([0-9][0-9,]*(?:\.[0-9]+)?)\s*(万元|元)")

        def amount_in_text(values: dict[str, str], invalid: set[str]) -> bool:
            v, t = values.get(amount, ""), values.get(text, "")
            if not v or not t or amount in invalid:
                return False
            stated = {Decimal(n.replace(",", "")) / (1 if unit == "万元" else 10_000) for n, unit in stated_at.findall(t)}
            return bool(stated) and Decimal(v) not in stated and Decimal(v) / 10_000 in stated

        return amount_in_text
    if rule.kind == "org_code_of":
        org, uscc = f

        def org_code_of(values: dict[str, str], invalid: set[str]) -> bool:
            o, u = values.get(org, ""), values.get(uscc, "")
            return (bool(o and u) and org not in invalid and uscc not in invalid and u != USCC_STAND_IN
                    and o.replace("-", "") != u[8:17])

        return org_code_of
    least = rule.kind == "at_least_one"

    def count(values: dict[str, str], invalid: set[str]) -> bool:
        n = 0
        for x in f:
            if x in values or x in invalid:
                n += 1
        return n == 0 if least else 0 < n < len(f)

    return count
