"""Batch signatures and chains: sign, forward, verify, and catch every kind of tampering."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node import merkle, signing
from node.errors import ConfigError, SignatureError, UntrustedSignerError
from node.identity import LoadedIdentity, TrustStore, init_ca, issue, load_identity, revoke, write_crl
from node.records import pb, signed_record_bytes
from node.signing import Signer, Verifier, leaf_for

DEPT, DISTRICT, CITY = "dept:330106:scjgj", "district:330106", "city:330100"


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def ids(ca: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, LoadedIdentity]:
    base = tmp_path_factory.mktemp("ids")
    made = {
        DEPT: issue(ca, DEPT, "node", base / "dept"),
        "dept:330106:swj": issue(ca, "dept:330106:swj", "node", base / "swj"),
        DISTRICT: issue(ca, DISTRICT, "node", base / "district"),
        CITY: issue(ca, CITY, "node", base / "city"),
        "agency:xyz": issue(ca, "agency:xyz", "agency", base / "agency"),
    }
    return {k: load_identity(v) for k, v in made.items()}


def signer_for(ident: LoadedIdentity) -> Signer:
    return Signer(ident.node_id, ident.signing_key, ident.signing_cert_der)


def trust_with(ids: dict[str, LoadedIdentity], *names: str) -> TrustStore:
    trust = TrustStore(next(iter(ids.values())).ca_pem)
    for name in names or tuple(ids):
        trust.add_certificate(ids[name].signing_cert_der)
    return trust


@pytest.fixture
def verifier(ids: dict[str, LoadedIdentity]) -> Verifier:
    return Verifier(trust_with(ids))


def body(i: int, origin: str = DEPT) -> bytes:
    return pb.RecordBody(record_id=f"admin_penalty-{i:024x}", revision=1, item="admin_penalty",
                         subject_code=f"91330106MA{i:08d}", subject_kind="legal_person", subject_name="某公司",
                         source_unit="11330106002500000X", origin_node=origin, reported_at_ms=1,
                         fields=[pb.Field(name="CF_WSH", value=f"杭西市监罚〔2024〕{i}号")],
                         status="active").SerializeToString()


def originate(signer: Signer, n: int, *, at: int | None = None) -> list[pb.SignedRecord]:
    bodies = [body(i, signer.node_id) for i in range(n)]
    sigs = signer.sign_origin(bodies, now_ms=at or now_ms())
    return [pb.SignedRecord(body=b, chain=[s]) for b, s in zip(bodies, sigs, strict=True)]


def forward(signer: Signer, records: list[pb.SignedRecord], rule: str = "up.city") -> list[pb.SignedRecord]:
    out = []
    hops = signer.sign_hops(records, [rule] * len(records), now_ms=now_ms())
    for rec, hop in zip(records, hops, strict=True):
        copy = pb.SignedRecord()
        copy.CopyFrom(rec)
        copy.chain.append(hop)
        out.append(copy)
    return out


def codes(results: list[SignatureError | None]) -> list[str | None]:
    return [None if r is None else r.code for r in results]


# --- the happy path ------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 7, 100])
def test_batch_round_trip(ids: dict[str, LoadedIdentity], verifier: Verifier, n: int) -> None:
    records = originate(signer_for(ids[DEPT]), n)
    assert codes(verifier.verify(records)) == [None] * n
    sigs = [r.chain[0] for r in records]
    assert len({s.signature for s in sigs}) == 1  # one Ed25519 signature for the whole batch
    assert [s.leaf_index for s in sigs] == list(range(n))
    assert {s.leaf_count for s in sigs} == {n}
    assert sigs[0].key_id == hashlib.sha256(ids[DEPT].signing_cert_der).digest()
    assert sigs[0].kind == pb.ORIGIN and sigs[0].rule_id == "" and sigs[0].signer == DEPT
    assert len(sigs[0].path) == (n - 1).bit_length()


def test_hop_chain_is_verified_link_by_link(ids: dict[str, LoadedIdentity], verifier: Verifier) -> None:
    records = originate(signer_for(ids[DEPT]), 9)
    assert codes(verifier.verify(records)) == [None] * 9
    at_city = forward(signer_for(ids[DISTRICT]), records, "admin_penalty.up")
    assert codes(verifier.verify(at_city)) == [None] * 9
    at_province = forward(signer_for(ids[CITY]), at_city, "admin_penalty.province")
    assert codes(verifier.verify(at_province)) == [None] * 9
    hop = at_province[3].chain[2]
    assert (hop.kind, hop.signer, hop.rule_id) == (pb.HOP, CITY, "admin_penalty.province")
    # Each hop covers the signature before it.
    d = hashlib.sha256(at_province[3].body).digest()
    leaf = leaf_for(pb.HOP, d, CITY, hop.signed_at_ms, hop.rule_id, at_province[3].chain[1].signature)
    assert merkle.root_from_path(leaf, hop.leaf_index, hop.leaf_count, hop.path) == hop.batch_root


def test_part_of_a_batch_and_mixed_batches_verify(ids: dict[str, LoadedIdentity], verifier: Verifier) -> None:
    a = originate(signer_for(ids[DEPT]), 50)
    b = originate(signer_for(ids["dept:330106:swj"]), 20)
    mixed = a[5:30] + b[::3] + a[40:41]
    assert codes(verifier.verify(mixed)) == [None] * len(mixed)
    assert verifier.verify([]) == []


def test_a_batch_costs_one_ed25519_verification(ids: dict[str, LoadedIdentity], verifier: Verifier,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    records = originate(signer_for(ids[DEPT]), signing.MAX_BATCH_LEAVES)
    calls = []
    real = signing.root_statement

    def counting(root: bytes) -> bytes:
        calls.append(root)
        return real(root)

    monkeypatch.setattr(signing, "root_statement", counting)
    n = len(records)
    assert codes(verifier.verify(records)) == [None] * n
    assert len(calls) == 1
    assert codes(verifier.verify(records[:10])) == [None] * 10
    assert codes(verifier.verify(records[10:])) == [None] * (n - 10)
    assert len(calls) == 1  # the verified (key id, root, signature) triple is remembered


@pytest.mark.parametrize("kind", ["origin", "origin_encoded", "hop"])
def test_a_large_batch_is_signed_in_trees_of_at_most_max_leaves(ids: dict[str, LoadedIdentity], verifier: Verifier,
                                                               kind: str) -> None:
    cap = signing.MAX_BATCH_LEAVES
    n = 2 * cap + 3
    records = originate(signer_for(ids[DEPT]), n)
    if kind == "origin_encoded":
        at = now_ms()
        encoded = signer_for(ids[DEPT]).sign_origin_encoded([hashlib.sha256(r.body).digest() for r in records],
                                                             now_ms=at)
        records = [pb.SignedRecord.FromString(signed_record_bytes(r.body, (e,))) for r, e in zip(records, encoded,
                                                                                                 strict=True)]
    elif kind == "hop":
        records = forward(signer_for(ids[DISTRICT]), records, "admin_penalty.up")
    sigs = [r.chain[-1] for r in records]
    assert [s.leaf_count for s in sigs] == [cap] * (2 * cap) + [3] * 3
    assert [s.leaf_index for s in sigs] == [*range(cap), *range(cap), 0, 1, 2]
    assert len({s.batch_root for s in sigs}) == 3
    assert max(len(s.path) for s in sigs) == (cap - 1).bit_length()
    assert codes(verifier.verify(records)) == [None] * n


# --- tampering ------------------------------------------------------------------------------------
def _flip(data: bytes, at: int = -1) -> bytes:
    b = bytearray(data)
    b[at] ^= 0x01
    return bytes(b)


def _tampered(records: list[pb.SignedRecord], i: int,
              change: Callable[[pb.SignedRecord], None]) -> list[pb.SignedRecord]:
    out = []
    for j, rec in enumerate(records):
        copy = pb.SignedRecord()
        copy.CopyFrom(rec)
        if j == i:
            change(copy)
        out.append(copy)
    return out


def _set_body(rec: pb.SignedRecord) -> None:
    rec.body = _flip(rec.body)


def _set_signature(rec: pb.SignedRecord) -> None:
    rec.chain[0].signature = _flip(rec.chain[0].signature, 5)


def _set_path(rec: pb.SignedRecord) -> None:
    rec.chain[0].path[1] = _flip(rec.chain[0].path[1], 0)


def _set_root(rec: pb.SignedRecord) -> None:
    rec.chain[0].batch_root = _flip(rec.chain[0].batch_root)


def _set_index(rec: pb.SignedRecord) -> None:
    rec.chain[0].leaf_index += 1


def _set_time(rec: pb.SignedRecord) -> None:
    rec.chain[0].signed_at_ms += 1


def _set_rule(rec: pb.SignedRecord) -> None:
    rec.chain[0].rule_id = "sneaky"


def _short_path(rec: pb.SignedRecord) -> None:
    del rec.chain[0].path[-1]


def _malformed_body(rec: pb.SignedRecord) -> None:
    rec.body = b"\xff\xff\xff"


def _no_chain(rec: pb.SignedRecord) -> None:
    del rec.chain[:]


def _claim_other_origin(rec: pb.SignedRecord) -> None:
    rec.chain[0].signer = "dept:330106:swj"


def _hop_kind(rec: pb.SignedRecord) -> None:
    rec.chain[0].kind = pb.HOP


@pytest.mark.parametrize(("change", "code"), [
    (_set_body, "E_MERKLE_PATH"),
    (_set_signature, "E_SIGNATURE_INVALID"),
    (_set_path, "E_MERKLE_PATH"),
    (_set_root, "E_MERKLE_PATH"),
    (_set_index, "E_MERKLE_PATH"),
    (_set_time, "E_MERKLE_PATH"),
    (_set_rule, "E_MERKLE_PATH"),
    (_short_path, "E_MERKLE_PATH"),
    (_malformed_body, "E_BODY_MALFORMED"),
    (_no_chain, "E_CHAIN_EMPTY"),
    (_claim_other_origin, "E_SIGNER_MISMATCH"),
    (_hop_kind, "E_CHAIN_ORDER"),
])
def test_one_change_is_caught_with_its_code_and_only_there(ids: dict[str, LoadedIdentity], verifier: Verifier,
                                                           change: Callable[[pb.SignedRecord], None],
                                                           code: str) -> None:
    records = originate(signer_for(ids[DEPT]), 8)
    results = verifier.verify(_tampered(records, 3, change))
    assert codes(results) == [None, None, None, code, None, None, None, None]
    assert isinstance(results[3], SignatureError)


@pytest.mark.parametrize("change", [_set_body, _set_signature, _set_path, _set_index, _set_rule, _no_chain,
                                    _claim_other_origin, _hop_kind])
def test_bodies_decoded_by_the_caller_are_verified_the_same(ids: dict[str, LoadedIdentity], verifier: Verifier,
                                                            change: Callable[[pb.SignedRecord], None]) -> None:
    records = _tampered(originate(signer_for(ids[DEPT]), 8), 3, change)
    decoded = [(pb.RecordBody.FromString(r.body).origin_node, hashlib.sha256(r.body).digest()) for r in records]
    assert codes(verifier.verify(records, decoded=decoded)) == codes(verifier.verify(records))


def test_swapping_bodies_between_records_is_caught(ids: dict[str, LoadedIdentity], verifier: Verifier) -> None:
    records = originate(signer_for(ids[DEPT]), 4)
    b1, b2 = records[1].body, records[2].body
    swapped = _tampered(_tampered(records, 1, lambda r: setattr(r, "body", b2)), 2,
                        lambda r: setattr(r, "body", b1))
    assert codes(verifier.verify(swapped)) == [None, "E_MERKLE_PATH", "E_MERKLE_PATH", None]


def test_every_byte_of_a_body_matters(ids: dict[str, LoadedIdentity], verifier: Verifier) -> None:
    [rec] = originate(signer_for(ids[DEPT]), 1)
    for i in range(len(rec.body)):
        bad = _tampered([rec], 0, lambda r, i=i: setattr(r, "body", _flip(r.body, i)))
        [result] = verifier.verify(bad)
        assert result is not None and result.code in ("E_MERKLE_PATH", "E_BODY_MALFORMED", "E_SIGNER_MISMATCH")


def test_chain_order_changes(ids: dict[str, LoadedIdentity], verifier: Verifier) -> None:
    records = originate(signer_for(ids[DEPT]), 3)
    chained = forward(signer_for(ids[CITY]), forward(signer_for(ids[DISTRICT]), records))

    def swap_hops(rec: pb.SignedRecord) -> None:
        origin, h1, h2 = (pb.Signature(), pb.Signature(), pb.Signature())
        origin.CopyFrom(rec.chain[0])
        h1.CopyFrom(rec.chain[1])
        h2.CopyFrom(rec.chain[2])
        del rec.chain[:]
        rec.chain.extend([origin, h2, h1])

    def origin_last(rec: pb.SignedRecord) -> None:
        first = pb.Signature()
        first.CopyFrom(rec.chain[0])
        del rec.chain[0]
        rec.chain.append(first)

    def drop_origin(rec: pb.SignedRecord) -> None:
        del rec.chain[0]

    def drop_middle_hop(rec: pb.SignedRecord) -> None:
        del rec.chain[1]

    assert codes(verifier.verify(_tampered(chained, 1, swap_hops))) == [None, "E_CHAIN_ORDER", None]
    assert codes(verifier.verify(_tampered(chained, 1, origin_last))) == [None, "E_CHAIN_ORDER", None]
    assert codes(verifier.verify(_tampered(chained, 1, drop_origin))) == [None, "E_CHAIN_ORDER", None]
    assert codes(verifier.verify(_tampered(chained, 1, drop_middle_hop))) == [None, "E_MERKLE_PATH", None]


def test_moving_a_hop_to_another_record_is_caught(ids: dict[str, LoadedIdentity], verifier: Verifier) -> None:
    records = forward(signer_for(ids[DISTRICT]), originate(signer_for(ids[DEPT]), 3))
    other = pb.Signature()
    other.CopyFrom(records[2].chain[1])
    moved = _tampered(records, 0, lambda r: r.chain[1].CopyFrom(other))
    assert codes(verifier.verify(moved)) == ["E_MERKLE_PATH", None, None]


# --- who signed ------------------------------------------------------------------------------------
def _forge(key: Ed25519PrivateKey, key_id: bytes, claimed: str, bodies: list[bytes],
           kind: pb.SignatureKind = pb.ORIGIN) -> list[pb.SignedRecord]:
    """Sign honestly with ``key`` but write ``claimed`` as the signer (what Signer refuses to do)."""
    at = now_ms()
    leaves = [leaf_for(kind, hashlib.sha256(b).digest(), claimed, at, "", b"") for b in bodies]
    root, paths = merkle.tree_paths(leaves)
    sig = key.sign(signing.root_statement(root))
    return [pb.SignedRecord(body=b, chain=[pb.Signature(
        kind=kind, signer=claimed, key_id=key_id, signed_at_ms=at, batch_root=root, signature=sig,
        leaf_index=i, leaf_count=len(bodies), path=p)]) for i, (b, p) in enumerate(zip(bodies, paths, strict=True))]


def test_signer_field_must_match_the_certificate(ids: dict[str, LoadedIdentity], verifier: Verifier) -> None:
    swj = ids["dept:330106:swj"]
    forged = _forge(swj.signing_key, swj.signing_key_id, DEPT, [body(1, DEPT), body(2, DEPT)])
    assert codes(verifier.verify(forged)) == ["E_SIGNER_MISMATCH"] * 2


def test_origin_must_be_the_body_origin(ids: dict[str, LoadedIdentity], verifier: Verifier) -> None:
    # swj signs honestly as itself a body that names scjgj as its origin.
    bodies = [body(1, DEPT)]
    sigs = signer_for(ids["dept:330106:swj"]).sign_origin(bodies, now_ms=now_ms())
    [result] = verifier.verify([pb.SignedRecord(body=bodies[0], chain=sigs)])
    assert result is not None and result.code == "E_SIGNER_MISMATCH"


def test_unknown_signer(ids: dict[str, LoadedIdentity]) -> None:
    records = originate(signer_for(ids[DEPT]), 3)
    only_city = Verifier(trust_with(ids, CITY))
    assert codes(only_city.verify(records)) == ["E_SIGNER_UNKNOWN"] * 3


def test_role_that_may_not_sign(ids: dict[str, LoadedIdentity], verifier: Verifier) -> None:
    agency = ids["agency:xyz"]
    records = originate(signer_for(agency), 2)
    results = verifier.verify(records)
    assert codes(results) == ["E_SIGNER_UNTRUSTED"] * 2
    assert isinstance(results[0], UntrustedSignerError)
    assert codes(Verifier(trust_with(ids), signer_roles=("node", "agency")).verify(records)) == [None, None]


def test_revoked_signer(ca: Path, ids: dict[str, LoadedIdentity], tmp_path: Path) -> None:
    victim = load_identity(issue(ca, "dept:330106:gsj", "node", tmp_path / "gsj"))
    records = originate(signer_for(victim), 3)
    trust = trust_with(ids)
    trust.add_certificate(victim.signing_cert_der)
    verifier = Verifier(trust)
    assert codes(verifier.verify(records)) == [None] * 3  # now cached as verified…
    revoke(ca, victim.directory, "key_compromise")
    trust.load_crl(write_crl(ca, tmp_path / "crl.pem").read_bytes())
    results = verifier.verify(records)  # …yet revocation still applies
    assert codes(results) == ["E_SIGNER_UNTRUSTED"] * 3
    assert results[0] is not None and "revoked" in results[0].message


def test_signature_outside_the_certificate_validity(ca: Path, ids: dict[str, LoadedIdentity],
                                                    tmp_path: Path) -> None:
    start = datetime.now(UTC) - timedelta(days=10)
    old = load_identity_unchecked(issue(ca, "dept:330106:old", "node", tmp_path / "old", days=1,
                                        not_before=start))
    signer = Signer("dept:330106:old", old[0], old[1])
    trust = trust_with(ids)
    trust.add_certificate(old[1])
    during = int((start + timedelta(hours=2)).timestamp() * 1000)
    assert codes(Verifier(trust).verify(originate(signer, 2, at=during))) == [None, None]
    results = Verifier(trust).verify(originate(signer, 2))
    assert codes(results) == ["E_SIGNER_UNTRUSTED"] * 2
    assert results[0] is not None and "expired" in results[0].message


def load_identity_unchecked(directory: Path) -> tuple[Ed25519PrivateKey, bytes]:
    """The signing key and certificate of an expired identity (load_identity refuses it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key((directory / "signing-key.pem").read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    cert = x509.load_pem_x509_certificate((directory / "signing-cert.pem").read_bytes())
    return key, cert.public_bytes(serialization.Encoding.DER)


# --- the signer's own checks and leaf encoding ---------------------------------------------------
def test_signer_refuses_a_mismatched_identity(ids: dict[str, LoadedIdentity]) -> None:
    dept = ids[DEPT]
    with pytest.raises(ConfigError, match="names"):
        Signer(CITY, dept.signing_key, dept.signing_cert_der)
    with pytest.raises(ConfigError, match="does not match"):
        Signer(DEPT, Ed25519PrivateKey.generate(), dept.signing_cert_der)
    with pytest.raises(ConfigError):
        Signer(DEPT, dept.signing_key, b"not a certificate")


def test_sign_hops_arguments(ids: dict[str, LoadedIdentity]) -> None:
    district = signer_for(ids[DISTRICT])
    records = originate(signer_for(ids[DEPT]), 2)
    with pytest.raises(ValueError):
        district.sign_hops(records, ["r"], now_ms=now_ms())
    with pytest.raises(SignatureError) as err:
        district.sign_hops([pb.SignedRecord(body=body(1))], ["r"], now_ms=now_ms())
    assert err.value.code == "E_CHAIN_EMPTY"
    assert district.sign_hops([], [], now_ms=now_ms()) == []
    assert signer_for(ids[DEPT]).sign_origin([], now_ms=now_ms()) == []


def test_leaf_layout_is_unambiguous() -> None:
    d = hashlib.sha256(b"body").digest()
    leaf = leaf_for(pb.HOP, d, "ab", 5, "c", b"\x01\x02")
    assert leaf == (signing.LEAF_DOMAIN + b"\x02" + d + b"\x00\x00\x00\x02ab" + (5).to_bytes(8, "big")
                    + b"\x00\x00\x00\x01c" + b"\x00\x00\x00\x02\x01\x02")
    variants = {
        leaf_for(pb.HOP, d, "ab", 5, "c", b""),
        leaf_for(pb.HOP, d, "a", 5, "bc", b""),
        leaf_for(pb.HOP, d, "abc", 5, "", b""),
        leaf_for(pb.ORIGIN, d, "ab", 5, "c", b""),
        leaf_for(pb.HOP, d, "ab", 6, "c", b""),
    }
    assert len(variants) == 5
    with pytest.raises(ValueError):
        leaf_for(pb.HOP, d[:31], "ab", 5, "c", b"")
    with pytest.raises(ValueError):
        leaf_for(pb.SIGNATURE_KIND_UNSPECIFIED, d, "ab", 5, "c", b"")


def test_verifier_is_safe_across_threads(ids: dict[str, LoadedIdentity], verifier: Verifier) -> None:
    batches = [originate(signer_for(ids[DEPT]), 20) for _ in range(4)]
    errors: list[object] = []

    def work(records: list[pb.SignedRecord]) -> None:
        for _ in range(10):
            if any(r is not None for r in verifier.verify(records)):
                errors.append("failed")

    threads = [threading.Thread(target=work, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@pytest.mark.parametrize("count", [1, 2, 7, 1000])
def test_encoded_origin_signatures_are_the_serialised_messages(count: int, ids: dict[str, LoadedIdentity],
                                                               verifier: Verifier):
    signer = signer_for(ids[DEPT])
    bodies = [pb.RecordBody(record_id=f"admin_penalty-{i:024d}", revision=1, item="admin_penalty", origin_node=DEPT,
                            subject_name="某公司" * (i % 5 + 1)).SerializeToString() for i in range(count)]
    at = now_ms()
    messages = signer.sign_origin(bodies, now_ms=at)
    encoded = signer.sign_origin_encoded([hashlib.sha256(b).digest() for b in bodies], now_ms=at)
    assert encoded == [m.SerializeToString() for m in messages]
    for body, sig, message in zip(bodies, encoded, messages, strict=True):
        wire = signed_record_bytes(body, (sig,))
        assert wire == pb.SignedRecord(body=body, chain=[message]).SerializeToString()
        parsed = pb.SignedRecord.FromString(wire)
        assert parsed.body == body and parsed.chain[0] == message
    assert verifier.verify([pb.SignedRecord.FromString(signed_record_bytes(b, (s,)))
                            for b, s in zip(bodies, encoded, strict=True)]) == [None] * count
