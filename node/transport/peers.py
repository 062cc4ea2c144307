"""Who is calling, and how a refusal is told: the server side of the gRPC boundary.

The TLS handshake (``tls.grpc_server_credentials``) already proved the caller holds a key
certified by the federation CA. grpc's Python API cannot load a revocation list, so revocation
and the validity window are enforced here, on every call, by :func:`caller_identity`
(docs/decisions/revocation-at-the-application-layer.md). A refused caller gets
``UNAUTHENTICATED``.

Every error the node answers with goes through :func:`abort_with`: a gRPC status chosen by the
error's class, the details ``CODE [field]: message`` and the stable code in the trailing
metadata ``credit-error-code`` (and the field in ``credit-error-field``), so a client never has to
parse prose to learn what went wrong (docs/protocol.md, "gRPC").
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NoReturn

import grpc
from cryptography import x509

from node.errors import (
    CatalogError,
    ConfigError,
    ConflictError,
    DeadlineError,
    InputFileError,
    IntegrityError,
    NodeError,
    NotAuthorizedError,
    NotFoundError,
    RecordRejected,
    SignatureError,
    StoreError,
    TransportError,
    UnauthenticatedError,
    UnimplementedError,
    UntrustedSignerError,
    UsageError,
)
from node.nodeid import Identity
from node.tls import peer_identity
from node.truststore import TrustStore

__all__ = ["CODE_KEY", "FIELD_KEY", "CallerCache", "abort_with", "abort_with_async", "caller_identity", "require_role",
           "status_for", "vetted_caller"]

log = logging.getLogger(__name__)

CODE_KEY = "credit-error-code"
FIELD_KEY = "credit-error-field"
_PEER_CERT_KEY = "x509_pem_cert"

# Most specific class first: the first class in the error's MRO found here decides.
_STATUS: dict[type[NodeError], grpc.StatusCode] = {
    UnauthenticatedError: grpc.StatusCode.UNAUTHENTICATED,
    NotAuthorizedError: grpc.StatusCode.PERMISSION_DENIED,
    NotFoundError: grpc.StatusCode.NOT_FOUND,
    ConflictError: grpc.StatusCode.FAILED_PRECONDITION,
    DeadlineError: grpc.StatusCode.DEADLINE_EXCEEDED,
    UnimplementedError: grpc.StatusCode.UNIMPLEMENTED,
    StoreError: grpc.StatusCode.UNAVAILABLE,
    TransportError: grpc.StatusCode.UNAVAILABLE,
    IntegrityError: grpc.StatusCode.DATA_LOSS,
    UsageError: grpc.StatusCode.INVALID_ARGUMENT,
    CatalogError: grpc.StatusCode.INVALID_ARGUMENT,
    InputFileError: grpc.StatusCode.INVALID_ARGUMENT,
    RecordRejected: grpc.StatusCode.INVALID_ARGUMENT,
    SignatureError: grpc.StatusCode.INVALID_ARGUMENT,
    ConfigError: grpc.StatusCode.INTERNAL,  # the node's own configuration, not the caller's fault
}


_MAX_HEADER_CHARS = 200
_MAX_DETAILS_CHARS = 1000


def status_for(error: NodeError) -> grpc.StatusCode:
    if isinstance(error, StoreError) and not error.retryable:
        # A constraint the request broke (E_STORE_CONSTRAINT): UNAVAILABLE would tell the caller
        # the node is down and to try again, which gives the same failure every time.
        return grpc.StatusCode.INTERNAL
    for cls in type(error).__mro__:
        status = _STATUS.get(cls)
        if status is not None:
            return status
    return grpc.StatusCode.INTERNAL


def abort_with(context: grpc.ServicerContext, error: NodeError,
               status: grpc.StatusCode | None = None) -> NoReturn:
    """End the call with ``error``: its status, ``CODE [field]: message``, the code in metadata."""
    context.set_trailing_metadata(_error_metadata(error))
    context.abort(status or status_for(error), _details(error))
    raise AssertionError("context.abort returned")  # pragma: no cover - grpc always raises


def end_with(context: grpc.ServicerContext, error: NodeError, status: grpc.StatusCode | None = None) -> None:
    """:func:`abort_with` without raising, for a response stream that has sent messages already:
    the handler returns and grpc ends the call with this status (an abort racing the last write
    would fail inside grpc instead)."""
    context.set_trailing_metadata(_error_metadata(error))
    context.set_code(status or status_for(error))
    context.set_details(_details(error))


async def abort_with_async(context: grpc.aio.ServicerContext[object, object], error: NodeError,
                           status: grpc.StatusCode | None = None) -> NoReturn:
    """:func:`abort_with` for a handler that is a coroutine (its context's ``abort`` is one too)."""
    context.set_trailing_metadata(_error_metadata(error))
    await context.abort(status or status_for(error), _details(error))
    raise AssertionError("context.abort returned")  # pragma: no cover - grpc always raises


def _error_metadata(error: NodeError) -> tuple[tuple[str, str], ...]:
    if error.field:
        return ((CODE_KEY, error.code), (FIELD_KEY, _header_value(error.field)))
    return ((CODE_KEY, error.code),)


def _details(error: NodeError) -> str:
    """The status details, bounded: a message quoting what the caller sent (a 5,000-character item
    code) would otherwise outgrow the client's metadata limit and reach it as RESOURCE_EXHAUSTED."""
    text = str(error)
    return text if len(text) <= _MAX_DETAILS_CHARS else text[: _MAX_DETAILS_CHARS - 3] + "..."


def _header_value(text: str) -> str:
    """``text`` as a legal metadata value: printable ASCII, bounded.

    A field can name what the caller sent (an unknown item code in Chinese): sent as it is, grpc
    refuses the whole answer with ``INTERNAL "Invalid metadata"`` and the caller learns nothing.
    """
    safe = "".join(c if " " <= c <= "~" else c.encode("unicode_escape").decode("ascii") for c in text)
    return safe if len(safe) <= _MAX_HEADER_CHARS else safe[: _MAX_HEADER_CHARS - 3] + "..."


@dataclass(frozen=True)
class _Vetted:
    """A caller certificate that passed the full check once, and what a re-check needs."""

    cert: x509.Certificate
    identity: Identity
    not_before: float  # unix seconds
    not_after: float


class CallerCache:
    """Checked caller certificates by fingerprint: a call costs a look-up, not a parse and a CA check.

    Only what cannot change is remembered (the parse, the CA's signature, the identity, the
    validity window). The window and the revocation list are checked on every call: a certificate
    can expire during a long-lived connection, and a CRL loaded into the trust store
    (``TrustStore.load_crl``) applies to open connections too.
    """

    def __init__(self, max_entries: int = 4096) -> None:
        self._max = max_entries
        self._lock = threading.Lock()
        self._known: dict[bytes, _Vetted] = {}

    def get(self, fingerprint: bytes) -> _Vetted | None:
        with self._lock:
            return self._known.get(fingerprint)

    def put(self, fingerprint: bytes, vetted: _Vetted) -> None:
        with self._lock:
            if len(self._known) >= self._max:
                self._known.clear()  # rare (thousands of distinct callers); a re-check is cheap
            self._known[fingerprint] = vetted


def caller_identity(context: grpc.ServicerContext, trust: TrustStore, *,
                    cache: CallerCache | None = None) -> Identity:
    """The caller's (node id, role), its certificate checked against CA, validity and CRL now.

    Aborts the call with ``UNAUTHENTICATED`` (code ``E_UNAUTHENTICATED``) and the reason otherwise.
    """
    try:
        return vetted_caller(context, trust, cache=cache)
    except UnauthenticatedError as exc:
        abort_with(context, exc)


def vetted_caller(context: grpc.ServicerContext | grpc.aio.ServicerContext[object, object], trust: TrustStore, *,
                  cache: CallerCache | None = None) -> Identity:
    """:func:`caller_identity` that raises :class:`UnauthenticatedError` instead of aborting.

    For coroutine handlers, which must ``await`` the abort, and for work handed to a thread.
    """
    auth = context.auth_context()
    try:
        pems = auth.get(_PEER_CERT_KEY) or []
        if cache is None or not pems:
            return peer_identity(auth, trust)
        fingerprint = hashlib.sha256(pems[0]).digest()
        known = cache.get(fingerprint)
        if known is None:
            who = peer_identity(auth, trust)  # the full check, once per certificate
            cert = x509.load_pem_x509_certificate(pems[0])
            cache.put(fingerprint, _Vetted(cert, who, cert.not_valid_before_utc.timestamp(),
                                           cert.not_valid_after_utc.timestamp()))
            return who
        # TrustStore.check would re-derive the fingerprint and re-encode names (~100 µs a call);
        # the window and the CRL are all that can have changed since the full check.
        if known.not_before <= time.time() <= known.not_after and not trust.is_revoked(known.cert):
            return known.identity
        return trust.check(known.cert, datetime.now(UTC))  # raises, naming the reason
    except UntrustedSignerError as exc:
        log.warning("call.unauthenticated", extra={"address": context.peer(), "code": exc.code,
                                                     "reason": exc.message})
        raise UnauthenticatedError(f"caller refused: {exc.message}") from None


def check_role(who: Identity, roles: frozenset[str], what: str) -> None:
    """Raise :class:`NotAuthorizedError` (``PERMISSION_DENIED``) unless the caller's role is one of ``roles``."""
    if who.role not in roles:
        log.warning("call.refused", extra={"peer": who.node_id, "role": who.role, "what": what})
        raise NotAuthorizedError(
            f"{who.node_id} (role {who.role}) may not {what}; allowed roles: {', '.join(sorted(roles))}")


def require_role(context: grpc.ServicerContext, who: Identity, roles: frozenset[str], what: str) -> None:
    """Abort with ``PERMISSION_DENIED`` unless the caller's role is one of ``roles``."""
    try:
        check_role(who, roles, what)
    except NotAuthorizedError as exc:
        abort_with(context, exc)
