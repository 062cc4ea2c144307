"""The one place TLS is configured: mutual TLS against the federation CA, for gRPC and AMQP.

There is no plaintext or one-way mode (DESIGN §2.4): servers require a client certificate and
clients present one. grpc's Python API cannot load a CRL, so revocation is enforced after the
handshake by :func:`peer_identity`, which every servicer calls to learn who is speaking.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import grpc
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from node.errors import UntrustedSignerError
from node.identity import LoadedIdentity
from node.nodeid import Identity
from node.truststore import TrustStore

__all__ = ["amqp_ssl_context", "grpc_channel_credentials", "grpc_server_credentials", "https_server_context",
           "peer_identity"]

_PEER_CERT_KEY = "x509_pem_cert"  # grpc's auth context property holding the peer's leaf (PEM)


def grpc_server_credentials(identity: LoadedIdentity) -> grpc.ServerCredentials:
    """Server side: present our TLS certificate, require a client certificate from the CA."""
    return grpc.ssl_server_credentials(
        [(identity.tls_key_pem, identity.tls_cert_pem)],
        root_certificates=identity.ca_pem,
        require_client_auth=True,
    )


def grpc_channel_credentials(identity: LoadedIdentity) -> grpc.ChannelCredentials:
    """Client side: trust only the federation CA and present our certificate.

    The server's name is checked against its SAN; to reach a peer by an address its certificate
    does not list, set the channel option ``grpc.ssl_target_name_override``.
    """
    return grpc.ssl_channel_credentials(
        root_certificates=identity.ca_pem,
        private_key=identity.tls_key_pem,
        certificate_chain=identity.tls_cert_pem,
    )


def amqp_ssl_context(identity: LoadedIdentity) -> ssl.SSLContext:
    """Client context for pika: verify the broker against the CA (and its host name), show our cert.

    RabbitMQ then logs us in with EXTERNAL as the certificate's CN, i.e. our node id.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname and CERT_REQUIRED by default
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cadata=identity.ca_pem.decode("ascii"))
    # ssl can only read a key from a file; the directory is the one load_identity checked (0600).
    ctx.load_cert_chain(certfile=str(identity.tls_cert_path), keyfile=str(identity.tls_key_path))
    return ctx


def https_server_context(identity: LoadedIdentity) -> ssl.SSLContext:
    """Server context for the metrics endpoint: our TLS certificate, a client certificate from the CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=identity.ca_pem.decode("ascii"))
    ctx.load_cert_chain(certfile=str(identity.tls_cert_path), keyfile=str(identity.tls_key_path))
    return ctx


def peer_identity(auth_context_or_der: Mapping[str, Sequence[bytes]] | bytes, trust: TrustStore,
                  *, at: datetime | None = None) -> Identity:
    """Who the peer is: its certificate (from ``context.auth_context()``, or DER/PEM bytes) checked.

    Raises UntrustedSignerError when there is no certificate, or it is not ours, expired, revoked
    or not a TLS client's, so a revoked node is refused even though the TLS handshake let it in.
    """
    if isinstance(auth_context_or_der, bytes | bytearray):
        raw = bytes(auth_context_or_der)
    else:
        certs = auth_context_or_der.get(_PEER_CERT_KEY) or []
        if not certs:
            raise UntrustedSignerError("the peer presented no certificate")
        raw = certs[0]
    try:
        cert = (x509.load_pem_x509_certificate(raw) if raw.lstrip().startswith(b"-----BEGIN")
                else x509.load_der_x509_certificate(raw))
    except ValueError:
        raise UntrustedSignerError("the peer's certificate cannot be parsed") from None
    who = trust.check(cert, at or datetime.now(UTC))
    _check_client_use(cert, who)
    return who


def _check_client_use(cert: x509.Certificate, who: Identity) -> None:
    """Refuse a peer certificate not made for TLS clients. grpc and OpenSSL take one without any
    extended key usage for every purpose, so a record-signing certificate or one from a careless CA
    would log in; every certificate ``issue`` makes for a caller says clientAuth."""
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = None
    if usages is None or ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        raise UntrustedSignerError(f"the certificate of {who.node_id} is not for TLS clients "
                                   "(no clientAuth extended key usage)")
