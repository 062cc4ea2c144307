"""Which certificates this node trusts, and for whom they speak (DESIGN §2.4).

One federation root CA (a PEM bundle is accepted so a root can be rolled over) plus its
revocation list. The store answers two questions: "is this certificate one of ours, valid at that
time and not revoked?" (:meth:`TrustStore.check`) and "which certificate is key id X?"
(:meth:`TrustStore.get`, for record signatures, whose key id is the SHA-256 of the DER).

The expensive part of a check (the CA's signature over the certificate) is done once per
certificate and remembered; revocation and the validity window are checked on every call because
a new CRL can arrive at any time and the time differs per signature. Thread-safe: the gRPC server
calls it from many threads.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID

from node.errors import ConfigError, UntrustedSignerError
from node.nodeid import Identity, check_identity

__all__ = ["TrustStore", "identity_of", "key_id_of"]

_E = TypeVar("_E", bound=x509.ExtensionType)
_URI_PREFIX = "urn:credit-node:"  # the SAN URI ``identity.issue`` writes beside the CN
_MIN_RSA_BITS = 2048  # below it a key can be factored by a determined attacker (NIST SP 800-131A)
_MIN_EC_BITS = 256


def key_id_of(der: bytes) -> bytes:
    """A signer's key id: SHA-256 of its certificate's DER (``Signature.key_id``)."""
    return hashlib.sha256(der).digest()


def identity_of(cert: x509.Certificate) -> Identity:
    """The (node id, role) a certificate names: subject CN and OU, checked against the grammar."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ous = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    if len(cns) != 1 or len(ous) != 1:
        raise UntrustedSignerError("certificate subject must have exactly one CN (node id) and one OU (role)")
    cn, ou = cns[0].value, ous[0].value
    try:
        return check_identity(str(cn), str(ou))
    except ConfigError as exc:
        raise UntrustedSignerError(f"certificate names an invalid identity: {exc.message}") from None


@dataclass(frozen=True)
class _Vetted:
    """What never changes about a certificate once its CA signature and contents were checked."""

    identity: Identity
    issuer: x509.Name
    serial: int
    not_before: datetime
    not_after: datetime


class TrustStore:
    def __init__(self, ca_pem: bytes, crl_pem: bytes | None = None) -> None:
        try:
            cas = x509.load_pem_x509_certificates(ca_pem)
        except ValueError:
            raise ConfigError("the CA file holds no PEM certificate") from None
        for ca in cas:
            bc = _extension(ca, x509.BasicConstraints)
            if bc is None or not bc.ca:
                raise ConfigError(f"{ca.subject.rfc4514_string()} is not a CA certificate")
        self._cas = tuple(cas)
        self._lock = threading.Lock()
        self._revoked: frozenset[tuple[bytes, int]] = frozenset()
        self._crl_next_update: datetime | None = None
        self._crl_issued: datetime | None = None  # the list in force's thisUpdate
        self._by_key_id: dict[bytes, x509.Certificate] = {}
        self._vetted: dict[bytes, _Vetted] = {}  # by SHA-256 fingerprint
        if crl_pem is not None:
            self.load_crl(crl_pem)

    @classmethod
    def from_files(cls, ca_path: Path, crl_path: Path | None = None) -> TrustStore:
        try:
            ca_pem = ca_path.read_bytes()
            crl_pem = crl_path.read_bytes() if crl_path is not None else None
        except OSError as exc:
            raise ConfigError(f"cannot read {exc.filename}: {exc.strerror}") from None
        return cls(ca_pem, crl_pem)

    @property
    def ca_certificates(self) -> tuple[x509.Certificate, ...]:
        return self._cas

    @property
    def crl_next_update(self) -> datetime | None:
        """When the loaded revocation list said a newer one would be out (None: no list, or no date)."""
        return self._crl_next_update

    @property
    def revoked_count(self) -> int:
        """Certificates the list in force revokes."""
        return len(self._revoked)

    def load_crl(self, crl_pem: bytes) -> None:
        """Replace the revocation list (it travels with the catalogue). Refuses a CRL not ours."""
        try:
            crl = x509.load_pem_x509_crl(crl_pem)
        except ValueError:
            raise ConfigError("the revocation list is not a PEM CRL") from None
        # Every root of that name: a root rolled over keeps the federation's name, with a new key.
        if not any(crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
                   for ca in self._cas if ca.subject == crl.issuer):
            raise ConfigError("the revocation list is not signed by the federation CA")
        name = crl.issuer.public_bytes()
        revoked = frozenset((name, entry.serial_number) for entry in crl)
        with self._lock:
            if self._crl_issued is not None and crl.last_update_utc < self._crl_issued:
                # An older list would take back every revocation made since (a backup copied over
                # the new one): a CA issues lists in time order, so the newer one in force stays.
                raise ConfigError(f"the revocation list was issued {crl.last_update_utc.isoformat()}, before the "
                                  f"one in force ({self._crl_issued.isoformat()}): an older list is not taken")
            self._revoked = revoked
            self._crl_next_update = crl.next_update_utc
            self._crl_issued = crl.last_update_utc

    def is_revoked(self, cert: x509.Certificate) -> bool:
        return (cert.issuer.public_bytes(), cert.serial_number) in self._revoked

    def add_certificate(self, der: bytes) -> bytes:
        """Remember a signer's certificate; returns its key id. It must be ours and not revoked.

        An expired certificate is accepted: records it signed while valid still verify
        (:meth:`check` compares the validity window with the signing time).
        """
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            raise UntrustedSignerError("not a DER X.509 certificate") from None
        vetted = self._vet(cert)
        if (vetted.issuer.public_bytes(), vetted.serial) in self._revoked:
            raise UntrustedSignerError(f"certificate of {vetted.identity.node_id} is revoked "
                                       f"(serial {vetted.serial:x})")
        key_id = key_id_of(der)
        with self._lock:
            self._by_key_id[key_id] = cert
        return key_id

    def get(self, key_id: bytes) -> x509.Certificate | None:
        with self._lock:
            return self._by_key_id.get(key_id)

    def identity_of(self, cert: x509.Certificate) -> Identity:
        return identity_of(cert)

    def check(self, cert: x509.Certificate, at: datetime) -> Identity:
        """The identity ``cert`` speaks for at time ``at`` (timezone-aware), or UntrustedSignerError.

        Reasons: issued by another CA or badly signed, revoked, not yet valid, expired, a CA
        certificate or one without the digitalSignature key usage, an invalid node id / role.
        """
        if at.tzinfo is None:
            raise ValueError("check() needs a timezone-aware time")
        vetted = self._vet(cert)
        who = vetted.identity.node_id
        if (vetted.issuer.public_bytes(), vetted.serial) in self._revoked:
            raise UntrustedSignerError(f"certificate of {who} is revoked (serial {vetted.serial:x})")
        if at < vetted.not_before:
            raise UntrustedSignerError(f"certificate of {who} is not yet valid at {at.isoformat()} "
                                       f"(valid from {vetted.not_before.isoformat()})")
        if at > vetted.not_after:
            raise UntrustedSignerError(f"certificate of {who} had expired at {at.isoformat()} "
                                       f"(valid until {vetted.not_after.isoformat()})")
        return vetted.identity

    def _vet(self, cert: x509.Certificate) -> _Vetted:
        fingerprint = cert.fingerprint(hashes.SHA256())
        with self._lock:
            known = self._vetted.get(fingerprint)
        if known is not None:
            return known
        vetted = _vet_against(self._cas, cert)
        with self._lock:
            self._vetted[fingerprint] = vetted
        return vetted


def _vet_against(cas: tuple[x509.Certificate, ...], cert: x509.Certificate) -> _Vetted:
    """The once-per-certificate checks: the CA's signature, that it is an end entity, its names."""
    named = [c for c in cas if c.subject == cert.issuer]  # a root rolled over keeps its name
    if not named:
        raise UntrustedSignerError(f"certificate issued by another CA ({cert.issuer.rfc4514_string()})")
    if not any(_issued_by(cert, ca) for ca in named):
        raise UntrustedSignerError("certificate is not signed by the federation CA (issuer name matches, "
                                   "signature does not)")
    bc = _extension(cert, x509.BasicConstraints)
    if bc is not None and bc.ca:
        raise UntrustedSignerError("a CA certificate cannot act as a node")
    ku = _extension(cert, x509.KeyUsage)
    if ku is None or not ku.digital_signature:
        raise UntrustedSignerError("wrong key usage: the certificate does not allow digitalSignature")
    if problem := _weak_key(cert.public_key()):
        raise UntrustedSignerError(f"the certificate's key is too weak: {problem}")
    identity = identity_of(cert)
    _check_uris(cert, identity.node_id)
    return _Vetted(identity=identity, issuer=cert.issuer, serial=cert.serial_number,
                   not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc)


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _weak_key(key: CertificatePublicKeyTypes) -> str:
    """Why ``key`` is too weak to stand for a node ('' when it is not): the handshake accepts any key
    the CA signed, so a careless CA's RSA-1024 certificate would otherwise speak for a node."""
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < _MIN_RSA_BITS:
        return f"RSA of {key.key_size} bits (at least {_MIN_RSA_BITS})"
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size < _MIN_EC_BITS:
        return f"elliptic curve {key.curve.name} of {key.curve.key_size} bits (at least {_MIN_EC_BITS})"
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
                      | ed448.Ed448PublicKey):
        return f"a {type(key).__name__} (RSA, elliptic curve or Ed25519/Ed448 only)"
    return ""


def _check_uris(cert: x509.Certificate, node_id: str) -> None:
    """Refuse a certificate whose ``urn:credit-node:`` URIs name anyone but its CN: a tool that reads
    the URI (a broker, a proxy) would take it for another node than the one this node believes."""
    san = _extension(cert, x509.SubjectAlternativeName)
    uris = san.get_values_for_type(x509.UniformResourceIdentifier) if san is not None else []
    others = sorted({u for u in uris if u.startswith(_URI_PREFIX) and u != _URI_PREFIX + node_id})
    if others:
        raise UntrustedSignerError(f"certificate of {node_id} also names {', '.join(others)}")


def _extension(cert: x509.Certificate, kind: type[_E]) -> _E | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None

