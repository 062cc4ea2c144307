"""Node ids, the development CA, the trust store and loading a node's keys."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from node.errors import ConfigError, UntrustedSignerError
from node.identity import (
    TrustStore,
    check_identity,
    init_ca,
    issue,
    load_identity,
    parse_node_id,
    revoke,
    write_crl,
)


def _now() -> datetime:
    # Read the clock at each use: a module-level instant goes stale in a long test session.
    return datetime.now(UTC)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _der(path: Path) -> bytes:
    return _cert(path).public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return init_ca(tmp_path_factory.mktemp("other-ca"), name="someone else's CA")


@pytest.fixture(scope="module")
def district(ca: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return issue(ca, "district:330106", "node", tmp_path_factory.mktemp("district"))


def _trust(ca: Path, crl: Path | None = None) -> TrustStore:
    return TrustStore.from_files(ca / "ca.pem", crl)


# --- node ids ------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["city:330100", "district:330106", "dept:330106:scjgj", "province:330000",
                                  "dept:330100:fgw", "gov:330100:fgw", "agency:xyz", "public:portal",
                                  "admin:330100:ops", "source:330106:scjgj-db", "judicial:330100:court"])
def test_valid_node_ids(text: str) -> None:
    assert str(parse_node_id(text)) == text


@pytest.mark.parametrize("text", ["", "city", "city:3301", "city:330106", "city:330000", "district:330100",
                                  "province:330100", "dept:330106", "dept:330106:SCJGJ", "dept:330106:a b",
                                  "node:330100", "town:330106", "gov", "gov:a:b:c:d", "city:330100:x",
                                  "agency:" + "x" * 60, "dept:330106:-x"])
def test_invalid_node_ids(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_node_id(text)
    assert err.value.field == "node_id"


def test_node_id_parts() -> None:
    nid = parse_node_id("dept:330106:scjgj")
    assert (nid.kind, nid.region, nid.names, nid.is_node) == ("dept", "330106", ("scjgj",), True)
    assert not parse_node_id("gov:330100:fgw").is_node


@pytest.mark.parametrize(("node_id", "role"), [("city:330100", "gov"), ("gov:330100:fgw", "node"),
                                               ("gov:330100:fgw", "agency"), ("city:330100", "root")])
def test_role_must_fit_the_id(node_id: str, role: str) -> None:
    with pytest.raises(ConfigError):
        check_identity(node_id, role)


# --- the CA and issued files ---------------------------------------------------------------------
def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ca_files_and_modes(ca: Path) -> None:
    assert _mode(ca / "ca-key.pem") == 0o600
    cert = _cert(ca / "ca.pem")
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_ca_is_never_overwritten(ca: Path) -> None:
    before = (ca / "ca-key.pem").read_bytes()
    with pytest.raises(ConfigError, match="refusing"):
        init_ca(ca)
    assert (ca / "ca-key.pem").read_bytes() == before


def test_issued_files_modes_and_contents(district: Path) -> None:
    assert _mode(district / "key.pem") == 0o600
    assert _mode(district / "signing-key.pem") == 0o600
    assert _mode(district / "cert.pem") == 0o644
    tls = _cert(district / "cert.pem")
    assert tls.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "district:330106"
    assert tls.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "node"
    assert isinstance(tls.public_key(), ec.EllipticCurvePublicKey)
    san = tls.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    # The hosts, and the node's own name, which its children and peers check (node.hostnames).
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "district.330106.node.invalid"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:credit-node:district:330106"]
    eku = tls.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
    signing = _cert(district / "signing-cert.pem")
    assert isinstance(signing.public_key(), ed25519.Ed25519PublicKey)
    assert signing.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    assert signing.subject == tls.subject


def test_keys_are_0600_even_with_a_permissive_umask(ca: Path, tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        issue(ca, "city:330100", "node", tmp_path / "city")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "city" / "key.pem") == 0o600
    assert _mode(tmp_path / "city" / "signing-key.pem") == 0o600


def test_issue_refuses_to_overwrite_and_bad_identities(ca: Path, district: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        issue(ca, "district:330106", "node", district)
    with pytest.raises(ConfigError):
        issue(ca, "district:330106", "gov", tmp_path / "x")
    with pytest.raises(ConfigError, match="hosts"):
        issue(ca, "district:330108", "node", tmp_path / "y", hosts=["bad host\u00e9"])


# --- loading a node's identity -------------------------------------------------------------------
def test_load_identity(district: Path) -> None:
    loaded = load_identity(district)
    assert (loaded.node_id, loaded.role) == ("district:330106", "node")
    assert loaded.signing_key_id == hashlib.sha256(_der(district / "signing-cert.pem")).digest()
    text = repr(loaded)
    assert "PRIVATE" not in text and "signing_key" not in text and "tls_key_pem" not in text


def test_load_identity_names_the_missing_file(ca: Path, tmp_path: Path) -> None:
    d = issue(ca, "dept:330106:scjgj", "node", tmp_path / "dept")
    (d / "signing-cert.pem").unlink()
    with pytest.raises(ConfigError, match=r"signing-cert\.pem"):
        load_identity(d)


def test_load_identity_refuses_a_readable_key(ca: Path, tmp_path: Path) -> None:
    d = issue(ca, "dept:330106:scjgj", "node", tmp_path / "dept")
    (d / "key.pem").chmod(0o640)
    with pytest.raises(ConfigError, match=r"key\.pem.*group/others.*chmod 600"):
        load_identity(d)


def test_load_identity_refuses_a_foreign_ca_file(ca: Path, other_ca: Path, tmp_path: Path) -> None:
    d = issue(ca, "dept:330106:scjgj", "node", tmp_path / "dept")
    (d / "ca.pem").write_bytes((other_ca / "ca.pem").read_bytes())
    with pytest.raises(ConfigError, match="another CA"):
        load_identity(d)


# --- trust decisions -----------------------------------------------------------------------------
def test_trust_store_accepts_our_certificate(ca: Path, district: Path) -> None:
    trust = _trust(ca)
    der = _der(district / "signing-cert.pem")
    key_id = trust.add_certificate(der)
    assert key_id == hashlib.sha256(der).digest()
    cert = trust.get(key_id)
    assert cert is not None
    who = trust.check(cert, _now())
    assert (who.node_id, who.role) == ("district:330106", "node")
    assert trust.get(b"\x00" * 32) is None


def test_certificate_from_another_ca_is_refused(ca: Path, other_ca: Path, tmp_path: Path) -> None:
    foreign = issue(other_ca, "district:330106", "node", tmp_path / "foreign")
    trust = _trust(ca)
    with pytest.raises(UntrustedSignerError, match="another CA") as err:
        trust.add_certificate(_der(foreign / "signing-cert.pem"))
    assert err.value.code == "E_SIGNER_UNTRUSTED"
    with pytest.raises(UntrustedSignerError):
        trust.check(_cert(foreign / "cert.pem"), _now())


def test_same_issuer_name_but_other_key_is_refused(ca: Path, tmp_path: Path) -> None:
    # Another CA that copies our CA's name: only the signature tells them apart.
    impostor = init_ca(tmp_path / "impostor", name="credit federation dev CA")
    forged = issue(impostor, "city:330100", "node", tmp_path / "forged")
    with pytest.raises(UntrustedSignerError, match="not signed by the federation CA"):
        _trust(ca).check(_cert(forged / "cert.pem"), _now())


def test_a_root_rolled_over_under_the_same_name_trusts_the_certificates_of_both(ca: Path, district: Path,
                                                                              tmp_path: Path) -> None:
    # A bundle of the old root and its successor, which keeps the federation's name: grpc's
    # handshake accepts a certificate of either, so the node must too.
    successor = init_ca(tmp_path / "successor", name="credit federation dev CA")
    renewed = issue(successor, "city:330100", "node", tmp_path / "renewed")
    trust = TrustStore(((ca / "ca.pem").read_bytes() + (successor / "ca.pem").read_bytes()),
                       write_crl(successor, tmp_path / "crl.pem").read_bytes())
    assert trust.check(_cert(renewed / "cert.pem"), _now()).node_id == "city:330100"
    assert trust.check(_cert(district / "cert.pem"), _now()).node_id == "district:330106"


def test_expired_and_not_yet_valid(ca: Path, tmp_path: Path) -> None:
    start = _now() - timedelta(days=10)
    d = issue(ca, "district:330108", "node", tmp_path / "old", days=1, not_before=start)
    trust = _trust(ca)
    cert = _cert(d / "signing-cert.pem")
    trust.add_certificate(_der(d / "signing-cert.pem"))  # still admitted: old records verify
    with pytest.raises(UntrustedSignerError, match="expired"):
        trust.check(cert, _now())
    assert trust.check(cert, start + timedelta(hours=1)).node_id == "district:330108"
    with pytest.raises(UntrustedSignerError, match="not yet valid"):
        trust.check(cert, start - timedelta(seconds=1))
    with pytest.raises(ConfigError, match="expired"):
        load_identity(d)
    with pytest.raises(ValueError):
        trust.check(cert, datetime.now())  # naive time: ambiguous, refused


def test_revoked_certificate_is_refused(ca: Path, tmp_path: Path) -> None:
    d = issue(ca, "district:330109", "node", tmp_path / "revoked")
    keep = issue(ca, "district:330110", "node", tmp_path / "kept")
    trust = _trust(ca)
    key_id = trust.add_certificate(_der(d / "signing-cert.pem"))
    serials = revoke(ca, d, "key_compromise")
    assert _cert(d / "cert.pem").serial_number in serials
    crl_path = write_crl(ca, tmp_path / "crl.pem")
    crl = x509.load_pem_x509_crl(crl_path.read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(serials[1]) is not None
    trust.load_crl(crl_path.read_bytes())
    cert = trust.get(key_id)
    assert cert is not None
    with pytest.raises(UntrustedSignerError, match="revoked"):
        trust.check(cert, _now())
    with pytest.raises(UntrustedSignerError, match="revoked"):
        trust.add_certificate(_der(d / "cert.pem"))
    assert trust.check(_cert(keep / "cert.pem"), _now()).node_id == "district:330110"
    # A store built with the CRL from the start refuses too.
    with pytest.raises(UntrustedSignerError, match="revoked"):
        _trust(ca, crl_path).check(_cert(d / "cert.pem"), _now())


def test_revoke_by_serial_and_bad_reason(ca: Path, tmp_path: Path) -> None:
    d = issue(ca, "agency:xyz", "agency", tmp_path / "agency")
    serial = _cert(d / "cert.pem").serial_number
    assert revoke(ca, serial, "superseded") == [serial]
    with pytest.raises(ConfigError, match="reason"):
        revoke(ca, serial, "because")
    crl = x509.load_pem_x509_crl(write_crl(ca, tmp_path / "crl.pem").read_bytes())
    entry = crl.get_revoked_certificate_by_serial_number(serial)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.superseded


def test_crl_from_another_ca_is_refused(ca: Path, other_ca: Path, tmp_path: Path) -> None:
    crl = write_crl(other_ca, tmp_path / "crl.pem")
    with pytest.raises(ConfigError, match="not signed by the federation CA"):
        _trust(ca).load_crl(crl.read_bytes())


def _build(ca: Path, *, ca_flag: bool = False, digital_signature: bool = True) -> x509.Certificate:
    """A certificate made by hand with our CA's key, to exercise what issue() never produces."""
    ca_cert = _cert(ca / "ca.pem")
    ca_key = serialization.load_pem_private_key((ca / "ca-key.pem").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "node"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "city:330100")])
    usage = x509.KeyUsage(digital_signature=digital_signature, content_commitment=False,
                          key_encipherment=not digital_signature, data_encipherment=False, key_agreement=False,
                          key_cert_sign=ca_flag, crl_sign=False, encipher_only=False, decipher_only=False)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(_now() - timedelta(hours=1)).not_valid_after(_now() + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca_flag, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .sign(ca_key, hashes.SHA256()))


def test_wrong_key_usage_and_ca_certificates_are_refused(ca: Path) -> None:
    trust = _trust(ca)
    assert trust.check(_build(ca), _now()).node_id == "city:330100"
    with pytest.raises(UntrustedSignerError, match="key usage"):
        trust.check(_build(ca, digital_signature=False), _now())
    with pytest.raises(UntrustedSignerError, match="CA certificate"):
        trust.check(_build(ca, ca_flag=True), _now())


def test_trust_store_is_safe_across_threads(ca: Path, district: Path) -> None:
    trust = _trust(ca)
    cert = _cert(district / "cert.pem")
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(50):
                assert trust.check(cert, _now()).node_id == "district:330106"
                trust.add_certificate(_der(district / "signing-cert.pem"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_temporary_key_left_by_a_killed_run_is_swept(tmp_path: Path) -> None:
    ca = init_ca(tmp_path / "ca")
    out = tmp_path / "n"
    out.mkdir()
    stale = out / ".key.pem.0badc0de.tmp"
    stale.write_bytes(b"-----BEGIN PRIVATE KEY----- (a key nobody uses)")
    stale.chmod(0o600)
    issue(ca, "dept:330102:scjgj", "node", out)
    assert not stale.exists() and not list(out.glob(".*.tmp"))


@pytest.mark.parametrize("name", ["", "  ", "证" * 65])
def test_a_ca_name_no_certificate_can_hold_is_refused_before_anything_is_written(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        init_ca(tmp_path / "ca", name=name)
    assert caught.value.field == "name" and not (tmp_path / "ca").exists()


def test_directories_made_for_keys_are_their_owners_alone_whatever_the_umask(tmp_path: Path) -> None:
    import os

    old = os.umask(0)
    try:
        ca = init_ca(tmp_path / "ca")
        issue(ca, "dept:330102:scjgj", "node", tmp_path / "n")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "ca") == _mode(tmp_path / "n") == 0o700
    assert _mode(tmp_path / "n" / "key.pem") == 0o600
