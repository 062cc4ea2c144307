"""The forwarder: drains the outbox to each destination over its transport (DESIGN §2.5, §2.6).

A node extension (``start``/``stop``) with one thread per destination (the parent, and children
reached over amqp), each with its own transport. A round:

1. make sure the peer is reachable (``Transport.connect``; retried for as long as it takes, so an
   outage spends no delivery attempts and ends without dead letters);
2. claim up to ``batch`` due outbox rows (a lease: a forwarder that dies gives them back when the
   lease runs out);
3. append this node's HOP signature to each record's chain, naming the outbox row's routing rule
   (one Ed25519 signature for the whole batch), and ship the batch with the signers' certificates;
4. mark done what the receiving side durably took; a record the receiver refused goes straight to
   the dead letters with the receiver's code (sending it again would not change the answer);
5. if the batch failed as a whole, each row is retried after ``Backoff.delay(attempts)``, and a
   row that has used ``max_attempts`` goes to the dead letters (``credit-node outbox replay``) —
   unless the peer is not ready for anyone (a queue missing, permissions gone, a broker in a
   resource alarm): then the rows get their attempt back and wait, however long it takes, with
   the rounds spaced out by the backoff.

Delivery is at-least-once (a batch may be sent again after the receiver took it); the receiver's
idempotent inbox makes the effect exactly-once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization

from node.backoff import Backoff
from node.errors import NodeError, PeerNotReadyError
from node.records import decode_signed
from node.signing import Signer
from node.store import Outbox, OutboxItem
from node.transport.base import Transport
from node.transport.wire import append_hop
from node.truststore import TrustStore

__all__ = ["DestinationStats", "Forwarder", "HopSigner"]

log = logging.getLogger(__name__)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class DestinationStats:
    """What one destination's thread has done since start (for status and tests)."""

    sent: int = 0
    done: int = 0
    retried: int = 0
    dead: int = 0
    batches: int = 0
    connected: bool = False
    last_error: str = ""
    last_contact_ms: int = 0


@dataclass
class _Lane:
    destination: str
    factory: Callable[[], Transport]
    stats: DestinationStats = field(default_factory=DestinationStats)
    thread: threading.Thread | None = None
    transport: Transport | None = None


def _reach(transport: Transport) -> bool:
    transport.connect()
    return True


class HopSigner:
    """Signs outbox items on: this node's HOP on each record, and the certificates the chains need.

    Shared by the forwarder and by a parent serving its children's pulls (``Federation.Pull``).
    """

    def __init__(self, signer: Signer, trust: TrustStore, clock: Callable[[], int] = _now_ms) -> None:
        self._signer = signer
        self._trust = trust
        self._clock = clock
        self._certificates: dict[bytes, bytes] = {}
        self._lock = threading.Lock()

    def prepare(self, items: Sequence[OutboxItem]) -> tuple[list[bytes], list[bytes]]:
        """Each record with this node's hop appended (rule = the item's rule), and the DER certificates."""
        records = [decode_signed(i.signed) for i in items]
        hops = self._signer.sign_hops(records, [i.rule_id for i in items], now_ms=self._clock())
        key_ids = {sig.key_id for rec in records for sig in rec.chain}
        key_ids.add(self._signer.key_id)
        payload = [append_hop(i.signed, hop) for i, hop in zip(items, hops, strict=True)]
        return payload, self._certificates_for(key_ids)

    def _certificates_for(self, key_ids: set[bytes]) -> list[bytes]:
        out = []
        with self._lock:
            for key_id in sorted(key_ids):
                der = self._certificates.get(key_id)
                if der is None:
                    cert = self._trust.get(key_id)
                    if cert is None:
                        continue  # the receiver reports E_SIGNER_UNKNOWN for that record
                    der = self._certificates[key_id] = cert.public_bytes(serialization.Encoding.DER)
                out.append(der)
        return out


class Forwarder:
    def __init__(self, *, outbox: Outbox, signer: Signer, trust: TrustStore,
                 transports: Mapping[str, Callable[[], Transport]], backoff: Backoff, batch: int = 1000,
                 lease_s: float = 30.0, idle_s: float = 0.1, clock: Callable[[], int] = _now_ms,
                 on_contact: Callable[[str], None] | None = None) -> None:
        self._outbox = outbox
        self._on_contact = on_contact or (lambda _node_id: None)  # Admin.Status: the parent's last contact
        self._signer = signer
        self._trust = trust
        self._lanes = {dest: _Lane(dest, factory) for dest, factory in transports.items()}
        self._backoff = backoff
        self._batch = max(1, batch)
        self._lease_ms = int(lease_s * 1000)
        self._idle_s = idle_s
        self._clock = clock
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._hops = HopSigner(signer, trust, clock)

    name = "forwarder"

    @property
    def stats(self) -> dict[str, DestinationStats]:
        return {dest: lane.stats for dest, lane in self._lanes.items()}

    def start(self) -> None:
        self._stop.clear()
        for lane in self._lanes.values():
            if lane.thread is None:
                lane.thread = threading.Thread(target=self._run, args=(lane,), name=f"forward {lane.destination}",
                                               daemon=True)
                lane.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for lane in self._lanes.values():
            # A transport that can be cut short from here (gRPC) does not keep the node from
            # stopping for a connect timeout, or for a call to a parent that hangs.
            interrupt = getattr(lane.transport, "interrupt", None)
            if interrupt is not None:
                interrupt()
        for lane in self._lanes.values():
            if lane.thread is not None:
                lane.thread.join(timeout=30)
                lane.thread = None

    def wake(self) -> None:
        """New rows are waiting (saves the idle poll's latency)."""
        self._wake.set()

    # --- one destination ----------------------------------------------------------------------
    def _run(self, lane: _Lane) -> None:
        transport = lane.transport = lane.factory()
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    if not lane.stats.connected:
                        reached = self._backoff.reconnecting(lambda: _reach(transport), self._stop,
                                                             self._unreachable(lane))
                        if reached is None:  # stopped while the peer was unreachable
                            return
                        lane.stats.connected = True
                        log.info("forwarder: connected to %s", lane.destination)
                    moved = self.drain_once(lane.destination, transport)
                except NodeError as exc:  # the store failed, or the peer refuses us: wait, try again
                    log.error("forwarder %s: %s", lane.destination, exc)
                    self._stop.wait(self._backoff.delay(2))
                    continue
                except Exception:  # a bug must not silently end forwarding for good: log, pause, go on
                    log.exception("forwarder %s: unexpected error", lane.destination)
                    lane.stats.connected = False
                    self._stop.wait(self._backoff.max_s)
                    continue
                if not lane.stats.connected:
                    # The batch failed: pause before the next claim, so a peer that refuses every
                    # batch does not have the whole outbox's attempts spent in one burst.
                    failures += 1
                    self._stop.wait(self._backoff.delay(failures))
                    continue
                failures = 0
                if moved == 0:
                    self._wake.wait(self._idle_s)
                    self._wake.clear()
        finally:
            transport.close()

    def _unreachable(self, lane: _Lane) -> Callable[[BaseException, float], None]:
        def note(exc: BaseException, wait_s: float) -> None:
            lane.stats.last_error = str(exc)
            log.warning("forwarder: %s unreachable (%s); retrying in %.1fs", lane.destination, exc, wait_s)
        return note

    def drain_once(self, destination: str, transport: Transport) -> int:
        """One claim → sign → send → settle round; returns how many rows it settled or rescheduled."""
        lane = self._lanes.get(destination)
        stats = lane.stats if lane is not None else DestinationStats()
        items = self._outbox.claim(destination, self._batch, self._clock(), lease_ms=self._lease_ms)
        if not items:
            return 0
        try:
            payload, certificates = self._hops.prepare(items)
        except NodeError as exc:  # a stored record that cannot be signed on: never deliverable as is
            stats.dead += self._outbox.dead([i.id for i in items], exc.code, exc.message)
            return len(items)
        try:
            deliveries = transport.send(payload, certificates)
        except NodeError as exc:
            transport.close()
            stats.connected = False  # check the peer again before the next claim
            stats.last_error = str(exc)
            self._reschedule(items, exc, stats)
            return len(items)
        stats.batches += 1
        stats.sent += len(items)
        stats.last_contact_ms = self._clock()
        self._on_contact(destination)
        done = [i.id for i, d in zip(items, deliveries, strict=True) if d.taken]
        refused: dict[tuple[str, str], list[int]] = defaultdict(list)
        for item, d in zip(items, deliveries, strict=True):
            if not d.taken:
                refused[(d.code or "E_REJECTED", d.message)].append(item.id)
        stats.done += self._outbox.done(done)
        for (code, message), ids in refused.items():
            log.warning("forwarder: %s refused %d record(s): %s: %s", destination, len(ids), code, message)
            stats.dead += self._outbox.dead(ids, code, f"refused by {destination}: {message}")
        return len(items)

    def _reschedule(self, items: Sequence[OutboxItem], exc: NodeError, stats: DestinationStats) -> None:
        now = self._clock()
        if isinstance(exc, PeerNotReadyError):
            # Not these records' fault: spending their attempts would dead-letter the whole
            # outbox during an operator's fix that takes longer than max_attempts rounds.
            stats.retried += self._outbox.release([i.id for i in items], f"{exc.code}: {exc.message}", now)
            log.warning("forwarder: %d record(s) wait for the peer: %s", len(items), exc)
            return
        if not exc.retryable:
            stats.dead += self._outbox.dead([i.id for i in items], exc.code, exc.message)
            return
        exhausted = [i.id for i in items if self._backoff.exhausted(i.attempts)]
        if exhausted:
            stats.dead += self._outbox.dead(exhausted, exc.code,
                                            f"gave up after {self._backoff.max_attempts} attempts: {exc.message}")
        by_attempt: dict[int, list[int]] = defaultdict(list)
        for i in items:
            if not self._backoff.exhausted(i.attempts):
                by_attempt[i.attempts].append(i.id)
        for attempts, ids in by_attempt.items():
            delay_ms = int(self._backoff.delay(attempts) * 1000)
            stats.retried += self._outbox.retry(ids, f"{exc.code}: {exc.message}", now + delay_ms)
        log.warning("forwarder: %d record(s) not delivered (%s), retrying", len(items), exc)
