"""The forwarder against real stores and a real inbox, with the network replaced by a loopback.

A department and a district are real nodes (certificates from a dev CA, SQLite stores); the
"transport" hands batches straight to the district's inbox, or fails the way a network does. This
pins the forwarder's contract: hop signatures naming the rule, done only when taken, refusals to
dead letters with the receiver's code, bounded retries then dead letters, an outage that spends
no attempts, leases that bring back a crashed forwarder's rows, and operator replay.
"""

from __future__ import annotations

import pathlib
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pytest

from node.app import Node, build_node
from node.backoff import Backoff
from node.config import load_config
from node.demo.layout import chain_plan, provision
from node.demo.processes import wait_until
from node.errors import PeerUnavailableError, TransportError
from node.forwarding import Forwarder
from node.inbox import ACCEPTED, DUPLICATE
from node.records import decode_signed, pb
from node.replay import replay_letters
from node.sampledata import penalty_rows, write_csv
from node.store.deliveries import Deliveries
from node.store.records import OutboxEntry
from node.transport.base import Delivery
from node.transport.wire import decode

DEPT, DISTRICT = "dept:330102:scjgj", "district:330102"
FAST = Backoff(min_s=0.01, max_s=0.05, max_attempts=3)


@dataclass
class Loopback:
    """A transport into ``target``'s inbox; ``down`` makes it unreachable, ``fail`` fails sends."""

    target: Node
    down: int = 0  # connect() fails this many more times
    fail: int = 0  # send() fails this many more times
    refuse: str = ""  # every record refused with this code
    batches: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def peer(self) -> str:
        return self.target.config.id

    def connect(self) -> None:
        with self.lock:
            if self.down > 0:
                self.down -= 1
                raise PeerUnavailableError("loopback: down")

    def send(self, records: Sequence[bytes], certificates: Sequence[bytes]) -> list[Delivery]:
        with self.lock:
            if self.fail > 0:
                self.fail -= 1
                raise TransportError("loopback: connection reset")
        if self.refuse:
            return [Delivery("rejected", self.refuse, "refused by the test")] * len(records)
        self.batches.append(len(records))
        request = decode(pb.SubmitRequest, b"".join(_field(1, r) for r in records))
        self.target.inbox.learn_certificates(list(certificates))
        receipts = self.target.inbox.receive(request.records, sender=DEPT)
        states = {ACCEPTED: "accepted", DUPLICATE: "duplicate"}
        return [Delivery(states.get(r.outcome, "rejected"),  # type: ignore[arg-type]
                         r.problem.code if r.problem else "", r.problem.message if r.problem else "")
                for r in receipts]

    def close(self) -> None:
        pass


def _field(number: int, data: bytes) -> bytes:
    from node.transport.wire import _field as encode

    return encode(bytes([(number << 3) | 2]), data)


@pytest.fixture
def pair(tmp_path: pathlib.Path) -> Iterator[tuple[Node, Node]]:
    fed = provision(tmp_path, chain_plan())
    dept, district = build_node(load_config(fed.configs[DEPT])), build_node(load_config(fed.configs[DISTRICT]))
    csv = tmp_path / "penalties.csv"
    write_csv(csv, dept.catalog.item("admin_penalty"),
              penalty_rows(120, source_unit=fed.layout.node(DEPT).unit, seed=9))
    assert dept.import_file(csv, "admin_penalty").accepted == 120
    try:
        yield dept, district
    finally:
        dept.close()
        district.close()


def forwarder(dept: Node, transport: Loopback, backoff: Backoff = FAST, batch: int = 50) -> Forwarder:
    return Forwarder(outbox=dept.store.outbox, signer=dept.signer, trust=dept.trust,
                     transports={DISTRICT: lambda: transport}, backoff=backoff, batch=batch, lease_s=30)


def drain(fwd: Forwarder, transport: Loopback) -> int:
    moved = total = 0
    while (moved := fwd.drain_once(DISTRICT, transport)) > 0:
        total += moved
    return total


def test_each_record_gets_a_hop_naming_its_rule_and_is_done_once_taken(pair: tuple[Node, Node]) -> None:
    dept, district = pair
    transport = Loopback(district)
    assert drain(forwarder(dept, transport), transport) == 120
    assert transport.batches == [50, 50, 20]  # many records per message
    assert dept.store.outbox.status() == {}
    first = next(district.store.records.iter_revisions())
    signed = decode_signed(first.signed)
    assert [(s.kind, s.signer, s.rule_id) for s in signed.chain] == [
        (pb.ORIGIN, DEPT, ""), (pb.HOP, DEPT, "penalty-to-province")]
    assert district.verifier.verify([signed]) == [None]
    # A lost acknowledgement: everything is sent again. No second effect, and done again.
    again = [OutboxEntry(r.record_id, r.revision, DISTRICT, "penalty-to-province")
             for r in dept.store.records.iter_revisions()]
    assert Deliveries(dept.store.engine).add(again) == 120
    assert drain(forwarder(dept, transport), transport) == 120
    assert district.store.records.counts() == {"admin_penalty": 120}
    assert dept.store.outbox.status() == {}


def test_a_refused_record_goes_to_the_dead_letters_with_the_receivers_code(pair: tuple[Node, Node]) -> None:
    dept, district = pair
    transport = Loopback(district, refuse="E_NOT_AUTHORIZED")
    drain(forwarder(dept, transport), transport)
    letters = dept.store.outbox.dead_letters("outbox")
    assert len(letters) == 120 and {d.reason for d in letters} == {"E_NOT_AUTHORIZED"}
    assert "refused by district:330102" in letters[0].message


def test_failures_are_retried_with_backoff_then_dead_lettered_then_replayed(pair: tuple[Node, Node]) -> None:
    dept, district = pair
    transport = Loopback(district, fail=1000)
    fwd = forwarder(dept, transport, batch=200)
    for _ in range(FAST.max_attempts):
        wait_until(lambda: fwd.drain_once(DISTRICT, transport) > 0, 5, what="rows due again", poll_s=0.01)
    letters = dept.store.outbox.dead_letters("outbox")
    assert len(letters) == 120 and letters[0].reason == "E_TRANSPORT"
    assert "gave up after 3 attempts" in letters[0].message
    transport.fail = 0
    report = replay_letters(dept, None)  # what `credit-node outbox replay --all` does
    assert len(report.requeued) == 120 and not report.failed
    assert drain(fwd, transport) == 120
    assert district.store.records.counts() == {"admin_penalty": 120}
    assert dept.store.outbox.status() == {}


def test_an_outage_spends_no_delivery_attempts(pair: tuple[Node, Node]) -> None:
    dept, district = pair
    transport = Loopback(district, down=20)  # many more failed connects than max_attempts
    fwd = forwarder(dept, transport)
    fwd.start()
    try:
        wait_until(lambda: district.store.records.counts().get("admin_penalty", 0) == 120, 30,
                   what="every record at the district")
    finally:
        fwd.stop()
    assert transport.down == 0
    assert dept.store.outbox.dead_letters() == []
    assert fwd.stats[DISTRICT].retried == 0


def test_rows_of_a_forwarder_that_died_come_back_after_their_lease(pair: tuple[Node, Node]) -> None:
    dept, _district = pair
    now = time.time_ns() // 1_000_000 + 1_000
    leased = dept.store.outbox.claim(DISTRICT, 500, now, lease_ms=5_000)  # claimed, then the process died
    assert len(leased) == 120
    assert dept.store.outbox.claim(DISTRICT, 500, now + 4_999) == []
    back = dept.store.outbox.claim(DISTRICT, 500, now + 5_000)
    assert [i.id for i in back] == [i.id for i in leased] and back[0].attempts == 2


class _HungParent:
    """A transport whose connect waits for ever, as for a parent that never answers, until interrupted."""

    peer = DISTRICT

    def __init__(self) -> None:
        self.connecting = threading.Event()
        self.interrupted = threading.Event()

    def connect(self) -> None:
        self.connecting.set()
        self.interrupted.wait()
        raise PeerUnavailableError("interrupted")

    def send(self, records: object, certificates: object) -> list[object]:
        raise AssertionError("never connected")

    def close(self) -> None:
        pass

    def interrupt(self) -> None:
        self.interrupted.set()


def test_stopping_interrupts_a_transport_waiting_for_its_parent(pair: tuple[Node, Node]) -> None:
    dept, _district = pair
    hung = _HungParent()
    fwd = Forwarder(outbox=dept.store.outbox, signer=dept.signer, trust=dept.trust,
                    transports={DISTRICT: lambda: hung}, backoff=FAST, lease_s=30)  # type: ignore[dict-item]
    fwd.start()
    assert hung.connecting.wait(10)
    fwd.stop()  # joins the lane's thread (for up to 30 s): the connect must have been cut short
    assert hung.interrupted.is_set()
