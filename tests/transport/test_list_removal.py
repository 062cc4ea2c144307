"""VerifyList and Lookup on a real mTLS server around the day a list entry is taken off its list."""

from __future__ import annotations

import datetime as dt
import pathlib
from collections.abc import Iterator

import pytest

from node.records import pb
from node.signing import Signer
from node.store import Store
from tests.access_world import CALLERS, ORG2, Pki, catalog, make_pki, record, serve

CITY = "city:330100"
REMOVED_ON = dt.date(2026, 6, 1)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def store(tmp_path: pathlib.Path, pki: Pki) -> Iterator[Store]:
    ident = pki.identity(CITY)
    signer = Signer(CITY, ident.signing_key, ident.signing_cert_der)
    cat = catalog()
    removal = {"SX_ZTMC": "杭州守信有限公司", "SX_RDWSH": "认9", "SX_YCRQ": REMOVED_ON.isoformat(), "SX_YCYY": "信用修复"}
    abnormal = {"YC_ZTMC": "杭州守信有限公司", "YC_LRWSH": "异9", "YC_YCRQ": REMOVED_ON.isoformat(), "YC_YCYY": "已补报"}
    with Store.open(f"sqlite:///{tmp_path / 'city.db'}") as s:
        s.records.append([
            record(signer, cat.item("serious_dishonest_list"), ORG2, "legal_person", "杭州守信有限公司", removal,
                   decision_date="2026-01-05", tag="black"),
            record(signer, cat.item("abnormal_operation"), ORG2, "legal_person", "杭州守信有限公司", abnormal,
                   decision_date="2026-01-05", tag="abnormal"),
        ])
        yield s


@pytest.mark.parametrize(("today", "hits"), [
    (REMOVED_ON - dt.timedelta(days=1), {"serious_dishonest_list", "abnormal_operation"}),
    (REMOVED_ON, set()),
])
def test_a_subject_taken_off_a_list_is_no_hit_from_its_removal_day(pki: Pki, store: Store, today: dt.date,
                                                                    hits: set[str]) -> None:
    with serve(pki, CITY, store, today=lambda: today) as server:
        for role, purpose in (("public", ""), ("gov", "招投标资格审查")):
            ctx = pb.CallerContext(purpose=purpose)
            answer = server.stub(CALLERS[role]).VerifyList(pb.VerifyListRequest(subject_codes=[ORG2], context=ctx),
                                                            timeout=10)
            assert {h.item for h in answer.hits} == hits, role
            assert all(h.measures for h in answer.hits)  # a hit is a listing in force, with its measures
            looked = server.stub(CALLERS[role]).Lookup(pb.LookupRequest(subject_code=ORG2, context=ctx), timeout=10)
            assert {v.item for v in looked.records} == hits, role
