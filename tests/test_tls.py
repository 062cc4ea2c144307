"""Mutual TLS for gRPC and AMQP: real handshakes against a real grpc server and an ssl socket."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from node.errors import UntrustedSignerError
from node.identity import LoadedIdentity, TrustStore, init_ca, issue, load_identity, revoke, write_crl
from node.tls import amqp_ssl_context, grpc_channel_credentials, grpc_server_credentials, peer_identity

METHOD = "/test.Echo/Echo"
DEADLINE_S = 5.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LoadedIdentity]:
    base = tmp_path_factory.mktemp("pki")
    ca, other = init_ca(base / "ca"), init_ca(base / "other-ca", name="another CA")
    ids = {
        "server": issue(ca, "city:330100", "node", base / "server"),
        "client": issue(ca, "district:330106", "node", base / "client"),
        "revoked": issue(ca, "district:330108", "node", base / "revoked"),
        "foreign": issue(other, "district:330106", "node", base / "foreign"),
    }
    revoke(ca, ids["revoked"], "key_compromise")
    write_crl(ca, base / "crl.pem")
    return {name: load_identity(d) for name, d in ids.items()}


@pytest.fixture(scope="module")
def trust(pki: dict[str, LoadedIdentity]) -> TrustStore:
    crl = pki["server"].directory.parent / "crl.pem"
    return TrustStore(pki["server"].ca_pem, crl.read_bytes())


@pytest.fixture(scope="module")
def server(pki: dict[str, LoadedIdentity], trust: TrustStore) -> Iterator[int]:
    """A grpc server on port 0 whose unary echo answers with the caller's node id."""

    def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            who = peer_identity(context.auth_context(), trust)
        except UntrustedSignerError as exc:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        return who.node_id.encode() + b"|" + request

    handler = grpc.method_handlers_generic_handler("test.Echo", {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
    })
    srv = grpc.server(ThreadPoolExecutor(max_workers=4), handlers=[handler])
    port = srv.add_secure_port("localhost:0", grpc_server_credentials(pki["server"]))
    assert port > 0
    srv.start()
    yield port
    srv.stop(grace=None)


def _call(port: int, creds: grpc.ChannelCredentials, payload: bytes = b"ping") -> bytes:
    with grpc.secure_channel(f"localhost:{port}", creds) as channel:
        stub = channel.unary_unary(METHOD)
        result: bytes = stub(payload, timeout=DEADLINE_S)
        return result


def test_mutual_tls_round_trip(server: int, pki: dict[str, LoadedIdentity]) -> None:
    assert _call(server, grpc_channel_credentials(pki["client"])) == b"district:330106|ping"


def test_client_without_certificate_fails_the_handshake(server: int, pki: dict[str, LoadedIdentity]) -> None:
    creds = grpc.ssl_channel_credentials(root_certificates=pki["client"].ca_pem)
    with pytest.raises(grpc.RpcError) as err:
        _call(server, creds)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_client_from_another_ca_fails_the_handshake(server: int, pki: dict[str, LoadedIdentity]) -> None:
    foreign = pki["foreign"]
    # Give it every chance: it trusts our CA, so only its own certificate can be the problem.
    creds = grpc.ssl_channel_credentials(root_certificates=pki["client"].ca_pem,
                                         private_key=foreign.tls_key_pem,
                                         certificate_chain=foreign.tls_cert_pem)
    with pytest.raises(grpc.RpcError) as err:
        _call(server, creds)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_client_refuses_a_server_from_another_ca(server: int, pki: dict[str, LoadedIdentity]) -> None:
    with pytest.raises(grpc.RpcError) as err:
        _call(server, grpc_channel_credentials(pki["foreign"]))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_revoked_client_is_refused_by_the_application(server: int, pki: dict[str, LoadedIdentity]) -> None:
    # grpc cannot check a CRL, so the handshake succeeds; peer_identity must refuse it.
    with pytest.raises(grpc.RpcError) as err:
        _call(server, grpc_channel_credentials(pki["revoked"]))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "revoked" in (err.value.details() or "")


def test_peer_identity_inputs(pki: dict[str, LoadedIdentity], trust: TrustStore) -> None:
    pem = pki["client"].tls_cert_pem
    assert peer_identity({"x509_pem_cert": [pem]}, trust).node_id == "district:330106"
    assert peer_identity(x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER),
                         trust).node_id == "district:330106"
    with pytest.raises(UntrustedSignerError, match="no certificate"):
        peer_identity({}, trust)
    with pytest.raises(UntrustedSignerError, match="parsed"):
        peer_identity(b"garbage", trust)
    with pytest.raises(UntrustedSignerError, match="another CA"):
        peer_identity(pki["foreign"].tls_cert_pem, trust)


# --- AMQP: the client context against a TLS server that requires a client certificate -----------
def _tls_server(identity: LoadedIdentity) -> tuple[socket.socket, ssl.SSLContext]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(identity.tls_cert_path), str(identity.tls_key_path))
    ctx.load_verify_locations(cadata=identity.ca_pem.decode())
    ctx.verify_mode = ssl.CERT_REQUIRED
    sock = socket.create_server(("127.0.0.1", 0))
    return sock, ctx


def _serve_once(sock: socket.socket, ctx: ssl.SSLContext, seen: list[object]) -> None:
    conn, _addr = sock.accept()
    try:
        with ctx.wrap_socket(conn, server_side=True) as tls:
            seen.append(tls.getpeercert())
            tls.sendall(b"ok")
    except (ssl.SSLError, OSError) as exc:
        seen.append(exc)


def _connect(port: int, ctx: ssl.SSLContext, host: str = "localhost") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S) as raw, \
            ctx.wrap_socket(raw, server_hostname=host) as tls:
        return tls.recv(2)


def test_amqp_context_settings(pki: dict[str, LoadedIdentity]) -> None:
    ctx = amqp_ssl_context(pki["client"])
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_amqp_context_completes_mutual_tls(pki: dict[str, LoadedIdentity]) -> None:
    sock, server_ctx = _tls_server(pki["server"])
    seen: list[object] = []
    t = threading.Thread(target=_serve_once, args=(sock, server_ctx, seen))
    t.start()
    try:
        assert _connect(sock.getsockname()[1], amqp_ssl_context(pki["client"])) == b"ok"
    finally:
        t.join(DEADLINE_S)
        sock.close()
    peer = seen[0]
    assert isinstance(peer, dict)
    assert (("commonName", "district:330106"),) in peer["subject"]


def _amqp_client_refuses(broker: LoadedIdentity, client: LoadedIdentity, *, host: str = "localhost",
                         match: str | None = None) -> None:
    """A node's amqp TLS context refuses, in the handshake, a broker serving with ``broker``."""
    sock, server_ctx = _tls_server(broker)
    seen: list[object] = []
    t = threading.Thread(target=_serve_once, args=(sock, server_ctx, seen))
    t.start()
    try:
        with pytest.raises(ssl.SSLCertVerificationError, match=match):
            _connect(sock.getsockname()[1], amqp_ssl_context(client), host=host)
    finally:
        t.join(DEADLINE_S)
        sock.close()


def test_amqp_context_refuses_a_broker_from_another_ca(pki: dict[str, LoadedIdentity]) -> None:
    _amqp_client_refuses(pki["foreign"], pki["client"])


def test_amqp_context_checks_the_broker_host_name(pki: dict[str, LoadedIdentity]) -> None:
    _amqp_client_refuses(pki["server"], pki["client"], host="broker.example", match="match")


# --- only a node's certificate serves: a caller's cannot pose as a parent, peer or broker --------
@pytest.fixture(scope="module")
def callers(pki: dict[str, LoadedIdentity], tmp_path_factory: pytest.TempPathFactory) -> dict[str, LoadedIdentity]:
    """Certificates issued as `ca issue` issues them: callers without --host, a broker with one."""
    base = tmp_path_factory.mktemp("callers")
    ca = pki["server"].directory.parent / "ca"
    ids = {
        "gov": issue(ca, "gov:330100:fgw", "gov", base / "gov"),
        "self": issue(ca, "self:91330102mb0000019g", "self", base / "self"),
        "broker": issue(ca, "admin:broker", "admin", base / "broker", hosts=("localhost", "127.0.0.1")),
    }
    return {name: load_identity(d) for name, d in ids.items()}


def _serve_echo(identity: LoadedIdentity) -> tuple[grpc.Server, int]:
    handler = grpc.method_handlers_generic_handler("test.Echo", {
        "Echo": grpc.unary_unary_rpc_method_handler(lambda request, _context: b"served|" + request),
    })
    srv = grpc.server(ThreadPoolExecutor(max_workers=2), handlers=[handler])
    port = srv.add_secure_port("localhost:0", grpc_server_credentials(identity))
    srv.start()
    return srv, port


@pytest.mark.parametrize("caller", ["gov", "self"])
def test_a_callers_certificate_cannot_serve_as_a_node(pki: dict[str, LoadedIdentity],
                                                      callers: dict[str, LoadedIdentity], caller: str) -> None:
    # A citizen's or an agency's certificate answering at a parent's address would be sent the
    # child's records and acks would be believed: a node's client must refuse it in the handshake.
    srv, port = _serve_echo(callers[caller])
    try:
        with pytest.raises(grpc.RpcError) as err:
            _call(port, grpc_channel_credentials(pki["client"]))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        srv.stop(grace=None)


def test_a_callers_certificate_cannot_serve_as_a_broker(pki: dict[str, LoadedIdentity],
                                                        callers: dict[str, LoadedIdentity]) -> None:
    _amqp_client_refuses(callers["gov"], pki["client"])


def test_a_brokers_certificate_serves_but_cannot_call_a_node(server: int, pki: dict[str, LoadedIdentity],
                                                             callers: dict[str, LoadedIdentity]) -> None:
    srv, port = _serve_echo(callers["broker"])
    try:
        assert _call(port, grpc_channel_credentials(pki["client"])) == b"served|ping"
    finally:
        srv.stop(grace=None)
    with pytest.raises(grpc.RpcError) as err:
        _call(server, grpc_channel_credentials(callers["broker"]))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_callers_still_call_a_node(server: int, callers: dict[str, LoadedIdentity]) -> None:
    assert _call(server, grpc_channel_credentials(callers["gov"])) == b"gov:330100:fgw|ping"


# --- certificates our CA signed but should never have: the node refuses them after the handshake --
def _crafted(pki: dict[str, LoadedIdentity], *, key: CertificateIssuerPrivateKeyTypes | None = None,
             eku: list[x509.ObjectIdentifier] | None = None, uris: tuple[str, ...] = (),
             node_id: str = "district:330106") -> grpc.ChannelCredentials:
    """Client credentials for a certificate made by hand with the federation CA's key (a careless CA
    or another tool), with the one flaw the test names; everything else as ``issue`` writes it."""
    ca_dir = pki["server"].directory.parent / "ca"
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / "ca-key.pem").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    own = key or ec.generate_private_key(ec.SECP256R1())
    assert isinstance(own, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "credit federation"),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "node"),
                      x509.NameAttribute(NameOID.COMMON_NAME, node_id)])
    now = datetime.now(UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(ca_cert.subject)
               .public_key(own.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                            key_encipherment=isinstance(own, rsa.RSAPrivateKey),
                                            data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                            crl_sign=False, encipher_only=False, decipher_only=False),
                              critical=True)
               .add_extension(x509.SubjectAlternativeName(
                   [x509.UniformResourceIdentifier(u) for u in (f"urn:credit-node:{node_id}", *uris)]),
                   critical=False))
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return grpc.ssl_channel_credentials(
        root_certificates=pki["server"].ca_pem,
        private_key=own.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()),
        certificate_chain=cert.public_bytes(serialization.Encoding.PEM))


CLIENT_AUTH = [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_a_hand_made_certificate_with_the_profile_is_accepted(server: int, pki: dict[str, LoadedIdentity]) -> None:
    # The control for the refusals below: the crafting itself is not what they refuse.
    assert _call(server, _crafted(pki, eku=CLIENT_AUTH)) == b"district:330106|ping"


def test_a_client_certificate_with_a_weak_rsa_key_is_refused(server: int, pki: dict[str, LoadedIdentity]) -> None:
    # The handshake accepts an RSA-1024 key the CA signed; a node must not take it for a node.
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(grpc.RpcError) as err:
        _call(server, _crafted(pki, key=weak, eku=CLIENT_AUTH))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "RSA of 1024 bits" in (err.value.details() or "")


@pytest.mark.parametrize("uris", [("urn:credit-node:province:330000",),
                                  ("urn:credit-node:district:330106", "urn:credit-node:city:330100")])
def test_a_client_certificate_whose_uri_names_another_node_is_refused(server: int, pki: dict[str, LoadedIdentity],
                                                                      uris: tuple[str, ...]) -> None:
    with pytest.raises(grpc.RpcError) as err:
        _call(server, _crafted(pki, eku=CLIENT_AUTH, uris=uris))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "also names urn:credit-node:" in (err.value.details() or "")


def test_a_client_certificate_without_extended_key_usage_is_refused(server: int,
                                                                   pki: dict[str, LoadedIdentity]) -> None:
    # No extended key usage at all passes grpc's handshake (it means "any use"): the node refuses it.
    with pytest.raises(grpc.RpcError) as err:
        _call(server, _crafted(pki, eku=None))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "no clientAuth" in (err.value.details() or "")


def test_a_record_signing_certificate_is_not_a_tls_client_certificate(pki: dict[str, LoadedIdentity],
                                                                      trust: TrustStore) -> None:
    # Same identity, but the Ed25519 key is for records only (DESIGN §2.4: two keys).
    with pytest.raises(UntrustedSignerError, match="no clientAuth"):
        peer_identity(pki["client"].signing_cert_der, trust)
