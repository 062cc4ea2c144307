"""Unsigned records from source systems: the node checks who may report what, then signs them.

A source system (certificate role ``source``, listed under ``sources:`` in the node's config)
pushes ``UnsignedRecord``\\ s over its authenticated connection. It may only report for the
source units configured for it; within that, the node's own ingest decides exactly as for a file
import (validation, record ids, revisions, duplicates) and signs the accepted ones as their origin
(谁产生谁负责: the node answers for what its authenticated sources gave it).
"""

from __future__ import annotations

import bisect
import uuid
from collections.abc import Mapping, Sequence

from node.catalog import Catalog, Item
from node.config import SourceConfig
from node.errors import NodeError, Problem
from node.identifiers import normalize_text
from node.ingest import BATCH_ROWS, Ingest
from node.preparing import PreparedBatch, RowOutcome
from node.records import pb
from node.tabular import SourceRow

__all__ = ["SourceIntake", "rejected_ack"]

_OUTCOMES = {"accepted": pb.Ack.ACCEPTED, "duplicate": pb.Ack.DUPLICATE}


def rejected_ack(seq: int, code: str, message: str, field: str = "", record_id: str = "",
                 revision: int = 0) -> pb.Ack:
    # row: the record's 1-based position in the stream, as a validation refusal names it.
    return pb.Ack(record_id=record_id, revision=revision, outcome=pb.Ack.REJECTED, seq=seq,
                  rejections=[pb.Rejection(code=code, field=field, message=message, row=seq + 1)])


def _ack(seq: int, outcome: RowOutcome) -> pb.Ack:
    ack = pb.Ack(record_id=outcome.record_id, revision=outcome.revision,
                 outcome=_OUTCOMES.get(outcome.outcome, pb.Ack.REJECTED), seq=seq)
    for p in outcome.problems:
        # Warnings go back whatever the outcome: an accepted record may have lost a misspelt field
        # (W_FIELD_UNKNOWN), and a pusher has no result file to read that in.
        (ack.warnings if p.warning else ack.rejections).append(
            pb.Rejection(code=p.code, field=p.field, message=p.message, row=p.row or outcome.row))
    if ack.outcome == pb.Ack.REJECTED and not ack.rejections:  # pragma: no cover - ingest always says why
        ack.rejections.append(pb.Rejection(code="E_RECORD_REJECTED", message="rejected"))
    return ack


def _repeated_field(rec: pb.UnsignedRecord) -> Problem:
    # A dict keeps the last of two values: one of them would be dropped unseen, whichever the
    # source meant (a file with two columns for one field is refused for the same reason).
    names = [f.name for f in rec.fields]
    seen: set[str] = set()
    for name in names:  # a set, not a scan per field: a record of a million fields is one message
        if name in seen:
            break
        seen.add(name)
    count = names.count(name)
    return Problem("E_FIELD_DUPLICATE", name, f"{name or '(no name)'} is given {count} times in this record; "
                   "give each field once")


class SourceIntake:
    def __init__(self, *, catalog: Catalog, ingest: Ingest, sources: Sequence[SourceConfig]) -> None:
        self._catalog = catalog
        self._ingest = ingest
        self._sources: Mapping[str, SourceConfig] = {s.id: s for s in sources}

    def receive(self, records: Sequence[pb.UnsignedRecord], *, source: str, start_seq: int,
                starts: Sequence[int] = ()) -> list[pb.Ack]:
        """One ack per record, in order; ``seq`` counts from ``start_seq``.

        ``row`` in a rejection is the record's 1-based position in the stream. Infrastructure
        errors (StoreError) propagate: nothing of the failed batch was stored. ``starts``: where
        the requests of a group begin in ``records`` (ascending), when several are received as one.
        """
        acks: dict[int, pb.Ack] = {}
        allowed = self._sources.get(source)
        if allowed is None:
            message = f"{source} is not a registered source of this node"
            return [rejected_ack(start_seq + i, "E_NOT_AUTHORIZED", message) for i in range(len(records))]
        groups: dict[str, list[tuple[int, SourceRow]]] = {}
        for i, rec in enumerate(records):
            seq = start_seq + i
            try:
                item = self._catalog.item(rec.item)
            except NodeError as exc:
                acks[i] = rejected_ack(seq, exc.code, exc.message, "item")
                continue
            values = {f.name: f.value for f in rec.fields}
            problem = _repeated_field(rec) if len(values) < len(rec.fields) else None
            problem = problem or self._unit_problem(allowed, item, values)
            if problem is not None:
                acks[i] = rejected_ack(seq, problem.code, problem.message, problem.field)
                continue
            groups.setdefault(item.code, []).append((i, SourceRow(row=seq + 1, values=values)))
        for code, rows in groups.items():
            item = self._catalog.item(code)
            while rows:
                chunk, batch_id = rows[:BATCH_ROWS], uuid.uuid4().hex
                prepared = self._ingest.prepare(item, [r for _i, r in chunk], source=source, batch_id=batch_id)
                cut = _later_request_repeating(prepared, [i for i, _r in chunk], starts)
                if cut:
                    chunk = chunk[:cut]
                    prepared = self._ingest.prepare(item, [r for _i, r in chunk], source=source, batch_id=batch_id)
                outcomes = self._ingest.commit(item, prepared, source=source, batch_id=batch_id)
                for (i, _row), outcome in zip(chunk, outcomes, strict=True):
                    acks[i] = _ack(start_seq + i, outcome)
                rows = rows[len(chunk):]
        return [acks[i] for i in range(len(records))]

    @staticmethod
    def _unit_problem(source: SourceConfig, item: Item, values: Mapping[str, str]) -> Problem | None:
        if not source.units:
            return None
        unit = normalize_text(values.get(item.source_unit_field, "")).upper()
        if unit in source.units:
            return None
        if not unit and item.field(item.source_unit_field).required:
            return None  # none given: validation refuses the row for what it lacks (E_FIELD_REQUIRED)
        return Problem("E_NOT_AUTHORIZED", item.source_unit_field,
                       f"{source.id} may not report for source unit {unit or '(none given)'}; "
                       f"its units: {', '.join(source.units)}")


def _later_request_repeating(batch: PreparedBatch, indexes: Sequence[int], starts: Sequence[int]) -> int:
    """Where to end ``batch`` (a position in it) so that no request repeats a fact of an earlier
    request of its group; 0 when none does.

    One batch takes a fact once: a repeat with other values is refused (E_DUPLICATE_KEY), as in a
    file. Requests are the source's news in order, so a changed fact in a later request is the
    next revision, as if the requests had come one by one: that request starts the next batch.
    """
    if len(starts) < 2:
        return 0
    first = {p.record_id: p.slot for p in batch.prepared}
    cut = 0
    for slot, outcome in batch.outcomes.items():
        earlier = first.get(outcome.record_id) if outcome.record_id and not outcome.revision else None
        if earlier is None or earlier == slot:
            continue
        request = bisect.bisect_right(starts, indexes[slot])
        if bisect.bisect_right(starts, indexes[earlier]) != request:
            begins = bisect.bisect_left(indexes, starts[request - 1])
            cut = begins if not cut else min(cut, begins)
    return cut
