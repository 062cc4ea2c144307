"""The Query service on a real mTLS server: each role sees exactly its classes, masking, purpose,
authorisation codes (expiry, revocation), the query log, blocks and the sharing switch."""

from __future__ import annotations

import json
import pathlib
import threading
from collections.abc import Iterator

import grpc
import pytest

from node.abuse import SharingSwitch
from node.access import MARK_DISPUTED, MARK_REPAIRED
from node.authz import Authorizations
from node.config import AbuseConfig, AccessConfig
from node.identifiers import make_uscc
from node.querylog import QueryRecorder
from node.records import pb
from node.signing import Signer
from node.store import QueryLog, QueryLogEntry, Store
from tests.access_world import (
    CALLERS,
    ORG,
    ORG2,
    PERSON,
    Pki,
    Server,
    catalog,
    make_pki,
    refusal,
    seed,
    serve,
)

CITY = "city:330100"
DAY = 86_400_000


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def store(tmp_path: pathlib.Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'city.db'}") as s:
        yield s


@pytest.fixture
def tags(pki: Pki, store: Store) -> dict[str, str]:
    ident = pki.identity(CITY)
    return seed(store, Signer(CITY, ident.signing_key, ident.signing_cert_der), catalog())


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server(pki: Pki, store: Store, tags: dict[str, str], clock: Clock) -> Iterator[Server]:
    with serve(pki, CITY, store, authz_clock=clock) as s:
        yield s


def lookup(server: Server, role: str, subject: str, *, purpose: str = "", authz: str = "",
           items: tuple[str, ...] = ()) -> pb.LookupResponse:
    ctx = pb.CallerContext(purpose=purpose, authorization_code=authz)
    return server.stub(CALLERS[role]).Lookup(pb.LookupRequest(subject_code=subject, items=list(items), context=ctx),
                                              timeout=10)


def seen(answer: pb.LookupResponse, tags: dict[str, str]) -> set[str]:
    by_id = {rid: tag for tag, rid in tags.items()}
    return {by_id[v.record_id] for v in answer.records}


# --- each role sees exactly its classes ---------------------------------------------------------------
ORG_VIEW = {
    "public": {"pen", "blacklist"},
    "agency": {"pen", "blacklist"},
    "gov": {"pen", "blacklist", "inspection", "pen-repaired"},
    "judicial": {"pen", "blacklist", "inspection", "pen-repaired", "pen-disputed", "pen-expired", "pen-old"},
    "self-org": {"pen", "blacklist", "pen-disputed", "pen-repaired"},  # its own repaired record, marked
    "self-person": {"pen", "blacklist"},
}


@pytest.mark.parametrize("role", sorted(ORG_VIEW))
def test_each_role_sees_exactly_its_records_of_an_organisation(server: Server, tags: dict[str, str], role: str) -> None:
    purpose = "行政许可审查" if role in ("gov", "judicial") else ""
    answer = lookup(server, role, ORG.lower(), purpose=purpose)
    assert answer.subject_code == ORG
    assert seen(answer, tags) == ORG_VIEW[role]
    assert not answer.partial
    for v in answer.records:
        assert v.region == CITY and v.signers == [CITY] and v.subject_code == ORG
        assert v.disclosure_class == {"inspection": "C"}.get(seen_tag(v, tags), "A")


def seen_tag(view: pb.RecordView, tags: dict[str, str]) -> str:
    return {rid: tag for tag, rid in tags.items()}[view.record_id]


def test_marks_and_measures(server: Server, tags: dict[str, str]) -> None:
    gov = {seen_tag(v, tags): v for v in lookup(server, "gov", ORG, purpose="监管").records}
    assert list(gov["pen-repaired"].marks) == [MARK_REPAIRED]
    assert "限制参与政府采购" in gov["blacklist"].measures and list(gov["pen"].measures) == []
    own = {seen_tag(v, tags): v for v in lookup(server, "self-org", ORG).records}
    assert list(own["pen-disputed"].marks) == [MARK_DISPUTED]


def test_disputed_records_are_marked_when_configured(pki: Pki, store: Store, tags: dict[str, str]) -> None:
    with serve(pki, CITY, store, access=AccessConfig(disputed="mark")) as s:
        answer = lookup(s, "public", ORG)
    assert seen(answer, tags) == {"pen", "blacklist", "pen-disputed"}
    assert [list(v.marks) for v in answer.records if seen_tag(v, tags) == "pen-disputed"] == [[MARK_DISPUTED]]


# --- masking -----------------------------------------------------------------------------------------
MASKED = "1101**********002X"


@pytest.mark.parametrize(("role", "masked"), [("public", True), ("agency", True), ("gov", False),
                                              ("self-person", False), ("judicial", False)])
def test_id_numbers_masked_for_callers_without_class_b(server: Server, tags: dict[str, str], role: str,
                                                       masked: bool) -> None:
    purpose = "审查" if role in ("gov", "judicial") else ""
    views = {seen_tag(v, tags): v for v in lookup(server, role, PERSON, purpose=purpose).records}
    pen = views["pen-person"]
    fields = {f.name: f.value for f in pen.fields}
    assert fields["CF_XDR_ZJHM"] == pen.subject_code == (MASKED if masked else PERSON)
    assert ("qual" in views) is (not masked)
    # A legal representative's ID number in an organisation's record is the representative's B
    # information: masked for all but legal authority (a person's own certificate gives B of the
    # person as a subject, not of the records of the company it represents;
    # tests/transport/test_representative_ids.py: nor does the company's own B).
    org_pen = next(v for v in lookup(server, role, ORG, purpose=purpose).records if seen_tag(v, tags) == "pen")
    org_masked = role not in ("gov", "judicial")
    assert {f.name: f.value for f in org_pen.fields}["CF_FR_ZJHM"] == (MASKED if org_masked else PERSON)


# --- refusals ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("role", "purpose", "code"), [
    ("gov", "", "E_PURPOSE_REQUIRED"),
    ("judicial", " ", "E_PURPOSE_REQUIRED"),
    ("gov", "\u200b", "E_PURPOSE_REQUIRED"),
    ("gov", "\x00\u3000\x07", "E_PURPOSE_REQUIRED"),
    ("admin", "运维", "E_SEPARATION_OF_DUTIES"),
    ("auditor", "审计", "E_ROLE_CANNOT_QUERY"),
])
def test_refused_callers_exit_3_material_and_are_logged(server: Server, store: Store, role: str, purpose: str,
                                                        code: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        lookup(server, role, ORG, purpose=purpose)
    assert refusal(info.value) == (grpc.StatusCode.PERMISSION_DENIED, code)
    [entry] = list(store.queries.iter())
    assert (entry.caller, entry.role, entry.result_count, entry.detail["refused"]) == (CALLERS[role], role, 0, code)


def test_a_purpose_is_logged_printable_and_at_most_200_characters(server: Server, store: Store) -> None:
    lookup(server, "gov", ORG, purpose="行政许可\x00审查\u200b")
    [entry] = list(store.queries.iter())
    assert entry.purpose == "行政许可审查"
    with pytest.raises(grpc.RpcError) as info:
        lookup(server, "gov", ORG, purpose="审" * 201)
    assert refusal(info.value) == (grpc.StatusCode.INVALID_ARGUMENT, "E_PURPOSE_TOO_LONG")
    assert len(list(store.queries.iter())) == 1


def test_a_federation_node_must_delegate(pki: Pki, server: Server) -> None:
    with pytest.raises(grpc.RpcError) as info:
        server.stub("district:330106").Lookup(pb.LookupRequest(subject_code=ORG), timeout=10)
    assert refusal(info.value) == (grpc.StatusCode.PERMISSION_DENIED, "E_DELEGATION_REQUIRED")


def test_unknown_item_and_empty_subject_are_invalid_arguments(server: Server) -> None:
    for subject, items in (("", ()), (ORG, ("no_such_item",)), ("X" * 100_000, ()), ("NOT A CODE", ())):
        with pytest.raises(grpc.RpcError) as info:
            lookup(server, "public", subject, items=items)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_an_unknown_item_code_in_chinese_or_with_control_characters_is_refused_naming_the_items_field(
        server: Server) -> None:
    # The field names the request's field, not the caller's value (a megabyte sent back, or text
    # grpc refuses as metadata); the message shows at most the value's start.
    for item in ("行政处罚", "a\nb", "x" * 5000):
        with pytest.raises(grpc.RpcError) as info:
            lookup(server, "public", ORG, items=(item,))
        assert refusal(info.value) == (grpc.StatusCode.INVALID_ARGUMENT, "E_UNKNOWN_ITEM")
        assert dict(info.value.trailing_metadata() or ())["credit-error-field"] == "items"
        assert len(info.value.details() or "") < 1000


# --- authorisation codes -----------------------------------------------------------------------------
def test_agency_sees_b_with_a_code_until_it_expires_or_is_revoked(server: Server, store: Store, tags: dict[str, str],
                                                                  clock: Clock) -> None:
    authz = Authorizations(store, clock=clock)
    code = authz.grant(PERSON, "agency:bank1", ["professional_qualification"], 2).code
    answer = lookup(server, "agency", PERSON, authz=code)
    views = {seen_tag(v, tags): v for v in answer.records}
    assert set(views) == {"pen-person", "qual"}
    assert {f.name: f.value for f in views["qual"].fields}["ZG_ZJHM"] == PERSON  # B: unmasked
    assert views["pen-person"].subject_code == MASKED  # the code does not cover penalties
    # the same code does not open another subject
    with pytest.raises(grpc.RpcError) as info:
        lookup(server, "agency", ORG, authz=code)
    assert refusal(info.value) == (grpc.StatusCode.PERMISSION_DENIED, "E_AUTHZ_SCOPE")

    clock.now += 2 * DAY  # the frozen clock moves past the expiry
    with pytest.raises(grpc.RpcError) as info:
        lookup(server, "agency", PERSON, authz=code)
    assert refusal(info.value) == (grpc.StatusCode.PERMISSION_DENIED, "E_AUTHZ_EXPIRED")

    second = authz.grant(PERSON, "agency:bank1", ["professional_qualification"], 30).code
    assert "qual" in seen(lookup(server, "agency", PERSON, authz=second), tags)
    authz.revoke(second)
    with pytest.raises(grpc.RpcError) as info:
        lookup(server, "agency", PERSON, authz=second)
    assert refusal(info.value) == (grpc.StatusCode.PERMISSION_DENIED, "E_AUTHZ_REVOKED")
    with pytest.raises(grpc.RpcError) as info:
        lookup(server, "agency", PERSON, authz="MADE-UP")
    assert refusal(info.value) == (grpc.StatusCode.PERMISSION_DENIED, "E_AUTHZ_UNKNOWN")

    uses = [(e.detail.get("authz_result") or e.detail.get("refused"), e.result_count) for e in store.queries.iter()]
    assert uses == [("valid", 2), ("E_AUTHZ_SCOPE", 0), ("E_AUTHZ_EXPIRED", 0), ("valid", 2),
                    ("E_AUTHZ_REVOKED", 0), ("E_AUTHZ_UNKNOWN", 0)]
    assert all(e.detail.get("authz") for e in store.queries.iter())  # every use names the code's id


# --- the query log -----------------------------------------------------------------------------------
def test_every_non_public_lookup_is_logged_and_public_ones_are_not(server: Server, store: Store) -> None:
    lookup(server, "public", ORG)
    lookup(server, "gov", ORG, purpose="招投标资格审查", items=("admin_penalty",))
    lookup(server, "self-person", PERSON)
    entries = list(store.queries.iter())
    assert [(e.caller, e.role, e.purpose, e.subject, list(e.items), e.result_count) for e in entries] == [
        ("gov:330100:fgw", "gov", "招投标资格审查", ORG, ["admin_penalty"], 2),
        (f"self:{PERSON.lower()}", "self", "", PERSON, [], 2),
    ]
    assert entries[0].detail["op"] == "lookup" and entries[0].detail["address"].startswith("ipv4:127.0.0.1")
    assert store.queries.verify() == []


def test_a_lookup_waiting_for_its_log_commit_holds_up_neither_the_server_nor_other_callers(
        pki: Pki, store: Store, tags: dict[str, str]) -> None:
    committing, release = threading.Event(), threading.Event()

    class SlowDisk(QueryLog):
        def record(self, *entries: QueryLogEntry) -> list[int]:
            committing.set()
            assert release.wait(30)
            return super().record(*entries)

    with serve(pki, CITY, store, recorder=QueryRecorder(SlowDisk(store.engine))) as server:
        ctx = pb.CallerContext(purpose="招投标资格审查")
        logged = server.stub(CALLERS["gov"]).Lookup.future(pb.LookupRequest(subject_code=ORG, context=ctx),
                                                           timeout=30)
        assert committing.wait(30)
        assert seen(lookup(server, "public", ORG), tags)  # answered while the gov entry's commit hangs
        assert not logged.done()  # nothing is disclosed before its log entry is committed
        release.set()
        answer = logged.result(timeout=30)
    [entry] = list(store.queries.iter())
    assert (entry.caller, entry.result_count) == (CALLERS["gov"], len(answer.records))
    assert len(answer.records) > 0


# --- VerifyList --------------------------------------------------------------------------------------
def test_a_revoked_listing_is_no_plain_hit_it_carries_its_status_and_mark(server: Server, store: Store,
                                                                          tags: dict[str, str]) -> None:
    listed = store.records.get(tags["blacklist"])
    assert listed is not None
    store.records.append([listed._replace(revision=listed.revision + 1, status="revoked")])
    court = server.stub(CALLERS["judicial"]).VerifyList(pb.VerifyListRequest(
        subject_codes=[ORG], items=["serious_dishonest_list"], context=pb.CallerContext(purpose="执行案件核查")),
        timeout=10)
    assert [(h.record_id, h.status, "已撤销" in h.marks) for h in court.hits] == [(tags["blacklist"], "revoked", True)]
    gov = server.stub(CALLERS["gov"]).VerifyList(pb.VerifyListRequest(
        subject_codes=[ORG], items=["serious_dishonest_list"], context=pb.CallerContext(purpose="核查")), timeout=10)
    assert list(gov.hits) == []


def test_verify_list_returns_hits_with_list_date_and_measures(server: Server, store: Store) -> None:
    stub = server.stub(CALLERS["gov"])
    unlisted = make_uscc("9", "1", "110000", "MA00001X")
    answer = stub.VerifyList(pb.VerifyListRequest(subject_codes=[ORG, ORG2.lower(), PERSON, unlisted],
                                                  context=pb.CallerContext(purpose="政府采购资格核查")), timeout=10)
    assert answer.checked == 4
    hits = sorted((h.subject_code, h.item, h.listed_on) for h in answer.hits)
    assert hits == [(ORG2, "red_list", "2026-02-01"), (ORG, "serious_dishonest_list", "2026-03-01")]
    black = next(h for h in answer.hits if h.item == "serious_dishonest_list")
    assert "限制参与政府采购" in black.measures and black.subject_name == "杭州测试有限公司"
    assert (black.status, list(black.marks)) == ("active", [])
    only_black = stub.VerifyList(pb.VerifyListRequest(subject_codes=[ORG, ORG2], items=["serious_dishonest_list"],
                                                      context=pb.CallerContext(purpose="核查")), timeout=10)
    assert [h.item for h in only_black.hits] == ["serious_dishonest_list"]
    with pytest.raises(grpc.RpcError) as info:
        stub.VerifyList(pb.VerifyListRequest(subject_codes=[ORG], items=["admin_penalty"],
                                             context=pb.CallerContext(purpose="核查")), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as info:
        stub.VerifyList(pb.VerifyListRequest(subject_codes=[ORG]), timeout=10)
    assert refusal(info.value)[1] == "E_PURPOSE_REQUIRED"
    with pytest.raises(grpc.RpcError) as info:
        stub.VerifyList(pb.VerifyListRequest(subject_codes=[ORG, "X" * 5000], context=pb.CallerContext(purpose="核查")),
                        timeout=10)
    assert refusal(info.value) == (grpc.StatusCode.INVALID_ARGUMENT, "E_USAGE")
    assert dict(info.value.trailing_metadata() or ())["credit-error-field"] == "subject_codes[1]"
    logged = [e for e in store.queries.iter() if e.detail.get("op") == "verify_list"]
    assert [(e.result_count, len(e.detail["subjects"])) for e in logged[:2]] == [(2, 4), (1, 2)]


def test_a_mistyped_code_is_refused_not_answered_as_a_clean_subject(server: Server, store: Store) -> None:
    mistyped_org, mistyped_person = ORG[:-1] + "2", PERSON[:-1] + "9"  # one check character off
    for codes, where in (([ORG, mistyped_org], "subject_codes[1]"), ([mistyped_person, ORG, ORG], "subject_codes[0]")):
        with pytest.raises(grpc.RpcError) as info:
            server.stub(CALLERS["gov"]).VerifyList(pb.VerifyListRequest(
                subject_codes=codes, context=pb.CallerContext(purpose="核查")), timeout=10)
        assert refusal(info.value) == (grpc.StatusCode.INVALID_ARGUMENT, "E_SUBJECT_CODE_CHECK")
        assert dict(info.value.trailing_metadata() or ())["credit-error-field"] == where
    with pytest.raises(grpc.RpcError) as info:
        lookup(server, "public", mistyped_org)
    assert refusal(info.value) == (grpc.StatusCode.INVALID_ARGUMENT, "E_SUBJECT_CODE_CHECK")
    # a valid code held by no record is simply a subject without records; a passport has no check
    assert list(lookup(server, "public", make_uscc("9", "1", "110000", "MA00001X")).records) == []
    assert list(lookup(server, "public", "E12345678").records) == []


def test_codes_without_a_check_digit_are_named_in_the_answer(server: Server) -> None:
    answer = server.stub(CALLERS["gov"]).VerifyList(pb.VerifyListRequest(
        subject_codes=[ORG, "e12345678", "330102800101001", ORG], context=pb.CallerContext(purpose="核查")), timeout=10)
    assert answer.checked == 3
    # a passport and an old 15-digit ID number: a typo in either would read as "on no list"
    assert list(answer.unchecked) == ["E12345678", "330102800101001"]


# --- abuse protection --------------------------------------------------------------------------------
def test_a_verify_list_refused_for_its_size_costs_no_tokens(pki: Pki, store: Store, tags: dict[str, str]) -> None:
    cfg = AbuseConfig(rate_per_s=0.01, burst=3, block_after=100, cache_s=0.0)
    with serve(pki, CITY, store, abuse=cfg) as s:
        stub = s.stub(CALLERS["public"])
        lookup(s, "public", ORG)  # the bucket is no longer full
        too_many = pb.VerifyListRequest(subject_codes=[f"{i:018d}" for i in range(10_001)])
        for _ in range(5):  # always the size, never the rate, and no token taken
            with pytest.raises(grpc.RpcError) as info:
                stub.VerifyList(too_many, timeout=30)
            assert refusal(info.value) == (grpc.StatusCode.INVALID_ARGUMENT, "E_USAGE")
        assert stub.VerifyList(pb.VerifyListRequest(subject_codes=[ORG]), timeout=10).checked == 1
        assert stub.VerifyList(pb.VerifyListRequest(subject_codes=[ORG]), timeout=10).checked == 1


def test_burst_blocks_the_address_then_lift(pki: Pki, store: Store, tags: dict[str, str]) -> None:
    from node.abuse import Guard

    cfg = AbuseConfig(rate_per_s=0.01, burst=3, block_after=2, cache_s=0.0)
    with serve(pki, CITY, store, abuse=cfg) as s:
        for _ in range(3):
            lookup(s, "public", ORG)
        with pytest.raises(grpc.RpcError) as info:
            lookup(s, "public", ORG)
        assert refusal(info.value) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "E_RATE_LIMITED")
        with pytest.raises(grpc.RpcError) as info:
            lookup(s, "public", ORG)
        assert refusal(info.value) == (grpc.StatusCode.PERMISSION_DENIED, "E_BLOCKED")
        with pytest.raises(grpc.RpcError) as info:  # the address, whoever calls from it
            lookup(s, "gov", ORG, purpose="x")
        assert refusal(info.value) == (grpc.StatusCode.PERMISSION_DENIED, "E_BLOCKED")
        [block] = Guard(store, cfg).list()
        assert block.address == "ipv4:127.0.0.1" and block.caller == "public:portal"
        Guard(store, cfg).lift("ipv4:127.0.0.1")  # as the CLI does, in another "process"
        assert seen(lookup(s, "gov", ORG, purpose="x"), tags)


def test_sharing_suspend_and_resume_without_restart(pki: Pki, store: Store, tags: dict[str, str]) -> None:
    with serve(pki, CITY, store, abuse=AbuseConfig(rate_per_s=1e4, burst=10_000, cache_s=0.0)) as s:
        assert lookup(s, "public", ORG).records
        SharingSwitch(store).set(True, reason="攻击")
        for call in (lambda: lookup(s, "public", ORG),
                     lambda: s.stub(CALLERS["gov"]).VerifyList(pb.VerifyListRequest(
                         subject_codes=[ORG], context=pb.CallerContext(purpose="x")), timeout=10)):
            with pytest.raises(grpc.RpcError) as info:
                call()
            assert refusal(info.value) == (grpc.StatusCode.PERMISSION_DENIED, "E_SHARING_SUSPENDED")
        SharingSwitch(store).set(False)
        assert lookup(s, "public", ORG).records
    assert json.loads(json.dumps([e.action for e in store.audit.iter()]))[-2:] == ["sharing.suspend",
                                                                                   "sharing.resume"]


# --- the read path on both databases ------------------------------------------------------------------
def test_disclosure_reads_the_same_on_sqlite_and_postgresql(pki: Pki, engine: object) -> None:
    from node.access import Caller, Policy, today_in_china
    from node.disclosure import Disclosure

    store = Store(engine)  # type: ignore[arg-type]
    ident = pki.identity(CITY)
    tags = seed(store, Signer(CITY, ident.signing_key, ident.signing_cert_der), catalog())
    reader = Disclosure(store.engine, catalog(), CITY, Policy())
    rows = reader.current(ORG)
    assert {r.record_id for r in rows} == {tags[t] for t in ORG_VIEW["judicial"]}
    assert [r.item for r in reader.current(ORG, ["admin_inspection"])] == ["admin_inspection"]
    assert reader.current("NOBODY") == []
    answer = pb.LookupResponse()
    assert reader.add_views(answer.records, rows, Caller("gov:x", "gov", "p"), today_in_china()) == len(answer.records)
    assert {v.record_id for v in answer.records} >= {tags["pen"], tags["inspection"]}
    hits = reader.current_lists([ORG, ORG2], ["serious_dishonest_list", "red_list"])
    assert sorted(h.item for h in hits) == ["red_list", "serious_dishonest_list"]


def test_a_forged_delegation_is_logged_as_a_security_event_even_from_a_public_caller(
        server: Server, store: Store, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    forged = pb.CallerContext(on_behalf_of="judicial:330100:court", on_behalf_role="judicial", purpose="x",
                              delegation_signature=b"not a signature")
    with caplog.at_level(logging.WARNING, logger="node.transport.query_service"), \
            pytest.raises(grpc.RpcError) as info:
        server.stub(CALLERS["public"]).Lookup(pb.LookupRequest(subject_code=ORG, context=forged), timeout=10)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    events = [r for r in caplog.records if r.getMessage() == "lookup.delegation_refused"]
    assert [(r.peer, r.on_behalf_of) for r in events] == [(CALLERS["public"], "judicial:330100:court")]  # type: ignore[attr-defined]
