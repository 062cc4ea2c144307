"""Lifecycle test kit: a dev CA, node identities, and one node's parts on a real store.

A ``Kit`` is what ``node.app.build_node`` would make for one node, minus files: the catalogue
shipped in the tree, real Ed25519 signing certificates, a frozen clock, and the store on the
``engine`` fixture (SQLite and PostgreSQL). ``carry_up`` and ``carry_down`` move outbox rows
between two kits the way the forwarder would, into the receiving node's real receive path
(``node.inbox.Inbox`` going up, ``node.downward.Downward`` coming down).
"""

from __future__ import annotations

import datetime as dt
import pathlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace

from sqlalchemy import Engine, func, select

from node import access
from node.catalog import Catalog, Item
from node.config import ChildConfig, LifecycleConfig, parse_config
from node.downward import Downward
from node.identity import LoadedIdentity, init_ca, issue, load_identity
from node.inbox import Inbox
from node.ingest import Ingest
from node.lifecycle.calendar import WorkingCalendar, bundled_calendar
from node.lifecycle.checks import PlatformChecks
from node.lifecycle.objection_service import ObjectionService
from node.lifecycle.objections import Deadlines
from node.lifecycle.revisions import Reviser
from node.preparing import Preparer
from node.records import decode_body, decode_signed, pb
from node.routing import Router, level_of
from node.sampledata import penalty_rows, unit_uscc
from node.signing import Signer, Verifier
from node.store import RecordRow, Store
from node.store.tables import audit_log
from node.tabular import SourceRow
from node.transport.wire import fpb
from node.truststore import TrustStore
from node.validation import Validator

DEPT = "dept:330102:scjgj"
DISTRICT = "district:330102"
CITY = "city:330100"
UNIT = unit_uscc("330102", "00248297")
CHINA = dt.timezone(dt.timedelta(hours=8))


def ms_at(day: dt.date, hour: int = 10) -> int:
    """Unix ms of ``hour`` o'clock Beijing time on ``day``."""
    return int(dt.datetime(day.year, day.month, day.day, hour, tzinfo=CHINA).timestamp() * 1000)


@dataclass
class Clock:
    """A frozen clock: unix ms, moved only by the test."""

    now: int

    def __call__(self) -> int:
        return self.now

    def today(self) -> dt.date:
        return dt.datetime.fromtimestamp(self.now / 1000, CHINA).date()

    def set_day(self, day: dt.date, hour: int = 10) -> None:
        self.now = ms_at(day, hour)


def make_pki(base: pathlib.Path) -> dict[str, LoadedIdentity]:
    ca = init_ca(base / "ca")
    # Valid since 2024: the tests' frozen clock signs at dates before today.
    since = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    return {nid: load_identity(issue(ca, nid, "node", base / nid.replace(":", "_"), not_before=since, days=3650))
            for nid in (DEPT, DISTRICT, CITY)}


def trust_of(ids: dict[str, LoadedIdentity]) -> TrustStore:
    trust = TrustStore(next(iter(ids.values())).ca_pem)
    for ident in ids.values():
        trust.add_certificate(ident.signing_cert_der)
    return trust


@dataclass
class Kit:
    node_id: str
    parent: str | None
    store: Store
    catalog: Catalog
    signer: Signer
    verifier: Verifier
    router: Router
    validator: Validator
    ingest: Ingest
    inbox: Inbox
    reviser: Reviser
    clock: Clock
    calendar: WorkingCalendar
    settings: LifecycleConfig = field(default_factory=LifecycleConfig)
    children: tuple[str, ...] = ()
    verifier_trust: TrustStore | None = None

    @property
    def item(self) -> Item:
        return self.catalog.item("admin_penalty")

    def import_penalties(self, n: int, *, seed: int = 1, **overrides: str) -> list[str]:
        """Ingest ``n`` valid 行政处罚 rows (``overrides`` set fields on every row); their record ids."""
        rows = [SourceRow(i + 2, {**r, **overrides})
                for i, r in enumerate(penalty_rows(n, source_unit=UNIT, seed=seed))]
        out = self.ingest.ingest_batch(self.item, rows, source="test.csv", batch_id=f"b{seed}")
        bad = [o for o in out if o.outcome == "rejected"]
        assert not bad, bad[0].problems
        return [o.record_id for o in out]

    def head(self, record_id: str) -> RecordRow:
        row = self.store.records.get(record_id)
        assert row is not None, record_id
        return row


def make_kit(engine: Engine, node_id: str, *, parent: str | None, children: Sequence[str] = (),
             ids: dict[str, LoadedIdentity], catalog: Catalog, clock: Clock,
             settings: LifecycleConfig | None = None) -> Kit:
    store = Store(engine)
    ident = ids[node_id]
    signer = Signer(ident.node_id, ident.signing_key, ident.signing_cert_der)
    trust = trust_of(ids)
    verifier = Verifier(trust)
    router = Router(node_id, parent)
    unit = UNIT if node_id.startswith("dept:") else ""
    validator = Validator(catalog, source_unit=unit)
    ingest = Ingest(preparer=Preparer(node_id=node_id, catalog=catalog, validator=validator, clock=clock),
                    signer=signer, store=store, router=router, clock=clock)
    inbox = Inbox(node_id=node_id, catalog=catalog, validator=validator, verifier=verifier, trust=trust,
                  store=store, router=router, children=[ChildConfig(c) for c in children], clock=clock)
    reviser = Reviser(node_id=node_id, catalog=catalog, signer=signer, store=store, router=router, clock=clock)
    return Kit(node_id, parent, store, catalog, signer, verifier, router, validator, ingest, inbox, reviser,
               clock, WorkingCalendar.load(bundled_calendar()), settings or LifecycleConfig(), tuple(children), trust)


def _pending(kit: Kit, destination: str) -> list[tuple[int, pb.SignedRecord, str]]:
    items = kit.store.outbox.claim(destination, 100_000, 2**62)  # every row is due, whatever its clock
    return [(i.id, decode_signed(i.signed), i.rule_id) for i in items]


def carry_up(child: Kit, parent: Kit) -> int:
    """Deliver the child's outbox rows for its parent into the parent's inbox (as the forwarder would)."""
    pending = _pending(child, parent.node_id)
    if not pending:
        return 0
    records = [_hop(child, rec, rule) for _id, rec, rule in pending]
    receipts = parent.inbox.receive(records, sender=child.node_id)
    assert all(r.outcome in ("accepted", "duplicate") for r in receipts), receipts
    child.store.outbox.done([i for i, _r, _u in pending])
    return len(records)


def carry_down(parent: Kit, child: Kit) -> int:
    """Deliver the parent's outbox rows addressed to ``child`` through the child's real downward
    receive path (``node.downward.Downward.apply``: verify, store, pass on towards the source)."""
    pending = _pending(parent, child.node_id)
    if not pending:
        return 0
    records = [_hop(parent, rec, rule) for _id, rec, rule in pending]
    request = pb.SubmitRequest(records=records)
    message = fpb.DownMessage(records=request.SerializeToString())
    done = Downward(_node_view(child), clock=child.clock).apply(parent.node_id, message)  # type: ignore[arg-type]
    assert "stored" in done, done
    parent.store.outbox.done([i for i, _r, _u in pending])
    return len(records)


def _node_view(kit: Kit) -> SimpleNamespace:
    """The parts of a ``node.app.Node`` the downward channel uses."""
    config = parse_config({"id": kit.node_id, "level": level_of(kit.node_id), "identity": {"dir": "unused"},
                           "unit": UNIT, **({"parent": {"id": kit.parent, "target": "unused:1"}} if kit.parent else {}),
                           "children": [{"id": c} for c in kit.children]})
    return SimpleNamespace(config=config, store=kit.store, inbox=kit.inbox, verifier=kit.verifier,
                           catalog=kit.catalog, trust=kit.verifier_trust, signer=kit.signer)


def _hop(kit: Kit, rec: pb.SignedRecord, rule: str) -> pb.SignedRecord:
    sig = kit.signer.sign_hops([rec], [rule], now_ms=kit.clock())[0]
    out = pb.SignedRecord()
    out.CopyFrom(rec)
    out.chain.append(sig)
    return out


def audit_rows(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(audit_log)).scalar_one())


def objection_service(kit: Kit, disputed: str = "suspend") -> ObjectionService:
    s = kit.settings
    return ObjectionService(
        node_id=kit.node_id, store=kit.store, catalog=kit.catalog, reviser=kit.reviser, verifier=kit.verifier,
        validator=kit.validator, calendar=kit.calendar, policy=access.Policy(disputed=disputed),  # type: ignore[arg-type]
        deadlines=Deadlines(s.check_days, s.source_days, s.result_days, s.statement_days, s.statement_within_days),
        clock=kit.clock)


def visible(kit: Kit, record_id: str, role: str = "public", disputed: str = "suspend") -> access.Decision:
    """What the Query service would decide for ``role`` on the record's head at ``kit``, today."""
    head = kit.head(record_id)
    item = kit.catalog.item(head.item)
    fields = {f.name: f.value for f in decode_body(head.body).fields}
    facts = access.RecordFacts(head.item, item.disclosure_class, head.subject_code, head.subject_kind, head.status,
                               access.window_state(item, fields, head.decision_date, kit.clock.today()))
    node_id = f"self:{head.subject_code.lower()}" if role == "self" else f"{role}:x"
    return access.decide(access.Caller(node_id, role, "duty"), facts, access.Policy(disputed=disputed))  # type: ignore[arg-type]


def platform_checks(kit: Kit, service: ObjectionService) -> PlatformChecks:
    """The node's platform checks, sharing ``service``'s case store (as ``build_desk`` wires them)."""
    s = kit.settings
    return PlatformChecks(
        node_id=kit.node_id, store=kit.store, catalog=kit.catalog, reviser=kit.reviser, cases=service.cases,
        calendar=kit.calendar, clock=kit.clock,
        deadlines=Deadlines(s.check_days, s.source_days, s.result_days, s.statement_days, s.statement_within_days,
                            s.check_source_days))


@dataclass
class Federation:
    """A department, its district and their city, holding four penalties the department reported."""

    dept: Kit
    district: Kit
    city: Kit
    desk: ObjectionService  # at the city: where subjects file, and the platform's own cases
    checks: PlatformChecks  # at the city, sharing the desk's cases
    source: ObjectionService  # at the department, where the source unit answers
    records: list[str]

    def up(self) -> None:
        carry_up(self.dept, self.district)
        carry_up(self.district, self.city)

    def down(self) -> None:
        carry_down(self.city, self.district)
        carry_down(self.district, self.dept)

    def kits(self) -> tuple[Kit, Kit, Kit]:
        return self.dept, self.district, self.city


def three_levels(engine: Engine, more_engines: Callable[[], Engine], *, ids: dict[str, LoadedIdentity],
                 catalog: Catalog, clock: Clock) -> Federation:
    dept = make_kit(engine, DEPT, parent=DISTRICT, ids=ids, catalog=catalog, clock=clock)
    district = make_kit(more_engines(), DISTRICT, parent=CITY, children=[DEPT], ids=ids, catalog=catalog,
                        clock=clock)
    city = make_kit(more_engines(), CITY, parent=None, children=[DISTRICT], ids=ids, catalog=catalog, clock=clock)
    # Decided in 2025 with no severity: ordinary, disclosed for 12 months, so still open in March 2026.
    records = dept.import_penalties(4, CF_JDRQ="2025-09-01", CF_YXQ="2026-09-01")
    desk = objection_service(city)
    fed = Federation(dept, district, city, desk, platform_checks(city, desk), objection_service(dept), records)
    fed.up()
    return fed
