"""node/records.py: digests that stored records depend on must never change."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from node.records import content_digest, make_record_id

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x1e\x1f"), max_size=30)


@given(item=_text, unit=_text, fields=st.lists(st.tuples(_text, _text), max_size=20))
def test_content_digest_is_the_documented_joined_text(item: str, unit: str, fields: list[tuple[str, str]]) -> None:
    # Stored heads hold these digests: a re-report is recognised only if the function never changes.
    text = "\x1e".join([item, unit, *[f"{name}\x1f{value}" for name, value in fields]])
    assert content_digest(item, unit, fields) == hashlib.sha256(text.encode()).digest()


def test_record_id_of_a_known_fact_is_stable() -> None:
    expected = hashlib.sha256("admin_penalty\x1f11330102MB0000019G\x1f杭上市监罚〔2024〕1号".encode()).hexdigest()
    assert make_record_id("admin_penalty", "11330102MB0000019G", "杭上市监罚〔2024〕1号") == f"admin_penalty-{expected[:24]}"
