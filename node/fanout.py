"""Cross-region lookup: a city (or province) asks its peer regions and merges what they answer.

The asking node forwards the lookup over gRPC mTLS to every configured peer at once, each call
with the same deadline, and marks the forwarded request ``local_only`` so a peer never fans out
again. It speaks *for the original caller*: ``CallerContext.on_behalf_of/on_behalf_role/purpose``
name the caller, and ``delegation_signature`` is the asking node's Ed25519 signature (its record
signing key) over a canonical statement of who asked what, when (:class:`Delegation`). The signing
certificate travels in the call's metadata (``credit-signing-cert-bin``), so a peer that has never
seen it can still check it against the federation CA. Each region applies its own rules to the
delegated caller and writes its own query log entry (DESIGN §4).

A region that does not answer within the deadline (down, slow, refusing) is left out; the answer
is then flagged ``partial`` and names it in ``unavailable_regions``.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from node.config import PeerConfig
from node.errors import ConfigError, NotAuthorizedError, UntrustedSignerError
from node.nodeid import Identity, check_identity
from node.records import pb, rpc
from node.store.audit import canonical_json
from node.truststore import TrustStore

__all__ = ["DELEGATION_DOMAIN", "SIGNING_CERT_METADATA", "Delegation", "Fanout", "FanoutResult", "merge_views",
           "verify_delegation"]

DELEGATION_DOMAIN: Final = b"credit-node/delegation/v1\x00"
SIGNING_CERT_METADATA: Final = "credit-signing-cert-bin"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Delegation:
    """What the asking node vouches for: this caller, in this role, asked this, for this purpose."""

    node: str  # the asking (delegating) node
    caller: str
    role: str
    purpose: str
    subject: str
    items: tuple[str, ...]
    at_ms: int
    authorization: str = ""  # SHA-256 (hex) of the caller's authorisation code, '' if none

    def statement(self) -> bytes:
        return DELEGATION_DOMAIN + canonical_json({
            "node": self.node, "caller": self.caller, "role": self.role, "purpose": self.purpose,
            "subject": self.subject, "items": sorted(self.items), "at_ms": self.at_ms,
            "authorization": self.authorization,
        }).encode()

    @classmethod
    def of_request(cls, request: pb.LookupRequest) -> Delegation:
        ctx = request.context
        code = ctx.authorization_code
        return cls(node=ctx.delegating_node, caller=ctx.on_behalf_of, role=ctx.on_behalf_role,
                   purpose=ctx.purpose, subject=request.subject_code, items=tuple(request.items),
                   at_ms=ctx.delegated_at_ms,
                   authorization=hashlib.sha256(code.encode()).hexdigest() if code else "")


def verify_delegation(request: pb.LookupRequest, asking: Identity, signing_cert_der: bytes | None,
                      trust: TrustStore, *, allowed_nodes: Collection[str], max_age_s: float,
                      now_ms: int | None = None) -> Identity:
    """The caller a delegated request speaks for, or NotAuthorizedError ``E_DELEGATION_INVALID``.

    The connection must come from a federation node this node accepts delegations from (its
    parent and peers), the statement must name that node, be fresh, and carry a valid signature
    by that node's signing certificate.
    """
    ctx = request.context

    def refuse(why: str) -> NotAuthorizedError:
        return NotAuthorizedError(f"delegation refused: {why}", code="E_DELEGATION_INVALID")

    if asking.role != "node":
        raise refuse(f"{asking.node_id} is not a federation node")
    if asking.node_id not in allowed_nodes:
        raise refuse(f"{asking.node_id} is neither this node's parent nor one of its peers")
    if ctx.delegating_node != asking.node_id:
        raise refuse(f"the statement names {ctx.delegating_node!r}, the connection is {asking.node_id}")
    if not ctx.on_behalf_of or not ctx.on_behalf_role:
        raise refuse("no caller named")
    now = _now_ms() if now_ms is None else now_ms
    if abs(now - ctx.delegated_at_ms) > max_age_s * 1000:
        raise refuse("the statement is too old (or from the future)")
    if not signing_cert_der:
        raise refuse(f"no signing certificate in {SIGNING_CERT_METADATA}")
    try:
        cert = x509.load_der_x509_certificate(signing_cert_der)
        signer = trust.check(cert, datetime.fromtimestamp(now / 1000, UTC))
    except ValueError:
        raise refuse("the signing certificate cannot be parsed") from None
    except UntrustedSignerError as exc:
        raise refuse(exc.message) from None
    key = cert.public_key()
    if signer.node_id != asking.node_id or not isinstance(key, Ed25519PublicKey):
        raise refuse("the signing certificate is not the asking node's Ed25519 certificate")
    try:
        key.verify(ctx.delegation_signature, Delegation.of_request(request).statement())
    except InvalidSignature:
        raise refuse("bad signature") from None
    # The caller spoken for is held to the grammar its own certificate would be: a gov id with the
    # gov role, never a federation node (a node would otherwise ask "on behalf of" itself and get
    # every class without being a querying role).
    try:
        caller = check_identity(ctx.on_behalf_of, ctx.on_behalf_role)
    except ConfigError as exc:
        raise refuse(f"the caller spoken for is not a caller: {exc.message}") from None
    if caller.role == "node":
        raise refuse("a federation node is not a caller to speak for")
    return caller


@dataclass(frozen=True)
class FanoutResult:
    records: list[pb.RecordView]
    unavailable: list[str]


class Fanout:
    """Forward lookups to the peer regions; one long-lived mTLS channel per peer."""

    def __init__(self, node_id: str, signing_key: Ed25519PrivateKey, signing_cert_der: bytes,
                 peers: Sequence[PeerConfig], channel_factory: Callable[[str], grpc.Channel], *,
                 clock: Callable[[], int] = _now_ms) -> None:
        self._node_id = node_id
        self._key = signing_key
        self._cert_der = signing_cert_der
        self._peers = tuple(peers)
        self._factory = channel_factory
        self._clock = clock
        self._lock = threading.Lock()
        self._stubs: dict[str, Any] = {}
        self._channels: list[grpc.Channel] = []

    @property
    def peers(self) -> tuple[PeerConfig, ...]:
        return self._peers

    def _stub(self, peer: PeerConfig) -> Any:
        with self._lock:
            stub = self._stubs.get(peer.id)
            if stub is None:
                channel = self._factory(peer.target)
                self._channels.append(channel)
                stub = self._stubs[peer.id] = rpc.QueryStub(channel)  # type: ignore[no-untyped-call]
            return stub

    def delegated_request(self, request: pb.LookupRequest, caller: Identity, purpose: str) -> pb.LookupRequest:
        out = pb.LookupRequest(subject_code=request.subject_code, items=list(request.items), local_only=True)
        ctx = out.context
        ctx.purpose = purpose
        ctx.authorization_code = request.context.authorization_code
        ctx.on_behalf_of, ctx.on_behalf_role = caller.node_id, caller.role
        ctx.delegating_node, ctx.delegated_at_ms = self._node_id, self._clock()
        ctx.delegation_signature = self._key.sign(Delegation.of_request(out).statement())
        return out

    def start(self, request: pb.LookupRequest, caller: Identity, purpose: str,
              timeout_s: float) -> Callable[[], FanoutResult]:
        """Send the lookup to every peer now; the returned function waits for (at most) the deadline."""
        forwarded = self.delegated_request(request, caller, purpose)
        metadata = ((SIGNING_CERT_METADATA, self._cert_der),)
        deadline = time.monotonic() + timeout_s
        calls: list[tuple[str, Any]] = []
        for peer in self._peers:
            try:
                calls.append((peer.id, self._stub(peer).Lookup.future(forwarded, timeout=timeout_s,
                                                                      metadata=metadata)))
            except Exception:  # a channel that cannot even be made is a region that did not answer
                calls.append((peer.id, None))

        def collect() -> FanoutResult:
            records: list[pb.RecordView] = []
            unavailable: list[str] = []
            for peer_id, call in calls:
                try:
                    if call is None:
                        raise TimeoutError
                    answer = call.result(timeout=max(0.0, deadline - time.monotonic()))
                except (grpc.RpcError, grpc.FutureTimeoutError, TimeoutError):
                    if call is not None:
                        call.cancel()
                    unavailable.append(peer_id)
                    continue
                records.extend(answer.records)
                unavailable.extend(answer.unavailable_regions)
            return FanoutResult(records, unavailable)

        return collect

    def close(self) -> None:
        with self._lock:
            for channel in self._channels:
                channel.close()
            self._channels.clear()
            self._stubs.clear()


def merge_views(local: Iterable[pb.RecordView], remote: Iterable[pb.RecordView],
                held: Mapping[str, int] | None = None) -> list[pb.RecordView]:
    """One view per record: the highest revision wins, the local copy on a tie (records travel up,
    so a city often holds what a district answers as well).

    ``held`` is the revision of every record this node holds, shown to the caller or not: a
    region's older copy never stands in for a newer local revision the caller may not see (one
    suspended while disputed, or revoked, before the revision reached that region).
    """
    best: dict[str, pb.RecordView] = {view.record_id: view for view in local}
    held = held or {}
    for view in remote:
        if view.revision <= held.get(view.record_id, 0):  # this node's own decision stands
            continue
        kept = best.get(view.record_id)
        if kept is None or view.revision > kept.revision:
            best[view.record_id] = view
    return sorted(best.values(), key=lambda v: (v.item, v.decision_date, v.record_id))
