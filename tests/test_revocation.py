"""node/revocation.py: a new revocation list is taken in while the node runs; a bad one changes nothing."""

from __future__ import annotations

import datetime as dt
import logging
import pathlib
import shutil

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from node.errors import NotAuthorizedError
from node.identity import load_identity, revoke, write_crl
from node.revocation import CrlWatch
from node.transport import grpc_client
from node.truststore import TrustStore
from tests.transport.conftest import _serve
from tests.transport.nodes import Pki, make_pki


@pytest.fixture
def own_pki(tmp_path: pathlib.Path) -> Pki:
    return make_pki(tmp_path / "pki")  # its CRL is changed here: not the session's shared one


def _trust(pki: Pki) -> TrustStore:
    return TrustStore((pki.ca / "ca.pem").read_bytes(), pki.crl.read_bytes())


def test_a_list_put_in_place_is_in_force_at_the_next_look(own_pki: Pki) -> None:
    trust = _trust(own_pki)
    watch = CrlWatch(trust, own_pki.crl)
    gov = x509.load_pem_x509_certificate(load_identity(own_pki.dir("gov")).tls_cert_pem)
    assert not trust.is_revoked(gov) and watch.check() is False  # unchanged: nothing loaded
    revoke(own_pki.ca, own_pki.dir("gov"))
    write_crl(own_pki.ca, own_pki.crl.with_name("crl.new"))
    shutil.move(own_pki.crl.with_name("crl.new"), own_pki.crl)  # as an operator replaces it
    assert watch.check() is True
    assert trust.is_revoked(gov)


def test_a_list_that_does_not_load_keeps_the_one_in_force_and_is_said_once(
        own_pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    trust = _trust(own_pki)
    before = trust.revoked_count
    watch = CrlWatch(trust, own_pki.crl)
    own_pki.crl.write_bytes(b"-----BEGIN X509 CRL-----\nhalf copied")
    with caplog.at_level(logging.INFO, logger="node.revocation"):
        assert watch.check() is False
        assert watch.check() is False
    refused = [r for r in caplog.records if r.getMessage() == "trust.crl_refused"]
    assert len(refused) == 1 and "not a PEM CRL" in refused[0].reason  # type: ignore[attr-defined]
    assert trust.revoked_count == before and before > 0  # make_pki revokes one: still revoked


def test_a_caller_revoked_while_the_node_runs_is_refused_without_a_restart(own_pki: Pki,
                                                                           tmp_path: pathlib.Path) -> None:
    work = tmp_path / "node"
    work.mkdir()
    served = _serve(own_pki, work)
    running = next(served)
    try:
        with running.channel("gov") as channel:
            assert grpc_client.status(channel).node_id  # served before
            revoke(own_pki.ca, own_pki.dir("gov"))
            write_crl(own_pki.ca, own_pki.crl)
            assert running.runtime.extension(CrlWatch).check() is True  # the watch's next look
            with pytest.raises(NotAuthorizedError) as refused:
                grpc_client.status(channel)  # the same open connection
        assert refused.value.code == "E_UNAUTHENTICATED"
    finally:
        served.close()


def _crl_issued(pki: Pki, at: dt.datetime, revoked: int = 0) -> bytes:
    """A list of the federation CA issued at ``at`` (as a backup of an earlier one would be)."""
    key = serialization.load_pem_private_key((pki.ca / "ca-key.pem").read_bytes(), password=None)
    ca = x509.load_pem_x509_certificate((pki.ca / "ca.pem").read_bytes())
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
               .last_update(at).next_update(at + dt.timedelta(days=30)))
    if revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(revoked).revocation_date(at).build())
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM)  # type: ignore[arg-type]


def test_an_older_list_put_back_does_not_take_back_the_revocations_made_since(
        own_pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    now = dt.datetime.now(dt.UTC)
    own_pki.crl.write_bytes(_crl_issued(own_pki, now - dt.timedelta(hours=1), revoked=4242))
    trust = _trust(own_pki)
    watch = CrlWatch(trust, own_pki.crl)
    own_pki.crl.write_bytes(_crl_issued(own_pki, now - dt.timedelta(days=1)))  # last week's backup
    with caplog.at_level(logging.INFO, logger="node.revocation"):
        assert watch.check() is False
    assert trust.revoked_count == 1
    refused = [r for r in caplog.records if r.getMessage() == "trust.crl_refused"]
    assert len(refused) == 1 and "older list is not taken" in refused[0].reason  # type: ignore[attr-defined]
