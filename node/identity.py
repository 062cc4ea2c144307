"""Node identity: the development CA, issuing and revoking certificates, loading a node's keys.

A node owns two certificates to one identity (DESIGN §2.4): an ECDSA P-256 TLS certificate, which
every TLS stack in the federation (grpc, RabbitMQ/Erlang, Python ssl) accepts, and an Ed25519
certificate for record signatures. Both name the node id in the subject CN and its role in the OU
(grammar: :mod:`node.nodeid`); the trust decisions live in :mod:`node.truststore`.

Private keys are written 0600 from the first byte (``os.open(..., 0o600)``, then linked into place)
and never logged (out of every ``repr``). The CA keeps its revocations in ``revoked.json``.
"""

from __future__ import annotations

import contextlib
import glob
import ipaddress
import json
import os
import secrets
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from node.errors import ConfigError, UntrustedSignerError
from node.hostnames import host_problem, node_name
from node.nodeid import LEVELS, ROLES, Identity, NodeId, check_identity, parse_node_id
from node.truststore import TrustStore, identity_of, key_id_of

__all__ = ["LEVELS", "ROLES", "Identity", "LoadedIdentity", "NodeId", "NodeKeys", "TrustStore", "check_identity",
           "identity_of", "init_ca", "issue", "key_id_of", "load_identity", "parse_node_id", "revoke", "write_crl"]

CA_CERT, CA_KEY, CA_STATE = "ca.pem", "ca-key.pem", "revoked.json"
TLS_CERT, TLS_KEY, SIGNING_CERT, SIGNING_KEY = "cert.pem", "key.pem", "signing-cert.pem", "signing-key.pem"
URI_PREFIX = "urn:credit-node:"
_ORG = "credit federation"
_SKEW = timedelta(minutes=5)  # backdate not_before so a peer whose clock is behind accepts it


# --- files -----------------------------------------------------------------------------------------
def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` with ``mode`` from creation on; refuses to replace a file."""
    # A temporary copy of this file is one a killed run left behind (perhaps a private key nobody
    # uses): written only here, never read.
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed it; a public cert must stay readable
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)  # unlike rename, fails if the target exists: never clobber a key
    except FileExistsError:
        raise ConfigError(f"{path} already exists; refusing to overwrite it") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    _write_atomic(path, pem, 0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    _write_atomic(path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"missing file: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None


def _read_private(path: Path) -> bytes:
    """Read a private key file, refusing one that group or others could read or write."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise ConfigError(f"missing file: {path}") from None
    if mode & 0o077:
        raise ConfigError(f"{path} is accessible by group/others (mode {mode:04o}); "
                          f"run: chmod 600 {path}")
    return _read(path)


def _load_ca(ca_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = _parse_cert(_read(ca_dir / CA_CERT), ca_dir / CA_CERT)
    key = serialization.load_pem_private_key(_read_private(ca_dir / CA_KEY), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise ConfigError(f"{ca_dir / CA_KEY} is not the key of {ca_dir / CA_CERT}")
    return cert, key


def _parse_cert(pem: bytes, where: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise ConfigError(f"{where} is not a PEM certificate") from None


# --- the development CA ----------------------------------------------------------------------------
def init_ca(out_dir: Path, *, name: str = "credit federation dev CA", days: int = 3650) -> Path:
    """Create a CA in ``out_dir`` (``ca.pem``, ``ca-key.pem`` 0600); returns ``out_dir``.

    Refuses to overwrite an existing CA: every certificate it issued would become unverifiable.
    """
    if not 1 <= len(name.strip()) <= 64:  # an X.509 common name holds 1 to 64 characters
        raise ConfigError(f"the CA's name must have 1 to 64 characters, not {len(name.strip())}", field="name")
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # it holds private keys: its owner's alone
    for existing in (out_dir / CA_CERT, out_dir / CA_KEY):
        if existing.exists():
            raise ConfigError(f"{existing} already exists; refusing to replace a CA")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - _SKEW).not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     key_cert_sign=True, crl_sign=True, encipher_only=False,
                                     decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(out_dir / CA_KEY, key)  # key first: a ca.pem without its key is useless
    _write_cert(out_dir / CA_CERT, cert)
    return out_dir


def issue(ca_dir: Path, node_id: str, role: str, out_dir: Path, *, hosts: Sequence[str] | None = None,
          days: int = 825, not_before: datetime | None = None) -> Path:
    """Issue a node's TLS and signing certificates into ``out_dir``; returns ``out_dir``.

    Writes ``cert.pem``/``key.pem`` (ECDSA P-256; SAN: ``hosts``, ``urn:credit-node:<id>``, a node's
    :func:`~node.hostnames.node_name`; uses: :func:`_tls_usage`), ``signing-cert.pem``/``signing-key.pem``
    (Ed25519, digitalSignature + contentCommitment) and ``ca.pem``. Refuses to overwrite existing files.
    """
    check_identity(node_id, role)
    hosts = hosts if hosts is not None else ("localhost", "127.0.0.1") if role == "node" else ()
    if days < 1:
        raise ConfigError("days must be at least 1", field="days")
    ca_cert, ca_key = _load_ca(ca_dir)
    start = (not_before or datetime.now(UTC) - _SKEW).astimezone(UTC)
    end = min(start + timedelta(days=days), ca_cert.not_valid_after_utc)
    sans: list[x509.GeneralName] = [_host_name(h) for h in hosts]
    sans.append(x509.UniformResourceIdentifier(URI_PREFIX + node_id))
    if role == "node":  # the name its callers check, whatever address they reach it by
        sans.append(x509.DNSName(node_name(node_id)))
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # it holds private keys: its owner's alone
    targets = [out_dir / n for n in (TLS_CERT, TLS_KEY, SIGNING_CERT, SIGNING_KEY, CA_CERT)]
    clash = [str(p) for p in targets if p.exists()]
    if clash:
        raise ConfigError(f"refusing to overwrite {', '.join(clash)}; issue into an empty directory")

    tls_key = ec.generate_private_key(ec.SECP256R1())
    tls = _leaf_builder(ca_cert, node_id, role, tls_key.public_key(), start, end, sans)
    tls = tls.add_extension(_key_usage(key_agreement=True), critical=True)
    tls = tls.add_extension(x509.ExtendedKeyUsage(_tls_usage(role, bool(hosts))), critical=False)
    sign_key = ed25519.Ed25519PrivateKey.generate()
    signing = _leaf_builder(ca_cert, node_id, role, sign_key.public_key(), start, end,
                            [x509.UniformResourceIdentifier(URI_PREFIX + node_id)])
    signing = signing.add_extension(_key_usage(content_commitment=True), critical=True)

    _write_key(out_dir / TLS_KEY, tls_key)
    _write_cert(out_dir / TLS_CERT, tls.sign(ca_key, hashes.SHA256()))
    _write_key(out_dir / SIGNING_KEY, sign_key)
    _write_cert(out_dir / SIGNING_CERT, signing.sign(ca_key, hashes.SHA256()))
    _write_cert(out_dir / CA_CERT, ca_cert)
    return out_dir


def _tls_usage(role: str, serves: bool) -> list[x509.ObjectIdentifier]:
    """A node's calls and serves, a caller's only calls, a service's (a broker) only serves: clients check
    only the CA and host name, so a citizen's that could serve would pass for a parent (certs/README.md)."""
    client, server = ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH
    return [client, server] if role == "node" else [server] if serves else [client]


def _host_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    if problem := host_problem(host):
        raise ConfigError(f"{host!r} {problem}", field="hosts")
    return x509.DNSName(host)


def _key_usage(*, content_commitment: bool = False, key_agreement: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=content_commitment,
                         key_encipherment=False, data_encipherment=False, key_agreement=key_agreement,
                         key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False)


def _leaf_builder(ca: x509.Certificate, node_id: str, role: str,
                  public_key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey,
                  start: datetime, end: datetime, sans: list[x509.GeneralName]) -> x509.CertificateBuilder:
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                         x509.NameAttribute(NameOID.COMMON_NAME, node_id)])
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder().subject_name(subject).issuer_name(ca.subject).public_key(public_key)
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
    )


# --- revocation ------------------------------------------------------------------------------------
@dataclass
class _CaState:
    """What the CA remembers besides its key: the CRL number and every revocation."""

    crl_number: int = 0
    revoked: list[dict[str, str]] = field(default_factory=list)  # serial (hex), revoked_at, reason


_REASONS = {r.name: r for r in x509.ReasonFlags if r is not x509.ReasonFlags.remove_from_crl}


def revoke(ca_dir: Path, cert_path_or_serial: Path | int, reason: str = "unspecified") -> list[int]:
    """Record revocations in the CA's ``revoked.json``; returns the serials revoked.

    Takes a serial, a certificate file, or an issued directory (revoking both its TLS and its
    signing certificate: a node is revoked as a whole). ``reason`` is a CRL reason name such as
    ``key_compromise`` or ``cessation_of_operation``. Publish with :func:`write_crl`.
    """
    ca_cert, _key = _load_ca(ca_dir)
    flag = _REASONS.get(reason)
    if flag is None:
        raise ConfigError(f"unknown revocation reason {reason!r}; use one of {', '.join(_REASONS)}",
                          field="reason")
    if isinstance(cert_path_or_serial, int):
        serials = [cert_path_or_serial]
    else:
        p = cert_path_or_serial
        files = [p / TLS_CERT, p / SIGNING_CERT] if p.is_dir() else [p]
        serials = []
        for f in files:
            cert = _parse_cert(_read(f), f)
            if cert.issuer != ca_cert.subject:
                raise ConfigError(f"{f} was not issued by the CA in {ca_dir}")
            serials.append(cert.serial_number)
    state = _load_state(ca_dir)
    known = {int(e["serial"], 16) for e in state.revoked}
    now = datetime.now(UTC).isoformat()
    state.revoked += [{"serial": f"{s:x}", "revoked_at": now, "reason": flag.name}
                      for s in dict.fromkeys(serials) if s not in known]
    _save_state(ca_dir, state)
    return serials


def write_crl(ca_dir: Path, out: Path, *, days: int = 30) -> Path:
    """Write the CA's signed revocation list (PEM) to ``out``, valid for ``days``; returns ``out``."""
    ca_cert, ca_key = _load_ca(ca_dir)
    out.parent.mkdir(parents=True, exist_ok=True)  # as `ca issue` makes its --out, before a CRL number is spent
    state = _load_state(ca_dir)
    state.crl_number += 1  # RFC 5280 §5.2.3: monotonically increasing, lets a node spot an old CRL
    now = datetime.now(UTC)
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
               .last_update(now - _SKEW).next_update(now + timedelta(days=days))
               .add_extension(x509.CRLNumber(state.crl_number), critical=False))
    for entry in state.revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(int(entry["serial"], 16))
            .revocation_date(datetime.fromisoformat(entry["revoked_at"]))
            .add_extension(x509.CRLReason(x509.ReasonFlags[entry["reason"]]), critical=False).build())
    crl = builder.sign(ca_key, hashes.SHA256())
    _save_state(ca_dir, state)
    _replace(out, crl.public_bytes(serialization.Encoding.PEM), 0o644)
    return out


def _load_state(ca_dir: Path) -> _CaState:
    path = ca_dir / CA_STATE
    if not path.exists():
        return _CaState()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return _CaState(crl_number=int(data["crl_number"]), revoked=list(data["revoked"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a readable revocation state file: {exc}") from None


def _save_state(ca_dir: Path, state: _CaState) -> None:
    data = {"crl_number": state.crl_number, "revoked": state.revoked}
    _replace(ca_dir / CA_STATE, json.dumps(data, indent=1).encode(), 0o600)


def _replace(path: Path, data: bytes, mode: int) -> None:
    """Atomically replace ``path`` (for files meant to be superseded, unlike keys)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.new")
    _write_atomic(tmp, data, mode)
    os.replace(tmp, path)


# --- a node's own keys ------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadedIdentity:
    """Everything a node needs to prove who it is; key material is kept out of ``repr``."""

    directory: Path
    node_id: str
    role: str
    tls_cert_pem: bytes = field(repr=False)
    tls_key_pem: bytes = field(repr=False)
    ca_pem: bytes = field(repr=False)
    signing_key: ed25519.Ed25519PrivateKey = field(repr=False)
    signing_cert_der: bytes = field(repr=False)

    @property
    def identity(self) -> Identity:
        return Identity(self.node_id, self.role)

    @property
    def tls_cert_path(self) -> Path:
        return self.directory / TLS_CERT

    @property
    def tls_key_path(self) -> Path:
        return self.directory / TLS_KEY

    @property
    def ca_path(self) -> Path:
        return self.directory / CA_CERT

    @property
    def signing_key_id(self) -> bytes:
        return key_id_of(self.signing_cert_der)


NodeKeys = LoadedIdentity  # the name the configuration speaks of


def load_identity(directory: Path, *, now: datetime | None = None) -> LoadedIdentity:
    """Load and cross-check a directory written by :func:`issue`.

    Refuses, naming the file: a missing file, a key readable by group/others, a key that does not
    match its certificate, certificates not issued by ``ca.pem``, the two certificates naming
    different identities, or a certificate not valid now (a node would only be refused by peers).
    """
    files = [directory / n for n in (TLS_CERT, TLS_KEY, SIGNING_CERT, SIGNING_KEY, CA_CERT)]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise ConfigError(f"missing file: {', '.join(missing)}")
    tls_cert_pem, ca_pem = _read(directory / TLS_CERT), _read(directory / CA_CERT)
    tls_key_pem = _read_private(directory / TLS_KEY)
    tls_cert = _parse_cert(tls_cert_pem, directory / TLS_CERT)
    signing_cert = _parse_cert(_read(directory / SIGNING_CERT), directory / SIGNING_CERT)
    tls_key = _parse_key(tls_key_pem, directory / TLS_KEY)
    signing_key = _parse_key(_read_private(directory / SIGNING_KEY), directory / SIGNING_KEY)
    for key, cert, name in ((tls_key, tls_cert, TLS_CERT), (signing_key, signing_cert, SIGNING_CERT)):
        if key.public_key() != cert.public_key():
            raise ConfigError(f"{directory / name} does not belong to its key file")
    if not isinstance(signing_key, ed25519.Ed25519PrivateKey):
        raise ConfigError(f"{directory / SIGNING_KEY} is not an Ed25519 key")
    trust = TrustStore(ca_pem)
    at = now or datetime.now(UTC)
    try:
        who, signer = trust.check(tls_cert, at), trust.check(signing_cert, at)
    except UntrustedSignerError as exc:  # a node would only be refused by every peer: say so now
        raise ConfigError(f"{directory}: {exc.message}") from None
    if signer != who:
        raise ConfigError(f"{directory / SIGNING_CERT} names another identity than {directory / TLS_CERT}")
    return LoadedIdentity(directory=directory, node_id=who.node_id, role=who.role,
                          tls_cert_pem=tls_cert_pem, tls_key_pem=tls_key_pem, ca_pem=ca_pem,
                          signing_key=signing_key,
                          signing_cert_der=signing_cert.public_bytes(serialization.Encoding.DER))


def _parse_key(pem: bytes, where: Path) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"{where} is not an unencrypted PEM private key") from None
