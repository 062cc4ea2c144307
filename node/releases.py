"""Signed catalogue releases (DESIGN §2.7): the authority signs, every node checks before applying.

The catalogue authority (``catalog.authority``, e.g. the city) signs a release with its Ed25519
signing key over the **release statement**::

    "credit-node/catalog-release/v1" 0x00
    | u32 len | version | u32 len | authority | i64 signed_at_ms
    | for each file, in name order: u32 len | name | SHA-256(content)

(big-endian, length-prefixed like the record leaves of docs/protocol.md). A node applies a release
only if its signature verifies with a certificate from the federation CA, valid at signing time,
naming exactly the node's configured authority, and if the files load as a catalogue whose
version is the release's and newer than the one in use. Applied releases are kept under
``catalog.releases``/<version>/ (files + ``release.pb``), and ``CURRENT`` names the one in use;
``build_node`` loads it at the next start. Then the node passes the release on to its children.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pathlib
import re
import secrets
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from node.catalog import META_FILE as CATALOG_META
from node.catalog import VERSION_RE, Catalog, parse_catalog, parse_yaml
from node.config import NodeConfig
from node.durable import sync_dir, write_synced
from node.errors import CatalogError, NodeError, SignatureError, UntrustedSignerError
from node.identity import LoadedIdentity
from node.store import Meta
from node.transport.wire import decode, fpb
from node.truststore import TrustStore

__all__ = ["Applied", "Releases", "RunningCatalog", "release_statement", "sign_release", "verify_release"]

log = logging.getLogger(__name__)

DOMAIN = b"credit-node/catalog-release/v1\x00"
CURRENT = "CURRENT"
RUNNING_KEY = "catalog.running"  # store meta: the version the node's last start loaded
RELEASE_FILE = "release.pb"
_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.yaml")


def _lp(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def release_statement(version: str, authority: str, signed_at_ms: int,
                      files: Sequence[tuple[str, bytes]]) -> bytes:
    parts = [DOMAIN, _lp(version.encode()), _lp(authority.encode()), signed_at_ms.to_bytes(8, "big", signed=True)]
    for name, content in sorted(files):
        parts += [_lp(name.encode()), hashlib.sha256(content).digest()]
    return b"".join(parts)


def version_key(version: str) -> tuple[tuple[int, str], ...]:
    """Order versions as numbers where they are numbers: 2026.9 < 2026.10."""
    return tuple((int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"[.\-_]", version))


def read_catalog_dir(path: pathlib.Path) -> list[tuple[str, bytes]]:
    files = sorted(p for p in path.glob("*.yaml") if p.is_file())
    if not any(p.name == CATALOG_META for p in files):
        raise CatalogError(f"{path}: a catalogue directory needs {CATALOG_META}")
    return [(p.name, p.read_bytes()) for p in files]


def _load(files: Sequence[tuple[str, bytes]]) -> Catalog:
    ordered = sorted(files, key=lambda f: (f[0] != CATALOG_META, f[0]))
    docs = []
    for name, content in ordered:
        try:
            text = content.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise CatalogError(f"release file {name}: not UTF-8 text") from None
        docs.append((name, parse_yaml(name, text)))
    return parse_catalog(docs)


def sign_release(me: LoadedIdentity, path: pathlib.Path, *, now_ms: int) -> fpb.CatalogRelease:
    """Sign the catalogue directory ``path`` as this node (which must be the catalogue's authority)."""
    files = read_catalog_dir(path)
    catalog = _load(files)
    if catalog.authority and catalog.authority != me.node_id:
        raise CatalogError(f"{path}: the catalogue names {catalog.authority} as its authority, not {me.node_id}")
    statement = release_statement(catalog.version, me.node_id, now_ms, files)
    return fpb.CatalogRelease(version=catalog.version, authority=me.node_id, signed_at_ms=now_ms,
                              files=[fpb.CatalogFile(name=n, content=c) for n, c in files],
                              certificate=me.signing_cert_der, signature=me.signing_key.sign(statement))


def verify_release(release: fpb.CatalogRelease, trust: TrustStore, authority: str) -> Catalog:
    """The release's catalogue, if ``authority`` signed it; else SignatureError / CatalogError."""
    if not authority:
        raise SignatureError("this node accepts no catalogue releases (catalog.authority is not set)",
                             code="E_RELEASE_AUTHORITY")
    if release.authority != authority:
        raise SignatureError(f"release signed by {release.authority!r}; this node accepts only {authority!r}",
                             code="E_RELEASE_AUTHORITY")
    files = [(f.name, bytes(f.content)) for f in release.files]
    bad = [n for n, _ in files if not _FILE.fullmatch(n)]
    if bad or len({n for n, _ in files}) != len(files) or not VERSION_RE.fullmatch(release.version):
        raise CatalogError(f"release {release.version!r}: bad or repeated file names {bad}")
    try:
        cert = x509.load_der_x509_certificate(bytes(release.certificate))
        who = trust.check(cert, datetime.fromtimestamp(release.signed_at_ms / 1000, UTC))
    except (ValueError, OverflowError, OSError):
        raise UntrustedSignerError("the release's certificate cannot be read or its time is out of range") from None
    if who.node_id != authority:
        raise SignatureError(f"the release certificate names {who.node_id!r}, not {authority!r}",
                             code="E_SIGNER_MISMATCH")
    key = cert.public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise UntrustedSignerError("the release certificate is not an Ed25519 signing certificate")
    statement = release_statement(release.version, release.authority, release.signed_at_ms, files)
    try:
        key.verify(bytes(release.signature), statement)
    except InvalidSignature:
        raise SignatureError(f"the signature over release {release.version} does not verify",
                             code="E_SIGNATURE_INVALID") from None
    catalog = _load(files)
    if catalog.version != release.version:
        raise CatalogError(f"release says version {release.version} but its catalogue is {catalog.version}")
    return catalog


@dataclass(frozen=True)
class Applied:
    version: str
    applied: bool  # False: already at this version or newer (nothing changed)
    reason: str = ""


class Releases:
    """The releases a node holds (``catalog.releases``) and which one it uses."""

    def __init__(self, config: NodeConfig) -> None:
        self._dir = config.path(config.catalog.releases)
        self._config = config

    def current_version(self) -> str:
        try:
            return (self._dir / CURRENT).read_text(encoding="utf-8").strip()
        except OSError:
            return ""

    def current_path(self) -> pathlib.Path:
        """The catalogue directory to load: the current applied release, else the configured path.

        A release is used only if its files are still the ones its signed release holds: a file
        torn by a power cut (or edited) would otherwise keep the node from starting, or run rules
        nobody signed. Then the configured catalogue runs until the release comes again.
        """
        version = self.current_version()
        if version and (self._dir / version / CATALOG_META).is_file():
            release = self.current_release()
            try:
                intact = release is not None and release.version == version and read_catalog_dir(
                    self._dir / version) == sorted((f.name, bytes(f.content)) for f in release.files)
            except (OSError, CatalogError):
                intact = False
            if intact:
                return self._dir / version
            log.warning("releases.damaged", extra={"version": version, "reason": "its files are not the signed ones; "
                                                   "running the configured catalogue"})
        return self._config.path(self._config.catalog.path)

    def current_release(self) -> fpb.CatalogRelease | None:
        version = self.current_version()
        if not version:
            return None
        try:
            data = (self._dir / version / RELEASE_FILE).read_bytes()
        except OSError:
            return None
        return decode(fpb.CatalogRelease, data)

    def apply(self, release: fpb.CatalogRelease, trust: TrustStore, running_version: str) -> Applied:
        """Verify, then keep and make current; a no-op for a version not newer than what runs."""
        verify_release(release, trust, self._config.catalog.authority)
        newest = max((v for v in (running_version, self.current_version()) if v), key=version_key, default="")
        if newest and version_key(release.version) <= version_key(newest):
            return Applied(release.version, False, f"already at {newest}")
        target = self._dir / release.version
        tmp = self._dir / f".{release.version}.{secrets.token_hex(4)}"
        try:
            self._sweep_leftovers()
            tmp.mkdir(parents=True)
            # Synced before each rename: after a power cut the release is whole or absent, never
            # current with a file torn (current_path would refuse it, but a whole one is better).
            for f in release.files:
                write_synced(tmp / f.name, bytes(f.content))
            write_synced(tmp / RELEASE_FILE, release.SerializeToString())
            sync_dir(tmp)
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
            pointer = self._dir / f".{CURRENT}.{secrets.token_hex(4)}"
            write_synced(pointer, (release.version + "\n").encode())
            os.replace(pointer, self._dir / CURRENT)
            sync_dir(self._dir)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise NodeError(f"cannot keep release {release.version} in {self._dir}: {exc}", code="E_RELEASE_STORE") from None
        return Applied(release.version, True)


    def _sweep_leftovers(self) -> None:
        """Remove what an apply killed before its renames left (``.VERSION.xxxxxxxx``), if an hour old."""
        cutoff = time.time() - 3600
        for p in self._dir.glob(".*.*"):
            if not _LEFTOVER.fullmatch(p.name) or p.stat().st_mtime >= cutoff:
                continue  # not ours, or perhaps another process's apply under way
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)


_LEFTOVER = re.compile(r"\.[A-Za-z0-9._-]+\.[0-9a-f]{8}")




class RunningCatalog:
    """A runtime extension that notes, as the node starts, the catalogue version it runs.

    A release applied while the node runs is used from its next start; only the running process
    knows which one it loaded, so ``downward status`` (another process) reads it here.
    """

    name = "running-catalogue"

    def __init__(self, meta: Meta, version: str) -> None:
        self._meta = meta
        self._version = version

    def start(self) -> None:
        self._meta.put(RUNNING_KEY, self._version)

    def stop(self) -> None:
        """Nothing to undo: the value says what the last start ran."""
