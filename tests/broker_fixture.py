"""A real RabbitMQ with mutual TLS and EXTERNAL auth, for tests that need a broker.

Usage in a test module (or list ``"tests.broker_fixture"`` in a conftest's
``pytest_plugins`` to share one broker per session across modules)::

    from tests.broker_fixture import tls_broker  # noqa: F401  (pytest fixture)

    def test_something(tls_broker):
        tls_broker.add_user("district:330106")          # the node permission model
        with tls_broker.connect("district:330106") as conn:
            ...

The fixture makes a throwaway CA, a server certificate for ``localhost`` /
``127.0.0.1`` and client certificates on demand (private keys written 0600), starts
``scripts/rabbitmq-tls`` on a free port in a temporary directory and stops it at the end
of the session. If the broker cannot be started the tests are skipped -- unless the
environment variable ``CI`` is set, in which case they fail.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import ssl
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "scripts" / "rabbitmq-tls"
EXIT_NOT_INSTALLED = 69
START_TIMEOUT_S = 120


class BrokerUnavailable(RuntimeError):
    """The TLS broker could not be started (RabbitMQ missing, boot failure, ...)."""


def write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    """Write an unencrypted PEM private key readable by its owner only (0600)."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the file may have existed with wider permissions
        os.write(fd, pem)
    finally:
        os.close(fd)
    return path


def _safe_filename(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


class CertificateAuthority:
    """A throwaway ECDSA P-256 CA that issues server and client (node) certificates."""

    def __init__(self, directory: Path, name: str = "credit-node test CA") -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.ca_pem = self.directory / "ca.pem"
        self.ca_pem.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        write_private_key(self.directory / "ca.key", self._key)

    def issue(
        self,
        common_name: str,
        *,
        server: bool = False,
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
    ) -> tuple[Path, Path]:
        """Issue a certificate whose subject CN is ``common_name``; return (cert, key) paths."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=True, key_cert_sign=False,
                    crl_sign=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
            )
        )
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        stem = _safe_filename(common_name)
        cert_path = self.directory / f"{stem}.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path = write_private_key(self.directory / f"{stem}.key", key)
        return cert_path, key_path


def run_script(*args: str | os.PathLike[str], timeout: float = START_TIMEOUT_S + 30) -> subprocess.CompletedProcess[str]:
    """Run scripts/rabbitmq-tls with ``args``; never raises on a non-zero exit."""
    return subprocess.run(
        [str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


class TLSBroker:
    """A running broker started by scripts/rabbitmq-tls; see the module docstring."""

    host = "127.0.0.1"
    server_hostname = "localhost"  # what the server certificate is checked against

    def __init__(self, directory: Path, port: int, ca: CertificateAuthority) -> None:
        self.dir = Path(directory)
        self.port = port
        self.ca = ca
        self.ca_pem = ca.ca_pem
        self._client_certs: dict[str, tuple[Path, Path]] = {}

    @property
    def node_name(self) -> str:
        return (self.dir / "node").read_text().strip()

    @property
    def log_file(self) -> Path:
        """The node's main log (TLS handshake failures and refused logins show up here)."""
        return self.dir / "log" / f"{self.node_name}.log"

    def _run(self, command: str, *args: str) -> subprocess.CompletedProcess[str]:
        result = run_script(command, "--dir", self.dir, *args)
        if result.returncode != 0:
            raise RuntimeError(
                f"scripts/rabbitmq-tls {command} {' '.join(args)} failed (exit {result.returncode}):\n"
                f"{result.stderr}"
            )
        return result

    def add_user(
        self,
        node_id: str,
        *,
        configure: str | None = None,
        write: str | None = None,
        read: str | None = None,
        topic_write: str | None = None,
        topic_read: str | None = None,
        topic_exchange: str = "credit.up",
        topic_permissions: bool = True,
    ) -> None:
        """Register ``node_id`` (a certificate CN) as a user with no password.

        ``configure``/``write``/``read`` are RabbitMQ resource permission regexes on vhost
        ``/``; ``topic_write``/``topic_read`` are routing-key regexes on ``topic_exchange``.
        Anything left ``None`` takes the node model's default (docs/rabbitmq-tls.md):
        configure nothing, write exchange ``credit.up`` with routing keys ``<id>`` or
        ``<id>.*``, read queue ``down.<id>``.
        """
        args = ["add-user", "--user", node_id, "--topic-exchange", topic_exchange]
        for flag, value in (
            ("--configure-pattern", configure),
            ("--write-pattern", write),
            ("--read-pattern", read),
            ("--topic-write-pattern", topic_write),
            ("--topic-read-pattern", topic_read),
        ):
            if value is not None:
                args += [flag, value]
        if not topic_permissions:
            args.append("--no-topic-permissions")
        self._run(*args)

    def ctl(self, *args: str) -> str:
        """Run rabbitmqctl against this node; return its stdout."""
        return self._run("ctl", "--", *args).stdout

    def client_cert(self, node_id: str) -> tuple[Path, Path]:
        """(cert_path, key_path) of a client certificate with CN=node_id from the broker's CA."""
        if node_id not in self._client_certs:
            self._client_certs[node_id] = self.ca.issue(node_id)
        return self._client_certs[node_id]

    def ssl_context(self, node_id: str | None = None) -> ssl.SSLContext:
        """Client context trusting the broker's CA; presents node_id's certificate if given."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_pem))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if node_id is not None:
            cert, key = self.client_cert(node_id)
            context.load_cert_chain(str(cert), str(key))
        return context

    def connection_parameters(self, node_id: str | None, **kwargs):  # -> pika.ConnectionParameters
        """pika parameters for an EXTERNAL (certificate) login as node_id."""
        import pika

        kwargs.setdefault("connection_attempts", 1)
        kwargs.setdefault("socket_timeout", 10)
        kwargs.setdefault("blocked_connection_timeout", 30)
        return pika.ConnectionParameters(
            host=self.host,
            port=self.port,
            virtual_host="/",
            credentials=kwargs.pop("credentials", pika.credentials.ExternalCredentials()),
            ssl_options=pika.SSLOptions(kwargs.pop("ssl_context", self.ssl_context(node_id)), self.server_hostname),
            **kwargs,
        )

    def connect(self, node_id: str, **kwargs):  # -> pika.BlockingConnection
        import pika

        return pika.BlockingConnection(self.connection_parameters(node_id, **kwargs))

    def stop(self) -> None:
        self._run("stop")


def start_tls_broker(base_dir: Path, *, port: str = "auto") -> TLSBroker:
    """Make a PKI under base_dir/pki and start a broker with state in base_dir/state."""
    base_dir = Path(base_dir)
    ca = CertificateAuthority(base_dir / "pki")
    cert, key = ca.issue("localhost", server=True, dns_names=["localhost"], ip_addresses=["127.0.0.1"])
    state = base_dir / "state"
    result = run_script(
        "start", "--dir", state, "--port", port, "--ca", ca.ca_pem, "--cert", cert, "--key", key,
        "--timeout", str(START_TIMEOUT_S),
    )
    if result.returncode != 0:
        what = "RabbitMQ is not installed" if result.returncode == EXIT_NOT_INSTALLED else "could not start"
        raise BrokerUnavailable(
            f"TLS RabbitMQ broker {what} (scripts/rabbitmq-tls exit {result.returncode}):\n{result.stderr}"
        )
    return TLSBroker(state, int(result.stdout.strip()), ca)


def skip_or_fail(reason: str) -> None:
    """Skip a test that needs a broker -- but fail it when running under CI."""
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSBroker]:
    """A running TLS RabbitMQ (EXTERNAL auth) on a free port, stopped at session end."""
    base = tmp_path_factory.mktemp("tls-broker")
    try:
        broker = start_tls_broker(base)
    except (BrokerUnavailable, OSError, subprocess.TimeoutExpired) as exc:
        run_script("stop", "--dir", base / "state")  # in case a start timed out half-way
        skip_or_fail(str(exc))
        raise  # unreachable: skip_or_fail always raises
    try:
        yield broker
    finally:
        broker.stop()
