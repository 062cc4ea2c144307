"""An authorisation code used for an item it does not name, on a real mTLS server: the lookup is
refused (E_AUTHZ_SCOPE) and logged as such, as one for another subject or agency is."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import grpc
import pytest

from node.authz import Authorizations
from node.records import pb
from node.signing import Signer
from node.store import Store
from tests.access_world import CALLERS, PERSON, Pki, Server, catalog, make_pki, refusal, seed, serve

CITY = "city:330100"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def server(tmp_path: pathlib.Path, pki: Pki) -> Iterator[tuple[Server, dict[str, str]]]:
    ident = pki.identity(CITY)
    with Store.open(f"sqlite:///{tmp_path / 'city.db'}") as store:
        tags = seed(store, Signer(CITY, ident.signing_key, ident.signing_cert_der), catalog())
        with serve(pki, CITY, store) as s:
            yield s, tags


def lookup(server: Server, code: str, items: list[str]) -> pb.LookupResponse:
    ctx = pb.CallerContext(authorization_code=code)
    return server.stub(CALLERS["agency"]).Lookup(pb.LookupRequest(subject_code=PERSON, items=items, context=ctx),
                                                 timeout=10)


def test_a_code_asked_for_a_class_b_item_it_does_not_name_is_refused(server: tuple[Server, dict[str, str]]) -> None:
    s, _tags = server
    code = Authorizations(s.store).grant(PERSON, "agency:bank1", ["admin_license"], 30).code
    with pytest.raises(grpc.RpcError) as info:
        lookup(s, code, ["professional_qualification"])
    assert refusal(info.value) == (grpc.StatusCode.PERMISSION_DENIED, "E_AUTHZ_SCOPE")
    [entry] = list(s.store.queries.iter())
    assert (entry.detail["refused"], entry.result_count) == ("E_AUTHZ_SCOPE", 0)


def test_a_code_opens_the_items_it_names_and_leaves_the_public_ones(server: tuple[Server, dict[str, str]]) -> None:
    s, tags = server
    code = Authorizations(s.store).grant(PERSON, "agency:bank1", ["professional_qualification"], 30).code
    assert [v.record_id for v in lookup(s, code, ["professional_qualification"]).records] == [tags["qual"]]
    # class A items need no code: naming one the code does not cover is no misuse of it
    assert [v.record_id for v in lookup(s, code, ["admin_penalty"]).records] == [tags["pen-person"]]
    assert {v.record_id for v in lookup(s, code, []).records} == {tags["qual"], tags["pen-person"]}
