"""The lifecycle desk of one node: its objections and checks, repairs, deletions and archive sweep.

Built from a :class:`node.app.Node` (its store, catalogue, signer, router) and the ``lifecycle``
and ``access`` sections of its configuration, so the CLI, a scheduler or a gRPC portal all act
through the same parts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from node import access
from node.lifecycle.calendar import WorkingCalendar, bundled_calendar, china_date
from node.lifecycle.checks import PlatformChecks
from node.lifecycle.deletion import DeletionService
from node.lifecycle.disclosure import Sweep
from node.lifecycle.objection_service import ObjectionService
from node.lifecycle.objections import Deadlines
from node.lifecycle.repair import RepairService
from node.lifecycle.revisions import Reviser
from node.routing import Router
from node.validation import Validator

if TYPE_CHECKING:
    from node.app import Node

__all__ = ["Desk", "build_desk"]


def _now_ms() -> int:
    import time

    return time.time_ns() // 1_000_000


@dataclass
class Desk:
    calendar: WorkingCalendar
    reviser: Reviser
    objections: ObjectionService
    repairs: RepairService
    deletions: DeletionService
    sweep: Sweep
    checks: PlatformChecks


def build_desk(node: Node, *, clock: Callable[[], int] = _now_ms) -> Desk:
    cfg = node.config
    life = cfg.lifecycle
    calendar = WorkingCalendar.load(cfg.path(life.calendar) if life.calendar else bundled_calendar())
    router = Router(cfg.id, cfg.parent.id if cfg.parent else None)
    from node.app import conflict_detection

    reviser = Reviser(node_id=cfg.id, catalog=node.catalog, signer=node.signer, store=node.store, router=router,
                      clock=clock, conflicts=conflict_detection(cfg, node.store))
    validator = Validator(node.catalog, uscc_allowlist=cfg.validation.uscc_allowlist, source_unit=node.own_unit,
                          allow_other_units=cfg.validation.allow_other_units)
    deadlines = Deadlines(check_days=life.check_days, source_days=life.source_days, result_days=life.result_days,
                          statement_days=life.statement_days, statement_within_days=life.statement_within_days,
                          check_source_days=life.check_source_days)
    objections = ObjectionService(node_id=cfg.id, store=node.store, catalog=node.catalog, reviser=reviser,
                                  verifier=node.verifier, validator=validator, calendar=calendar,
                                  deadlines=deadlines, policy=access.Policy(disputed=cfg.access.disputed),
                                  clock=clock, evidence_max_bytes=life.evidence_max_bytes)
    repairs = RepairService(node_id=cfg.id, store=node.store, catalog=node.catalog, reviser=reviser, clock=clock)
    deletions = DeletionService(node_id=cfg.id, store=node.store, catalog=node.catalog, reviser=reviser,
                                calendar=calendar, deadline_days=life.deletion_days, clock=clock)
    sweep = Sweep(store=node.store, catalog=node.catalog, reviser=reviser, node_id=cfg.id, scope=life.sweep_scope,
                  today=lambda: china_date(clock()))
    checks = PlatformChecks(node_id=cfg.id, store=node.store, catalog=node.catalog, reviser=reviser,
                            cases=objections.cases, calendar=calendar, deadlines=deadlines, clock=clock)
    return Desk(calendar, reviser, objections, repairs, deletions, sweep, checks)
