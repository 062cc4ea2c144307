"""What a portal sends the Lifecycle service that no case or record can hold: control characters
and NUL in ids and evidence names, revisions out of range. Answered as what they are (no such
record or case) on SQLite and PostgreSQL alike, never as a store outage the portal would retry."""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterator

import grpc
import pytest

from node.records import pb

from .conftest import DEADLINE_S, Running
from .nodes import Pki
from .test_lifecycle_service import GOV, Portal, _portal, refused


@pytest.fixture
def portal_on(serve: Callable[..., Running], pki: Pki, tmp_path: pathlib.Path, db_url: str) -> Iterator[Portal]:
    with _portal(serve(lifecycle={"portals": [GOV]}, store={"url": db_url}), pki, tmp_path / "certs") as made:
        yield made


@pytest.mark.parametrize("record_id", ["admin_penalty-\x00", "admin_penalty-0\n1", "x" * 5000])
def test_a_record_id_no_record_can_have_is_an_unknown_record(portal_on: Portal, record_id: str) -> None:
    subject = portal_on.subjects[0]
    request = pb.FileObjectionRequest(record_id=record_id, reason="有误")
    assert refused(lambda: portal_on.own(subject).FileObjection(request, timeout=DEADLINE_S)) == (
        grpc.StatusCode.NOT_FOUND, "E_NOT_FOUND")


@pytest.mark.parametrize("case_id", ["{rid}\x00@2", "{rid}@2\x00", "{rid}@²", "{rid}@99999999999999999999",
                                     "{rid}@1000000001"])
def test_a_case_id_no_case_can_have_is_an_unknown_case(portal_on: Portal, case_id: str) -> None:
    subject = portal_on.subjects[0]
    case_id = case_id.format(rid=portal_on.records[subject])
    for call in (lambda: portal_on.own(subject).GetObjection(pb.GetObjectionRequest(case_id=case_id),
                                                             timeout=DEADLINE_S),
                 lambda: portal_on.own(subject).AttachStatement(pb.AttachStatementRequest(case_id=case_id, text="说明"),
                                                                timeout=DEADLINE_S)):
        status, code = refused(call)
        assert code == "E_OBJECTION_UNKNOWN" and status in (grpc.StatusCode.NOT_FOUND,
                                                            grpc.StatusCode.INVALID_ARGUMENT)


@pytest.mark.parametrize(("sent", "kept"), [("决定书\x00.pdf", "决定书.pdf"), ("a\nb\r\x1b[31m.pdf", "a b [31m.pdf"),
                                            ("..", "evidence"), ("../../etc/passwd", "passwd"),
                                            ("C:\\证据\\..", "evidence"), ("\u200b", "evidence")])
def test_an_evidence_name_is_kept_as_one_printable_file_name(portal_on: Portal, sent: str, kept: str) -> None:
    subject = portal_on.subjects[0]
    request = pb.FileObjectionRequest(record_id=portal_on.records[subject], reason="有误", evidence_name=sent,
                                      evidence=b"%PDF-1.4")
    case = portal_on.own(subject).FileObjection(request, timeout=DEADLINE_S)
    assert case.evidence_name == kept
    again = portal_on.own(subject).GetObjection(pb.GetObjectionRequest(case_id=case.case_id), timeout=DEADLINE_S)
    assert again.evidence_name == kept
