"""Cross-region lookup on real mTLS servers: a city fans out to two districts; signed delegation;
each region applies its own rules and logs; a region down or too slow gives a flagged partial answer."""

from __future__ import annotations

import pathlib
import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from node.config import AccessConfig, PeerConfig
from node.errors import NotAuthorizedError
from node.fanout import SIGNING_CERT_METADATA, Delegation, Fanout, merge_views, verify_delegation
from node.nodeid import Identity
from node.records import pb, rpc
from node.signing import Signer
from node.store import Store
from node.transport.grpc_server import GrpcServer, Service
from node.transport.query_service import SERVICE_NAME
from node.truststore import TrustStore
from tests.access_world import CALLERS, ORG, Pki, Server, catalog, make_pki, record, refusal, seed, serve

CITY, EAST, WEST = "city:330100", "district:330106", "district:330108"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def open_store(path: pathlib.Path) -> Store:
    return Store.open(f"sqlite:///{path}")


def signer(pki: Pki, node_id: str) -> Signer:
    ident = pki.identity(node_id)
    return Signer(node_id, ident.signing_key, ident.signing_cert_der)


@pytest.fixture
def east(pki: Pki, tmp_path: pathlib.Path) -> Iterator[tuple[Server, dict[str, str]]]:
    store = open_store(tmp_path / "east.db")
    tags = seed(store, signer(pki, EAST), catalog())
    # The east district shows objections marked (Shenzhen practice); the city suspends them.
    with serve(pki, EAST, store, access=AccessConfig(disputed="mark"), delegators=[CITY],
               peers=[PeerConfig(CITY, "127.0.0.1:1")]) as s:
        yield s, tags
    store.close()


class _Slow(rpc.QueryServicer):  # type: ignore[misc]
    """A region that answers too late."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.released = threading.Event()

    def Lookup(self, request: pb.LookupRequest, context: grpc.ServicerContext) -> pb.LookupResponse:
        self.released.wait(self.delay_s)
        return pb.LookupResponse()


def by_tag(answer: pb.LookupResponse, tags: dict[str, str]) -> dict[str, pb.RecordView]:
    ids = {rid: tag for tag, rid in tags.items()}
    return {ids[v.record_id]: v for v in answer.records if v.record_id in ids}


def test_city_merges_regions_each_applying_its_own_rules_and_logging(pki: Pki, tmp_path: pathlib.Path,
                                                                   east: tuple[Server, dict[str, str]]) -> None:
    east_server, east_tags = east
    city_store = open_store(tmp_path / "city.db")
    # The city holds one record of its own and a copy of one of the district's (records travel up).
    own = record(signer(pki, CITY), catalog().item("admin_penalty"), ORG, "legal_person", "杭州测试有限公司",
                 {"CF_XDR_MC": "杭州测试有限公司", "CF_WSH": "市罚1"}, tag="city-pen")
    copy = east_server.store.records.get(east_tags["pen"])
    assert copy is not None
    city_store.records.append([own, copy])
    with serve(pki, CITY, city_store, peers=[PeerConfig(EAST, east_server.target)]) as c:
        answer = c.stub(CALLERS["gov"]).Lookup(pb.LookupRequest(
            subject_code=ORG, context=pb.CallerContext(purpose="联合惩戒核查")), timeout=10)
        public = c.stub(CALLERS["public"]).Lookup(pb.LookupRequest(subject_code=ORG), timeout=10)
    assert not answer.partial and list(answer.unavailable_regions) == []
    regions = {(v.record_id, v.region) for v in answer.records}
    assert (own.record_id, CITY) in regions
    assert [r for r in regions if r[0] == east_tags["pen"]] == [(east_tags["pen"], CITY)]  # one copy, the local
    seen = by_tag(answer, east_tags)
    assert set(seen) == {"pen", "blacklist", "inspection", "pen-repaired", "pen-disputed"}
    assert seen["pen-disputed"].region == EAST  # the district's rule (mark), not the city's (suspend)
    assert set(by_tag(public, east_tags)) == {"pen", "blacklist", "pen-disputed"}  # the caller's role travels

    # Each region logged the lookup: the district names the original caller and the delegating city.
    east_log = [e for e in east_server.store.queries.iter()]
    assert [(e.caller, e.role, e.purpose, e.detail["delegating_node"]) for e in east_log] == [
        (CALLERS["gov"], "gov", "联合惩戒核查", CITY)]  # the public caller's lookup is not logged
    [city_entry] = list(city_store.queries.iter())
    assert city_entry.caller == CALLERS["gov"] and city_entry.detail["regions"] == [EAST]
    assert city_entry.result_count == len(answer.records)
    city_store.close()


def test_one_region_down_and_one_too_slow_give_a_flagged_partial_answer_within_the_deadline(
        pki: Pki, tmp_path: pathlib.Path, east: tuple[Server, dict[str, str]]) -> None:
    east_server, east_tags = east
    slow = _Slow(delay_s=30)
    slow_server = GrpcServer(pki.identity(WEST), "127.0.0.1:0", [Service(SERVICE_NAME, lambda s: rpc.add_QueryServicer_to_server(slow, s))],
                             grace_s=0)
    slow_server.start()
    peers = [PeerConfig(EAST, east_server.target), PeerConfig(WEST, f"127.0.0.1:{slow_server.port}"),
             PeerConfig("district:330109", "127.0.0.1:1")]  # nobody listens there
    city_store = open_store(tmp_path / "city.db")
    try:
        with serve(pki, CITY, city_store, peers=peers, access=AccessConfig(fanout_deadline_s=0.5)) as c:
            started = time.monotonic()
            answer = c.stub(CALLERS["gov"]).Lookup(pb.LookupRequest(
                subject_code=ORG, context=pb.CallerContext(purpose="核查")), timeout=10)
            elapsed = time.monotonic() - started
    finally:
        slow.released.set()
        slow_server.stop()
        city_store.close()
    assert answer.partial
    assert sorted(answer.unavailable_regions) == [WEST, "district:330109"]
    assert {"pen", "blacklist"} <= set(by_tag(answer, east_tags))  # what answered is still there
    assert elapsed < 5  # bounded by the 0.5 s deadline, not by the 30 s region (loose: CI machines vary)


def test_forwarded_requests_are_local_only(pki: Pki, east: tuple[Server, dict[str, str]]) -> None:
    """The east district has the city as a peer (port 1, down): a request marked local_only must
    not fan out again, so its answer is complete."""
    east_server, _tags = east
    fan = Fanout(CITY, pki.identity(CITY).signing_key, pki.identity(CITY).signing_cert_der, [], lambda t: None)  # type: ignore[arg-type,return-value]
    req = fan.delegated_request(pb.LookupRequest(subject_code=ORG), Identity(CALLERS["gov"], "gov"), "核查")
    assert req.local_only
    answer = east_server.stub(CITY).Lookup(req, timeout=10, metadata=(
        (SIGNING_CERT_METADATA, pki.identity(CITY).signing_cert_der),))
    assert not answer.partial and answer.records


def _delegated(pki: Pki, node: str = CITY) -> tuple[pb.LookupRequest, bytes]:
    ident = pki.identity(node)
    fan = Fanout(node, ident.signing_key, ident.signing_cert_der, [], lambda t: None)  # type: ignore[arg-type,return-value]
    req = fan.delegated_request(pb.LookupRequest(subject_code=ORG, items=["admin_penalty"]),
                                Identity(CALLERS["agency"], "agency"), "贷款审查")
    return req, ident.signing_cert_der


@pytest.mark.parametrize("tamper", [
    {"on_behalf_role": "gov"}, {"on_behalf_of": "agency:other"}, {"purpose": "其他"},
    {"subject_code": "91330100MA27XL0E2K"}, {"delegated_at_ms": 1},
])
def test_a_tampered_delegation_is_refused(pki: Pki, tamper: dict[str, object]) -> None:
    req, cert = _delegated(pki)
    trust = _trust(pki)
    assert verify_delegation(req, Identity(CITY, "node"), cert, trust, allowed_nodes={CITY},
                             max_age_s=300) == Identity(CALLERS["agency"], "agency")
    for name, value in tamper.items():
        setattr(req.context if name != "subject_code" else req, name, value)
    with pytest.raises(NotAuthorizedError) as info:
        verify_delegation(req, Identity(CITY, "node"), cert, trust, allowed_nodes={CITY}, max_age_s=300)
    assert info.value.code == "E_DELEGATION_INVALID"


def _trust(pki: Pki) -> TrustStore:
    return TrustStore(pki.identity(CITY).ca_pem)


def test_delegations_only_from_known_nodes_with_their_own_certificate(pki: Pki) -> None:
    req, cert = _delegated(pki)
    trust = _trust(pki)
    other = pki.identity(WEST).signing_cert_der
    for asking, cert_der, allowed in [
        (Identity(WEST, "node"), cert, {CITY, WEST}),  # the connection is not the node named
        (Identity(CITY, "node"), cert, {WEST}),  # not a parent or peer of this node
        (Identity(CITY, "node"), other, {CITY}),  # someone else's signing certificate
        (Identity(CITY, "node"), None, {CITY}),  # none at all
        (Identity(CALLERS["gov"], "gov"), cert, {CALLERS["gov"]}),  # only nodes delegate
    ]:
        with pytest.raises(NotAuthorizedError) as info:
            verify_delegation(req, asking, cert_der, trust, allowed_nodes=allowed, max_age_s=300)  # type: ignore[arg-type]
        assert info.value.code == "E_DELEGATION_INVALID"


def test_a_peer_refuses_a_delegation_from_a_node_it_does_not_know(pki: Pki, tmp_path: pathlib.Path) -> None:
    store = open_store(tmp_path / "west.db")
    with serve(pki, WEST, store, delegators=[]) as west:
        req, cert = _delegated(pki)
        with pytest.raises(grpc.RpcError) as info:
            west.stub(CITY).Lookup(req, timeout=10, metadata=((SIGNING_CERT_METADATA, cert),))
    assert refusal(info.value) == (grpc.StatusCode.PERMISSION_DENIED, "E_DELEGATION_INVALID")
    [entry] = list(store.queries.iter())  # the attempt is logged by the region that refused it
    assert (entry.caller, entry.role, entry.detail["refused"]) == (CITY, "node", "E_DELEGATION_INVALID")
    store.close()


def test_statement_is_canonical() -> None:
    d = Delegation(CITY, "gov:x", "gov", "p", ORG, ("b", "a"), 5)
    assert d.statement() == Delegation(CITY, "gov:x", "gov", "p", ORG, ("a", "b"), 5).statement()
    assert d.statement() != Delegation(CITY, "gov:x", "gov", "p", ORG, ("a",), 5).statement()


def test_merge_prefers_the_highest_revision_then_the_local_copy() -> None:
    local = [pb.RecordView(record_id="r1", revision=1, region=CITY), pb.RecordView(record_id="r2", revision=2,
                                                                                  region=CITY)]
    remote = [pb.RecordView(record_id="r1", revision=2, region=EAST), pb.RecordView(record_id="r2", revision=2,
                                                                                   region=EAST)]
    merged = {v.record_id: (v.revision, v.region) for v in merge_views(local, remote)}
    assert merged == {"r1": (2, EAST), "r2": (2, CITY)}


def test_a_region_older_copy_never_shows_what_the_city_holds_newer_and_hides(
        pki: Pki, tmp_path: pathlib.Path, east: tuple[Server, dict[str, str]]) -> None:
    # The city already holds revision 2 (revoked) of a district record; the district still holds
    # revision 1 (active), its downward delivery not yet applied. The city's answer must not
    # bring the old revision back from the district.
    east_server, east_tags = east
    city_store = open_store(tmp_path / "city.db")
    copy = east_server.store.records.get(east_tags["pen"])
    assert copy is not None and copy.revision == 1
    city_store.records.append([copy])
    city_store.records.append([copy._replace(revision=2, status="revoked")])
    with serve(pki, CITY, city_store, peers=[PeerConfig(EAST, east_server.target)]) as c:
        public = c.stub(CALLERS["public"]).Lookup(pb.LookupRequest(subject_code=ORG), timeout=10)
    assert not public.partial
    assert "pen" not in by_tag(public, east_tags)
    assert {"blacklist", "pen-disputed"} <= set(by_tag(public, east_tags))  # the rest still comes from east
    city_store.close()


def test_merge_drops_a_remote_copy_no_newer_than_a_local_revision_the_caller_may_not_see() -> None:
    remote = [pb.RecordView(record_id="r1", revision=1, region=EAST), pb.RecordView(record_id="r2", revision=3,
                                                                                   region=EAST)]
    merged = merge_views([], remote, held={"r1": 2, "r2": 2})
    assert [(v.record_id, v.revision) for v in merged] == [("r2", 3)]


def test_a_region_limits_each_original_caller_not_the_delegating_city_and_never_blocks_it(
        pki: Pki, tmp_path: pathlib.Path) -> None:
    from node.abuse import Guard
    from node.config import AbuseConfig

    east_store = open_store(tmp_path / "east.db")
    seed(east_store, signer(pki, EAST), catalog())
    strict = AbuseConfig(rate_per_s=0.001, burst=2, block_after=2, block_window_s=600)
    city_store = open_store(tmp_path / "city.db")
    with serve(pki, EAST, east_store, abuse=strict, delegators=[CITY], peers=[PeerConfig(CITY, "127.0.0.1:1")]) as e, \
            serve(pki, CITY, city_store, peers=[PeerConfig(EAST, e.target)]) as c:
        gov = [c.stub(CALLERS["gov"]).Lookup(pb.LookupRequest(
            subject_code=ORG, context=pb.CallerContext(purpose="核查")), timeout=10) for _ in range(5)]
        public = c.stub(CALLERS["public"]).Lookup(pb.LookupRequest(subject_code=ORG), timeout=10)
    # The gov caller's own bucket at the region runs dry; the public caller's does not, and the
    # city's address is not blocked for what its callers did together.
    assert [a.partial for a in gov] == [False, False, True, True, True]
    assert not public.partial and len(public.records) > 0
    assert Guard(east_store, strict).list() == []
    east_store.close()
    city_store.close()


@pytest.mark.parametrize(("on_behalf_of", "role"), [("public:portal", "judicial"), ("not an id", "gov"),
                                                     (CITY, "gov"), (CITY, "node")])
def test_a_signed_delegation_for_no_real_caller_is_refused(pki: Pki, on_behalf_of: str, role: str) -> None:
    ident = pki.identity(CITY)
    fan = Fanout(CITY, ident.signing_key, ident.signing_cert_der, [], lambda t: None)  # type: ignore[arg-type,return-value]
    req = fan.delegated_request(pb.LookupRequest(subject_code=ORG), Identity(on_behalf_of, role), "核查")
    with pytest.raises(NotAuthorizedError) as info:
        verify_delegation(req, Identity(CITY, "node"), ident.signing_cert_der, _trust(pki), allowed_nodes={CITY},
                          max_age_s=300)
    assert info.value.code == "E_DELEGATION_INVALID"


def test_a_code_failing_its_check_that_a_region_holds_is_answered_with_the_region_records(
        pki: Pki, tmp_path: pathlib.Path) -> None:
    """A code is refused as mistyped only when nobody holds it: a region may hold one the city does
    not (an early USCC on that region's allow-list), and the city must not hide that region's record."""
    held = ORG[:-1] + ("4" if ORG[-1] != "4" else "5")  # one check character off
    east_store = open_store(tmp_path / "east.db")
    east_record = record(signer(pki, EAST), catalog().item("admin_penalty"), held, "legal_person", "早期代码有限公司",
                         {"CF_XDR_MC": "早期代码有限公司", "CF_XDR_SHXYM": held, "CF_WSH": "罚早1"}, tag="early")
    east_store.records.append([east_record])
    city_store = open_store(tmp_path / "city.db")
    gov, purpose = CALLERS["gov"], pb.CallerContext(purpose="核查")
    try:
        with serve(pki, EAST, east_store, delegators=[CITY]) as east, \
                serve(pki, CITY, city_store, peers=[PeerConfig(EAST, east.target)]) as city:
            answer = city.stub(gov).Lookup(pb.LookupRequest(subject_code=held, context=purpose), timeout=10)
            with pytest.raises(grpc.RpcError) as nobody:  # held nowhere: still refused as mistyped
                city.stub(gov).Lookup(pb.LookupRequest(subject_code=ORG[:-1] + "Q", context=purpose), timeout=10)
    finally:
        east_store.close()
        city_store.close()
    assert [(v.record_id, v.region) for v in answer.records] == [(east_record.record_id, EAST)]
    assert refusal(nobody.value) == (grpc.StatusCode.INVALID_ARGUMENT, "E_SUBJECT_CODE_CHECK")
