"""Who a caller is (``node.transport.peers``): its certificate checked on every call, whatever the handshake let in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from node.records import pb, rpc
from node.transport.peers import CODE_KEY

from .conftest import DEADLINE_S, Running
from .nodes import Pki


def test_a_certificate_of_our_ca_naming_no_known_role_passes_the_handshake_but_every_call_is_refused(
        shared: Running, pki: Pki) -> None:
    ca = x509.load_pem_x509_certificate((pki.ca / "ca.pem").read_bytes())
    ca_key: Any = serialization.load_pem_private_key((pki.ca / "ca-key.pem").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().issuer_name(ca.subject).public_key(key.public_key())
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "wizard"),
                                     x509.NameAttribute(NameOID.COMMON_NAME, "wizard:330100:merlin")]))
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.KeyUsage(True, False, False, False, True, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca.public_bytes(serialization.Encoding.PEM), certificate_chain=cert.public_bytes(
            serialization.Encoding.PEM), private_key=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with grpc.secure_channel(shared.address, creds) as channel:
        with pytest.raises(grpc.RpcError) as echoed:
            rpc.AdminStub(channel).Echo(pb.EchoRequest(payload=b"x"), timeout=DEADLINE_S)
        with pytest.raises(grpc.RpcError) as probed:  # health too: it admits any role, not no role
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=DEADLINE_S)
    for refused in (echoed.value, probed.value):
        assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
        assert dict(refused.trailing_metadata() or ())[CODE_KEY] == "E_UNAUTHENTICATED"
