"""node/records.py: digests that stored records depend on must never change."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from node.records import FieldsWriter, content_digest, make_record_id, pb

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x1e\x1f"), max_size=30)


@given(item=_text, unit=_text, fields=st.lists(st.tuples(_text, _text), max_size=20))
def test_content_digest_is_the_documented_joined_text(item: str, unit: str, fields: list[tuple[str, str]]) -> None:
    # Stored heads hold these digests: a re-report is recognised only if the function never changes.
    text = "\x1e".join([item, unit, *[f"{name}\x1f{value}" for name, value in fields]])
    assert content_digest(item, unit, fields) == hashlib.sha256(text.encode()).digest()


def test_record_id_of_a_known_fact_is_stable() -> None:
    expected = hashlib.sha256("admin_penalty\x1f11330102MB0000019G\x1f杭上市监罚〔2024〕1号".encode()).hexdigest()
    assert make_record_id("admin_penalty", "11330102MB0000019G", "杭上市监罚〔2024〕1号") == f"admin_penalty-{expected[:24]}"


_any_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)


@given(fields=st.lists(st.tuples(_any_text, _any_text), max_size=40), date=_any_text, name=_any_text,
       now=st.integers(min_value=0, max_value=2**62))
def test_fields_written_out_give_the_bytes_protobuf_would(fields: list[tuple[str, str]], date: str, name: str,
                                                          now: int) -> None:
    # Bodies are signed as bytes: the import path's hand-written fields must be exactly what the
    # serialiser writes, or a body rebuilt from its message would not match its signature.
    whole = pb.RecordBody(record_id="r", revision=1, item="admin_penalty", subject_name=name, reported_at_ms=now,
                          status="active", decision_date=date,
                          fields=[pb.Field(name=n, value=v) for n, v in fields]).SerializeToString()
    head = pb.RecordBody(record_id="r", revision=1, item="admin_penalty", subject_name=name).SerializeToString()
    tail = pb.RecordBody(reported_at_ms=now, status="active", decision_date=date).SerializeToString()
    writer = FieldsWriter()
    assert head + writer.encode(fields) + tail == whole
    assert head + writer.encode(fields) + tail == whole  # and again, from the writer's remembered names


def test_a_long_value_takes_a_multi_byte_length() -> None:
    fields = [("CF_WFSS", "违" * 6000), ("CF_JG", "x" * 200)]
    whole = pb.RecordBody(fields=[pb.Field(name=n, value=v) for n, v in fields]).SerializeToString()
    assert FieldsWriter().encode(fields) == whole
