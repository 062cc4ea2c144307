"""A legal representative's ID number (法定代表人证件号码) in an organisation's record, on a real mTLS
server: it is the representative's class-B information, not the organisation's, so neither the
organisation's own certificate nor an authorisation code it gives opens it; legal authority does."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from node.authz import Authorizations
from node.records import pb
from node.signing import Signer
from node.store import Store
from tests.access_world import CALLERS, ORG, PERSON, Pki, Server, catalog, make_pki, seed, serve

CITY = "city:330100"
MASKED = "1101**********002X"


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


def representative_id(server: Server, tags: dict[str, str], role: str, **ctx: str) -> str:
    answer = server.stub(CALLERS[role]).Lookup(pb.LookupRequest(subject_code=ORG, context=pb.CallerContext(**ctx)),
                                               timeout=10)
    [pen] = [v for v in answer.records if v.record_id == tags["pen"]]
    assert pen.subject_code == ORG  # an organisation's code is never masked
    return {f.name: f.value for f in pen.fields}["CF_FR_ZJHM"]


def test_an_organisations_code_does_not_open_its_representatives_id_number(
        server: tuple[Server, dict[str, str]]) -> None:
    s, tags = server
    code = Authorizations(s.store).grant(ORG, "agency:bank1", ["admin_penalty"], 30).code
    assert representative_id(s, tags, "agency", authorization_code=code) == MASKED


def test_an_organisation_sees_its_representatives_id_number_masked(server: tuple[Server, dict[str, str]]) -> None:
    s, tags = server
    assert representative_id(s, tags, "self-org") == MASKED


@pytest.mark.parametrize("role", ["gov", "judicial"])
def test_legal_authority_sees_the_representatives_id_number(server: tuple[Server, dict[str, str]], role: str) -> None:
    s, tags = server
    assert representative_id(s, tags, role, purpose="审查") == PERSON
