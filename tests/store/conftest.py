"""Record rows for store tests: real RecordBody bytes, so digests are what ingest would store."""

from __future__ import annotations

import pytest

from node.records import body_digest, content_digest, pb
from node.store import RecordRow


def make_row(record_id: str, revision: int = 1, *, value: str = "v", subject: str = "91330100MA0000001X",
             item: str = "admin_penalty", status: str = "active", received_at_ms: int = 1_700_000_000_000,
             decision_date: str = "2024-01-02") -> RecordRow:
    """A revision whose body (and so its digest) changes with ``value``."""
    fields = [("CF_WSH", f"{record_id}/{value}"), ("CF_NR", value * 3)]
    body = pb.RecordBody(
        record_id=record_id, revision=revision, item=item, catalog_version="2024.1", subject_code=subject,
        subject_kind="legal_person", subject_name="测试公司", source_unit="11330100002482975K",
        origin_node="dept:330100:scjgj", fields=[pb.Field(name=n, value=v) for n, v in fields],
        reported_at_ms=received_at_ms, status=status, decision_date=decision_date,
    ).SerializeToString()
    signed = pb.SignedRecord(body=body, chain=[pb.Signature(kind=pb.ORIGIN, signer="dept:330100:scjgj")])
    return RecordRow(
        record_id=record_id, revision=revision, item=item, subject_code=subject, subject_kind="legal_person",
        source_unit="11330100002482975K", origin_node="dept:330100:scjgj", status=status,
        decision_date=decision_date, body=body, body_digest=body_digest(body),
        content_digest=content_digest(item, "11330100002482975K", fields), signed=signed.SerializeToString(),
        received_at_ms=received_at_ms, received_from="", catalog_version="2024.1",
    )


@pytest.fixture(name="make_row")
def make_row_fixture() -> object:
    return make_row
