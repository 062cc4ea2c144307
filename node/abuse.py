"""Abuse protection of the disclosure services (DOMAIN §7; seed 004 第十九-二十条, seed 001 附件3).

- **Rate limits**: a token bucket per caller (certificate id); a call beyond it is refused with
  ``E_RATE_LIMITED``.
- **Block list** (IP访问黑名单): a caller refused for rate ``block_after`` times within
  ``block_window_s`` is an abnormal burst (短时间内的大量访问): its address is blocked, persisted in
  ``blocks``, and every call from it is refused with ``E_BLOCKED`` until an operator lifts it
  after checking (``credit-node blocks lift``).
- **Sharing switch** (及时关闭信息共享服务): ``credit-node sharing suspend`` stops all disclosure at
  once (``E_SHARING_SUSPENDED``) while reporting (Exchange.Submit) keeps working.

The block list and the switch are read from the store and cached for ``cache_s`` (1 s), so a
running server sees an operator's change within a second without a restart, and the hot path
costs a dictionary lookup, not a query.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select, update

from node.config import AbuseConfig
from node.errors import BlockedError, NotAuthorizedError, NotFoundError, UsageError
from node.store import AuditEvent, Store
from node.store._sql import translated, write_transaction
from node.store.meta import put_value
from node.store.tables import blocks

__all__ = ["SHARING_KEY", "Block", "Guard", "RateLimitedError", "SharingSuspendedError", "SharingSwitch",
           "address_of",
           "blocked_address"]

SHARING_KEY = "sharing_suspended"
_MAX_BUCKETS = 10_000  # idle buckets are pruned beyond this many callers


class RateLimitedError(NotAuthorizedError):
    code = "E_RATE_LIMITED"
    retryable = True


class SharingSuspendedError(NotAuthorizedError):
    code = "E_SHARING_SUSPENDED"
    retryable = True


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def address_of(peer: str) -> str:
    """The address part of grpc's ``context.peer()``: ``ipv4:10.0.0.7:51234`` → ``ipv4:10.0.0.7``."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6" and rest.startswith("["):
        return f"{kind}:{rest[: rest.find(']') + 1]}"
    if kind == "ipv4":
        return f"{kind}:{rest.rpartition(':')[0] or rest}"
    return peer


def blocked_address(text: str) -> str:
    """An address as an operator names it to ``blocks lift``: as ``blocks list`` shows it
    (``ipv4:10.0.0.7``, ``ipv6:[::1]``, a ``unix:`` peer), or a bare IP address, given its prefix.
    Anything else is a usage error: looked up, it could only be "no block in force"."""
    kind, _, rest = text.partition(":")
    if kind in ("unix", "unix-abstract") and rest:
        return text
    if kind == "ipv4":
        candidate, version = rest, 4
    elif kind == "ipv6" and rest.startswith("[") and rest.endswith("]"):
        candidate, version = rest[1:-1], 6
    else:  # a bare address
        candidate, version = text.removeprefix("[").removesuffix("]"), 0
    try:
        ip = ipaddress.ip_address(candidate)
    except ValueError:
        ip = None
    if ip is None or version not in (0, ip.version):
        raise UsageError(f"{text!r} is not an IP address as `blocks list` shows it (ipv4:10.0.0.7, "
                         "ipv6:[2001:db8::7], or a bare 10.0.0.7)", field="ADDRESS")
    if version:
        return text
    return f"ipv4:{candidate}" if ip.version == 4 else f"ipv6:[{candidate}]"


@dataclass(frozen=True)
class Block:
    id: int
    address: str
    caller: str
    reason: str
    since_ms: int
    lifted_at_ms: int | None

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "address": self.address, "caller": self.caller, "reason": self.reason,
                "since_ms": self.since_ms, "lifted_at_ms": self.lifted_at_ms}


class _Bucket:
    __slots__ = ("refusals", "stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp
        self.refusals: list[float] = []


class Guard:
    """Rate limits and the block list, shared by every servicer thread."""

    def __init__(self, store: Store, config: AbuseConfig, *, clock: Callable[[], float] = time.monotonic,
                 wall_ms: Callable[[], int] = _now_ms) -> None:
        self._store = store
        self._config = config
        self._clock = clock
        self._wall_ms = wall_ms
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self._blocked: frozenset[str] = frozenset()
        self._loaded_at = float("-inf")

    def admit(self, address: str, caller: str, *, block: bool = True, cost: int = 1) -> None:
        """Refuse a blocked address, or a caller over its rate (blocking it on an abnormal burst,
        unless ``block`` is false: the address is a federation node speaking for many callers).

        ``cost``: tokens the call takes (a list check of many subjects weighs more than a lookup),
        never more than the bucket holds."""
        if address in self._active_blocks():
            raise BlockedError(f"address {address} is blocked after abnormal access; ask the operator")
        now = self._clock()
        cfg = self._config
        with self._lock:
            bucket = self._buckets.get(caller)
            if bucket is None:
                if len(self._buckets) >= _MAX_BUCKETS:
                    self._prune(now)
                bucket = self._buckets[caller] = _Bucket(float(cfg.burst), now)
            bucket.tokens = min(float(cfg.burst), bucket.tokens + (now - bucket.stamp) * cfg.rate_per_s)
            bucket.stamp = now
            need = float(min(max(cost, 1), cfg.burst))
            if bucket.tokens >= need:
                bucket.tokens -= need
                return
            horizon = now - cfg.block_window_s
            bucket.refusals = [t for t in bucket.refusals if t > horizon]
            bucket.refusals.append(now)
            burst = block and len(bucket.refusals) >= cfg.block_after
            if burst:
                bucket.refusals.clear()
        if burst:
            self.block(address, caller, f"{cfg.block_after} calls over the rate limit within "
                                        f"{cfg.block_window_s:g} s")
            raise BlockedError(f"address {address} is blocked after an abnormal burst of access")
        raise RateLimitedError(f"caller {caller} exceeds {cfg.rate_per_s:g} calls/s", field="rate")

    def _prune(self, now: float) -> None:
        idle = self._config.burst / max(self._config.rate_per_s, 1e-9)
        for key in [k for k, b in self._buckets.items() if now - b.stamp > idle]:
            del self._buckets[key]

    def _active_blocks(self) -> frozenset[str]:
        now = self._clock()
        if now - self._loaded_at >= self._config.cache_s:
            with translated("reading the block list"), self._store.engine.connect() as conn:
                rows = conn.execute(select(blocks.c.address).where(blocks.c.lifted_at_ms.is_(None)))
                self._blocked = frozenset(r.address for r in rows)
            self._loaded_at = now
        return self._blocked

    def block(self, address: str, caller: str, reason: str, *, actor: str = "") -> Block:
        now = self._wall_ms()
        with translated("blocking an address"), write_transaction(self._store.engine) as conn:
            new_id = conn.execute(blocks.insert().values(address=address, caller=caller, reason=reason,
                                                         since_ms=now, lifted_at_ms=None)).inserted_primary_key
            self._store.audit.append(conn, [AuditEvent(actor or "abuse-guard", "block", address,
                                                       {"caller": caller, "reason": reason})], at_ms=now)
        with self._lock:
            self._blocked = self._blocked | {address}
        return Block(int(new_id[0]) if new_id else 0, address, caller, reason, now, None)

    def lift(self, address: str, *, actor: str = "operator") -> int:
        """Lift every block in force on ``address``; returns how many there were."""
        now = self._wall_ms()
        c = blocks.c
        with translated("lifting a block"), write_transaction(self._store.engine) as conn:
            n = conn.execute(update(blocks).where(c.address == address, c.lifted_at_ms.is_(None))
                             .values(lifted_at_ms=now)).rowcount
            if n:
                self._store.audit.append(conn, [AuditEvent(actor, "unblock", address, {"blocks": n})],
                                         at_ms=now)
        if not n:
            raise NotFoundError(f"no block in force on {address}")
        with self._lock:
            self._blocked = self._blocked - {address}
        return int(n)

    def list(self, *, include_lifted: bool = False) -> list[Block]:
        c = blocks.c
        stmt = select(blocks).order_by(c.id)
        if not include_lifted:
            stmt = stmt.where(c.lifted_at_ms.is_(None))
        with translated("reading the block list"), self._store.engine.connect() as conn:
            return [Block(int(r.id), r.address, r.caller, r.reason, int(r.since_ms),
                          None if r.lifted_at_ms is None else int(r.lifted_at_ms)) for r in conn.execute(stmt)]


class SharingSwitch:
    """Whether disclosure is suspended, as the store says (cached for ``cache_s``)."""

    def __init__(self, store: Store, *, cache_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._cache_s = cache_s
        self._clock = clock
        self._value = False
        self._loaded_at = float("-inf")

    def suspended(self) -> bool:
        now = self._clock()
        if now - self._loaded_at >= self._cache_s:
            self._value = self._store.meta.get(SHARING_KEY, "0") == "1"
            self._loaded_at = now
        return self._value

    def check(self) -> None:
        if self.suspended():
            raise SharingSuspendedError("disclosure is suspended by the operator (sharing suspend); "
                                        "reporting continues")

    def set(self, suspended: bool, *, actor: str = "operator", reason: str = "") -> None:
        now = _now_ms()
        with translated("switching sharing"), write_transaction(self._store.engine) as conn:
            put_value(conn, SHARING_KEY, "1" if suspended else "0")
            self._store.audit.append(conn, [AuditEvent(actor, "sharing.suspend" if suspended else "sharing.resume",
                                                       "sharing", {"reason": reason})], at_ms=now)
        self._value, self._loaded_at = suspended, self._clock()
