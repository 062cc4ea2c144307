"""How the Query service reads subject codes: a code that fails its check is refused as mistyped
unless a record holds it, whatever part of the subject's records a call asks for."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import grpc
import pytest

from node.records import pb
from node.signing import Signer
from node.store import Store
from tests.access_world import CALLERS, ORG, Pki, catalog, make_pki, record, refusal, serve

CITY = "city:330100"
HELD = ORG[:-1] + ("4" if ORG[-1] != "4" else "5")  # fails the USCC check; held here all the same


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def store(pki: Pki, tmp_path: pathlib.Path) -> Iterator[Store]:
    ident = pki.identity(CITY)
    with Store.open(f"sqlite:///{tmp_path / 'city.db'}") as s:
        s.records.append([record(Signer(CITY, ident.signing_key, ident.signing_cert_der),
                                 catalog().item("admin_penalty"), HELD, "legal_person", "早期代码有限公司",
                                 {"CF_XDR_MC": "早期代码有限公司", "CF_XDR_SHXYM": HELD, "CF_WSH": "罚早1"})])
        yield s


def test_a_held_code_failing_its_check_is_answered_when_the_items_asked_for_hold_nothing(
        pki: Pki, store: Store) -> None:
    gov = pb.CallerContext(purpose="核查")
    with serve(pki, CITY, store) as server:
        stub = server.stub(CALLERS["gov"])
        everything = stub.Lookup(pb.LookupRequest(subject_code=HELD, context=gov), timeout=10)
        licences = stub.Lookup(pb.LookupRequest(subject_code=HELD, items=["admin_license"], context=gov), timeout=10)
        listed = stub.VerifyList(pb.VerifyListRequest(subject_codes=[HELD], context=gov), timeout=10)
        with pytest.raises(grpc.RpcError) as nobody:  # held by no record: refused as mistyped
            stub.Lookup(pb.LookupRequest(subject_code=ORG[:-1] + "Q", items=["admin_license"], context=gov),
                        timeout=10)
    assert [v.item for v in everything.records] == ["admin_penalty"]
    assert list(licences.records) == [] and licences.subject_code == HELD
    assert (listed.checked, list(listed.hits)) == (1, [])
    assert refusal(nobody.value) == (grpc.StatusCode.INVALID_ARGUMENT, "E_SUBJECT_CODE_CHECK")
