"""Conflicts between sources (数据冲突): two source units saying different things about one fact.

A record's id includes its source unit, so a second unit reporting the same decision never
overwrites the first: both records are kept. What must not happen is that the difference goes
unnoticed (seed 003 篇1 第十二条). Every fact stored through ingest is therefore noted by its
source-independent key — the item and its natural key (e.g. 行政处罚 + 决定书文号 + subject) —
with the *substance* its source reported; when another unit reports the same key with a different
substance, a conflict is opened for the platform to resolve (``credit-node conflicts``).

The substance is the item's structured fields — dates, amounts, enumerations, codes — where both
reports give a value. Free text (违法事实 and the like) is worded differently by every system and
is not compared; a field only one report fills is an omission, not a contradiction. A later
revision that agrees again closes the conflict as ``agreed``; one that revokes (or deletes) a side
closes it as ``revoked``: a single report then stands, and nothing is inconsistent any more. After
an operator resolved a conflict, revisions leaving exactly the differences decided on open none.

Detection runs inside the transaction that stores the records (``RecordStore.append(also=…)``),
so the notes and the records can never disagree after a crash.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, or_, select, text, update
from sqlalchemy.sql.expression import ClauseElement

from node.catalog import Item
from node.errors import ConflictError, NotFoundError, UsageError
from node.records import decode_body, pb
from node.store._sql import (
    chunks,
    execute_many,
    insert_for,
    is_postgres,
    positional_sql,
    translated,
    write_transaction,
)
from node.store.audit import AuditEvent, AuditLog
from node.store.tables import conflicts as conflicts_table
from node.store.tables import facts as facts_table
from node.store.tables import record_revisions

__all__ = ["COMPARED_TYPES", "Conflict", "Conflicts", "Fact", "fact_of", "natural_key", "observe", "substance"]

# Field types whose values mean the same thing whoever writes them down.
COMPARED_TYPES = frozenset({"date", "decimal", "integer", "enum", "uscc", "id_number", "org_code", "code"})
STATES = ("open", "resolved", "agreed", "revoked")
# A record in one of these no longer says anything (its source took it back, or the platform
# deleted it as unverifiable): it cannot disagree with another unit. Expired and repaired records
# still report what happened, only no longer disclosed, so they stay compared.
WITHDRAWN = frozenset({"revoked", "deleted"})
_FACT_COLUMNS = ("fact_hash", "source_unit", "item", "fact_key", "record_id", "revision", "substance", "seen_at_ms")


@dataclass(frozen=True)
class Fact:
    """One stored report of a fact: which unit said what, in which record revision."""

    item: str
    key: str  # the item's natural key (values joined by U+001F), without the source unit
    source_unit: str
    record_id: str
    revision: int
    substance: Mapping[str, str]
    status: str = "active"

    @property
    def withdrawn(self) -> bool:
        return self.status in WITHDRAWN

    @property
    def fact_hash(self) -> bytes:
        return hashlib.sha256(f"{self.item}\x1f{self.key}".encode()).digest()

    @property
    def display_key(self) -> str:
        return self.key.replace("\x1f", " / ")[:255]


@dataclass(frozen=True)
class Conflict:
    id: int
    item: str
    fact_key: str
    record_a: str
    source_unit_a: str
    revision_a: int
    record_b: str
    source_unit_b: str
    revision_b: int
    differences: dict[str, list[str]]  # field -> [value of a, value of b]
    detected_at_ms: int
    state: str
    kept_record_id: str | None
    note: str
    resolved_by: str | None
    resolved_at_ms: int | None

    def as_dict(self) -> dict[str, object]:
        return dict(vars(self))


def compared_fields(item: Item) -> frozenset[str]:
    """The fields whose values two reports of one fact are compared on (not the unit, not the key)."""
    skip = {item.source_unit_field, *item.key_fields}
    return frozenset(f.code for f in item.fields if f.type in COMPARED_TYPES and f.code not in skip)


def substance(item: Item, fields: Sequence[tuple[str, str]], compared: frozenset[str] | None = None) -> dict[str, str]:
    """The compared part of a record's fields (its source unit and natural key excluded)."""
    keep = compared_fields(item) if compared is None else compared
    return {name: value for name, value in fields if value and name in keep}


def natural_key(item: Item, body: pb.RecordBody) -> str:
    """The item's natural key of a record body, as validation builds it (without the source unit)."""
    values = {f.name: f.value for f in body.fields}
    return "\x1f".join(body.subject_code if k == "@subject_code" else body.subject_kind if k == "@subject_kind"
                       else values.get(k, "") for k in item.key_fields)


def fact_of(item: Item, body: bytes) -> Fact:
    """The fact a stored record body reports (ingest and records received from children alike)."""
    b = decode_body(body)
    return Fact(item.code, natural_key(item, b), b.source_unit, b.record_id, b.revision,
                substance(item, [(f.name, f.value) for f in b.fields]), b.status or "active")


def differences(a: Mapping[str, str], b: Mapping[str, str]) -> dict[str, list[str]]:
    return {k: [a[k], b[k]] for k in sorted(a.keys() & b.keys()) if a[k] != b[k]}


# The PostgreSQL advisory lock that conflict detection holds (any fixed number; per database).
_OBSERVE_LOCK_KEY = int.from_bytes(hashlib.sha256(b"node.conflicts observe").digest()[:8], "big", signed=True)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def observe(conn: Connection, facts: Sequence[Fact], *, now_ms: int | None = None, upsert_sql: str | None = None) -> int:
    """Note ``facts`` and open (or update, or close as agreed) their conflicts; returns conflicts opened.

    Runs in the caller's transaction. Facts of one batch are taken in order, so two units
    disagreeing inside one batch are caught too.
    """
    if not facts:
        return 0
    now = _now_ms() if now_ms is None else now_ms
    if is_postgres(conn):
        # Two batches observing at once would each miss the other's uncommitted facts, and two
        # units disagreeing would never be flagged: one observer at a time, to the commit. (SQLite:
        # the batch's transaction holds the write lock already.) Little is lost: the audit
        # append after this serialises the same transactions anyway.
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _OBSERVE_LOCK_KEY})
    f, c = facts_table.c, conflicts_table.c
    fact_hashes = [x.fact_hash for x in facts]  # a digest each: computed once per fact
    hashes = sorted(set(fact_hashes))
    known: dict[bytes, dict[str, tuple[str, int, dict[str, str]]]] = {}
    open_pairs: dict[tuple[str, str], int] = {}
    decided: dict[tuple[str, str], dict[str, list[str]]] = {}  # the differences an operator resolved
    for chunk in chunks(hashes):
        for h, unit, rid, rev, subst in conn.execute(
                select(f.fact_hash, f.source_unit, f.record_id, f.revision, f.substance).where(f.fact_hash.in_(chunk))):
            known.setdefault(bytes(h), {})[unit] = (rid, rev, json.loads(subst))
        for cid, ra, rb, state, diff_json in conn.execute(
                select(c.id, c.record_a, c.record_b, c.state, c.differences)
                .where(c.fact_hash.in_(chunk), c.state.in_(("open", "resolved"))).order_by(c.id)):
            if state == "open":
                open_pairs[(ra, rb)] = open_pairs[(rb, ra)] = cid
            else:
                said = json.loads(diff_json)
                decided[(ra, rb)] = said
                decided[(rb, ra)] = {k: [v[1], v[0]] for k, v in said.items()}
    opened = 0
    upserts: list[tuple[object, ...]] = []
    for fact, h in zip(facts, fact_hashes, strict=True):
        others = known.setdefault(h, {})
        seen = others.get(fact.source_unit)
        if seen is not None and seen[0] == fact.record_id and seen[1] >= fact.revision:
            # A redelivered copy, or an older revision arriving late: it changes nothing (and must
            # not reopen a conflict an operator resolved, nor overwrite the newer substance).
            continue
        for unit, (rid, rev, other) in sorted(others.items()):
            if unit == fact.source_unit:
                continue
            existing = open_pairs.get((rid, fact.record_id))
            if fact.withdrawn:
                if existing is not None:
                    _close_withdrawn(conn, existing, fact, now)
                    del open_pairs[(rid, fact.record_id)], open_pairs[(fact.record_id, rid)]
                continue
            diff = differences(other, fact.substance)
            if diff and existing is None and decided.get((rid, fact.record_id)) == diff:
                # A revision of either side that changes nothing the operator decided on (a status:
                # disputed, expired …) must not open the same question again.
                pass
            elif diff and existing is None:
                result = conn.execute(conflicts_table.insert().values(
                    item=fact.item, fact_key=fact.display_key, fact_hash=h, record_a=rid, source_unit_a=unit,
                    revision_a=rev, record_b=fact.record_id, source_unit_b=fact.source_unit,
                    revision_b=fact.revision, differences=_json(diff), detected_at_ms=now, state="open", note=""))
                key = result.inserted_primary_key
                assert key is not None
                cid = int(key[0])
                open_pairs[(rid, fact.record_id)] = open_pairs[(fact.record_id, rid)] = cid
                opened += 1
            elif diff and existing is not None:
                # Still disagreeing after a new revision: keep one conflict, show what differs now.
                if _side_a(conn, existing, fact):
                    conn.execute(update(conflicts_table).where(c.id == existing).values(
                        differences=_json({k: [v[1], v[0]] for k, v in diff.items()}), revision_a=fact.revision,
                        detected_at_ms=now))
                else:
                    conn.execute(update(conflicts_table).where(c.id == existing).values(
                        differences=_json(diff), revision_b=fact.revision, detected_at_ms=now))
            elif existing is not None:
                conn.execute(update(conflicts_table).where(c.id == existing).values(
                    state="agreed", resolved_at_ms=now, note="the sources agree again"))
                del open_pairs[(rid, fact.record_id)], open_pairs[(fact.record_id, rid)]
        # A withdrawn report is noted with no substance: the next report of another unit finds
        # nothing to contradict (and its own next revision is compared again if it stands again).
        said = {} if fact.withdrawn else dict(fact.substance)
        others[fact.source_unit] = (fact.record_id, fact.revision, said)
        upserts.append((h, fact.source_unit, fact.item, fact.display_key, fact.record_id, fact.revision,
                        _json(said), now))
    last = {(u[0], u[1]): u for u in upserts}  # one row per key per statement
    stmt = _facts_upsert(conn)
    execute_many(conn, stmt, _FACT_COLUMNS, list(last.values()), sql=upsert_sql)
    return opened


def _facts_upsert(conn: Connection) -> ClauseElement:
    stmt = insert_for(conn, facts_table)
    return stmt.on_conflict_do_update(
        index_elements=["fact_hash", "source_unit"],
        set_={k: stmt.excluded[k] for k in ("record_id", "revision", "substance", "seen_at_ms", "fact_key")})


def _held(conn: Connection, facts: Sequence[Fact], bodies: Mapping[tuple[str, int], bytes]) -> list[Fact]:
    """Those of ``facts`` whose revision the store holds with the body given for it.

    A first revision is not looked up (most of what arrives, so no second read of the batch): one
    refused for another body means that body's fact was noted when it was stored, and ``observe``
    skips a revision of a record no newer than the one noted.
    """
    r = record_revisions.c
    later = sorted({f.record_id for f in facts if f.revision > 1})
    stored: set[tuple[str, int]] = set()
    for chunk in chunks(later):
        stored.update((rid, int(rev)) for rid, rev, digest in conn.execute(
            select(r.record_id, r.revision, r.body_digest).where(r.record_id.in_(chunk)))
            if bodies.get((rid, int(rev))) == bytes(digest))
    return [f for f in facts if f.revision == 1 or (f.record_id, f.revision) in stored]


def _close_withdrawn(conn: Connection, cid: int, fact: Fact, now: int) -> None:
    """Close ``cid`` because ``fact``'s record no longer stands, saying which side went and in what revision."""
    c = conflicts_table.c
    side = {c.revision_a: fact.revision} if _side_a(conn, cid, fact) else {c.revision_b: fact.revision}
    conn.execute(update(conflicts_table).where(c.id == cid).values(
        {**side, c.state: "revoked", c.resolved_at_ms: now,
         c.note: f"{fact.record_id} is {fact.status} (revision {fact.revision}): only the other report stands"}))


def _side_a(conn: Connection, cid: int, fact: Fact) -> bool:
    """Whether ``fact`` is the first report (side a) of the stored conflict ``cid``."""
    ra = conn.execute(select(conflicts_table.c.record_a).where(conflicts_table.c.id == cid)).scalar_one()
    return bool(ra == fact.record_id)


# One encoder, built once: json.dumps with any option builds a new one per call, which cost
# receiving nodes more than encoding a fact's substance does.
_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _json(value: object) -> str:
    return _ENCODER.encode(value)


class Conflicts:
    """Listing and resolving conflicts (the platform operator's side)."""

    def __init__(self, engine: Engine, *, actor: str) -> None:
        self._engine = engine
        self._actor = actor
        self._audit = AuditLog(engine)
        # The upsert's SQL, compiled once: compiling its ON CONFLICT clause for every received
        # batch cost a receiving node ~4% of its CPU (scripts/bench submit).
        self._upsert_sql: dict[str, str] = {}

    def observer(self, facts: Sequence[Fact], *,
                 bodies: Mapping[tuple[str, int], bytes] | None = None) -> Callable[[Connection], None]:
        """A callback for ``RecordStore.append(also=…)``: detection in the records' transaction.

        With ``bodies`` (each fact's revision → its body digest), a fact counts only if the store
        holds that body for its revision once the records are written: a revision refused because
        another body holds its number (E_REVISION_CONFLICT) says nothing this node keeps.
        """
        def run(conn: Connection) -> None:
            sql = self._upsert_sql.get(conn.dialect.name)
            if sql is None:
                sql = self._upsert_sql[conn.dialect.name] = positional_sql(conn, _facts_upsert(conn), _FACT_COLUMNS)
            observe(conn, facts if bodies is None else _held(conn, facts, bodies), upsert_sql=sql)
        return run

    def list_conflicts(self, *, state: str | None = "open", item: str | None = None) -> list[Conflict]:
        stmt = select(conflicts_table).order_by(conflicts_table.c.id)
        if state is not None:
            stmt = stmt.where(conflicts_table.c.state == state)
        if item is not None:
            stmt = stmt.where(conflicts_table.c.item == item)
        with translated("reading conflicts"), self._engine.connect() as conn:
            return [_conflict(row._asdict()) for row in conn.execute(stmt)]

    def get(self, conflict_id: int) -> Conflict:
        with translated("reading a conflict"), self._engine.connect() as conn:
            row = conn.execute(select(conflicts_table).where(conflicts_table.c.id == conflict_id)).first()
        if row is None:
            raise NotFoundError(f"no conflict {conflict_id}")
        return _conflict(row._asdict())

    def resolve(self, conflict_id: int, *, keep: str, note: str, now_ms: int | None = None) -> Conflict:
        """Record which report is right (and why); the decision goes to the audit log."""
        if not note.strip():
            raise UsageError("say why (--note): the resolution is kept as evidence", field="note")
        now = _now_ms() if now_ms is None else now_ms
        c = conflicts_table.c
        with translated("resolving a conflict"), write_transaction(self._engine) as conn:
            row = conn.execute(select(conflicts_table).where(c.id == conflict_id)).first()
            if row is None:
                raise NotFoundError(f"no conflict {conflict_id}")
            if row.state != "open":
                raise ConflictError(f"conflict {conflict_id} is {row.state} already", code="E_CONFLICT_CLOSED")
            if keep not in (row.record_a, row.record_b):
                raise UsageError(f"--keep must be one of the two records: {row.record_a} or {row.record_b}",
                                 field="keep")
            conn.execute(update(conflicts_table).where(c.id == conflict_id, c.state == "open").values(
                state="resolved", kept_record_id=keep, note=note, resolved_by=self._actor, resolved_at_ms=now))
            other = row.record_b if keep == row.record_a else row.record_a
            self._audit.append(conn, [AuditEvent(actor=self._actor, action="conflict.resolve",
                                                 subject=str(conflict_id),
                                                 detail={"item": row.item, "kept": keep, "other": other,
                                                         "note": note})], at_ms=now)
        return self.get(conflict_id)

    def for_record(self, record_id: str) -> list[Conflict]:
        c = conflicts_table.c
        stmt = select(conflicts_table).where(or_(c.record_a == record_id, c.record_b == record_id)).order_by(c.id)
        with translated("reading conflicts"), self._engine.connect() as conn:
            return [_conflict(row._asdict()) for row in conn.execute(stmt)]


def _conflict(row: dict[str, object]) -> Conflict:
    row = dict(row)
    row.pop("fact_hash", None)
    row["differences"] = json.loads(str(row["differences"]))
    return Conflict(**row)  # type: ignore[arg-type]
