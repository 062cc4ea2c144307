"""Preparing a batch of source rows: validation (清洗比对), record ids, body bytes — pure CPU.

The first half of the import path (``node/ingest.py`` commits what this prepares). It needs no
store and no network, so the prepare worker (``node/pipeline.py``) runs it in its own process,
importing only this and what it needs: validation, the catalogue and the record codec.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from node.catalog import Catalog, Item
from node.errors import Problem
from node.identifiers import USCC_STAND_IN, mask_id_number
from node.records import FieldsWriter, content_digest, make_record_id, pb
from node.rejection import RejectionRow, row_key
from node.tabular import SourceRow
from node.validation import Checked, Validator

WARNINGS_KEPT = 1000  # per import, for its report
# Another writer (an adapter, the lifecycle) storing a revision a batch numbered refuses the batch
# whole (E_REVISION_RACE); a file import takes it again, its heads read anew, up to this often.
IMPORT_RACE_RETRIES = 3

__all__ = ["ImportSummary", "Prepared", "PreparedBatch", "Preparer", "RowOutcome", "chunks", "now_ms"]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class ImportSummary:
    batch_id: str
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    warnings: int = 0
    # The first warnings, with their rows (accepted rows' warnings are stored nowhere else).
    warned: list[Problem] = field(default_factory=list)

    def count(self, outcomes: Iterable[RowOutcome]) -> None:
        for o in outcomes:
            if o.outcome == "accepted":
                self.accepted += 1
            elif o.outcome == "duplicate":
                self.duplicates += 1
            else:
                self.rejected += 1
            if o.problems:
                for p in o.problems:
                    if p.warning:
                        self.warnings += 1
                        if len(self.warned) < WARNINGS_KEPT:
                            self.warned.append(p if p.row else dataclasses.replace(p, row=o.row))


class RowOutcome(NamedTuple):
    """Per-row result, for sources that answer row by row (gRPC acks, feedback files).

    A named tuple: the node makes one per stored row, and a frozen dataclass's ``__init__`` cost
    the committing process ~3% of a pull's time.
    """

    row: int
    outcome: str  # accepted | duplicate | rejected
    record_id: str = ""
    revision: int = 0
    problems: tuple[Problem, ...] = ()


class Prepared(NamedTuple):
    """A valid row, ready to sign: its body assumes revision 1 until the heads say otherwise.

    A named tuple: it crosses the pipe from the worker by the thousand (pickled as a plain tuple).
    """

    slot: int  # position in its batch
    row: int
    record_id: str
    content_digest: bytes
    body: bytes
    key: str
    subject_code: str
    subject_kind: str
    source_unit: str
    decision_date: str
    warnings: tuple[Problem, ...]
    # The record a 个体工商户 had under its 工商注册号 (the 17 zeros and X standing in for a USCC)
    # that this row, under its USCC at last, replaces: the same fact. '' for nearly every row.
    replaces: str = ""


@dataclass
class PreparedBatch:
    """The CPU half of a batch; picklable, so a worker process can make it."""

    item: str
    size: int
    prepared: list[Prepared] = field(default_factory=list)
    outcomes: dict[int, RowOutcome] = field(default_factory=dict)
    rejections: list[RejectionRow] = field(default_factory=list)

    # A batch crosses the pipe from the worker. Each named tuple would pickle through a
    # Python-level __getnewargs__; as plain tuples the prepared rows are pickled in C (the
    # worker's pickling went from ~3.5 to ~2.7 µs a row).
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "prepared": [tuple(p) for p in self.prepared]}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, prepared=list(map(Prepared._make, state["prepared"])))


class Preparer:
    """Validation and body building for one node: pure CPU, no store."""

    def __init__(self, *, node_id: str, catalog: Catalog, validator: Validator,
                 clock: Callable[[], int] = now_ms) -> None:
        self.node_id = node_id
        self.catalog = catalog
        self._validator = validator
        self._clock = clock
        self._fields = FieldsWriter()

    def prepare(self, item: Item, rows: Sequence[SourceRow], *, source: str, batch_id: str) -> PreparedBatch:
        now = self._clock()
        out = PreparedBatch(item=item.code, size=len(rows))
        first_seen: dict[str, tuple[int, bytes]] = {}
        check = self._validator.check
        RecordBody = pb.RecordBody
        for idx, row in enumerate(rows):
            if row.problem is not None:
                out.outcomes[idx] = RowOutcome(row.row, "rejected", problems=(row.problem,))
                out.rejections.append(_rejection(batch_id, source, item, row.row, row_key(source, row.row),
                                                 self._validator.source_unit, row.problem, now))
                continue
            c = check(item, row.values, row.row)
            if row.warning is not None:  # the file's word on the row (a hidden row) comes first
                c = dataclasses.replace(c, problems=(row.warning, *c.problems))
            if not c.ok:
                out.outcomes[idx] = RowOutcome(row.row, "rejected", problems=c.problems)
                key = _refusal_key(item, c.key, c.problems, source, row.row)
                # A row that names no unit is the node's own unit's to fix: filed under it, its problems
                # are listed to that unit and close when the row comes back right.
                unit = c.source_unit or self._validator.source_unit
                out.rejections.extend(_rejection(batch_id, source, item, row.row, key, unit, p, now)
                                      for p in c.problems if not p.warning)
                continue
            rid = make_record_id(item.code, c.source_unit, c.key)
            digest = content_digest(item.code, c.source_unit, c.fields)
            # One fact twice in a batch: an identical repeat is a duplicate, a different one is
            # refused (the source must say which is right).
            seen = first_seen.get(rid)
            if seen is not None:
                if seen[1] == digest:
                    out.outcomes[idx] = RowOutcome(row.row, "duplicate", rid, 0, c.problems)
                else:
                    p = Problem("E_DUPLICATE_KEY", item.key_fields[0] if item.key_fields else "",
                                f"the same fact ({_shown_key(item, c)}) appears at row {seen[0]} "
                                "with other values", row=row.row)
                    out.outcomes[idx] = RowOutcome(row.row, "rejected", rid, 0, (p,))
                    out.rejections.append(_rejection(batch_id, source, item, row.row, c.key, c.source_unit,
                                                     p, now))
                continue
            first_seen[rid] = (row.row, digest)
            head = RecordBody(
                record_id=rid, revision=1, item=item.code, catalog_version=self.catalog.version,
                subject_code=c.subject_code, subject_kind=c.subject_kind, subject_name=c.subject_name,
                source_unit=c.source_unit, origin_node=self.node_id).SerializeToString()
            tail = RecordBody(reported_at_ms=now, status="active", decision_date=c.decision_date).SerializeToString()
            body = head + self._fields.encode(c.fields) + tail
            out.prepared.append(Prepared(idx, row.row, rid, digest, body, c.key,
                                         c.subject_code, c.subject_kind, c.source_unit, c.decision_date,
                                         c.problems, _replaced(item, c)))
        return out


def _shown_key(item: Item, c: Checked) -> str:
    """A record's natural key for a message, a person's ID number in it masked as every problem
    message shows one (the refusal is kept, listed and written to result files)."""
    parts = c.key.split("\x1f")
    for i, k in enumerate(item.key_fields[:len(parts)]):
        if (c.subject_kind == "natural_person" if k == "@subject_code"
                else item.has_field(k) and item.field(k).type == "id_number"):
            parts[i] = mask_id_number(parts[i])
    return " ".join(parts)


def _refusal_key(item: Item, key: str, problems: Sequence[Problem], source: str, row: int) -> str:
    """The natural key of a refused row if it can be trusted, else the row's place in its source.

    A key with an empty part, or built from a field that is itself wrong (a mistyped USCC), would
    never match the corrected report; the row's place (``row:N@SOURCE``) will.
    """
    fields = {f for k in item.key_fields for f in (item.subject_code_fields.values() if k == "@subject_code"
                                                    else (item.subject_kind_field,) if k == "@subject_kind"
                                                    else (k,))}
    if key and all(key.split("\x1f")) and not any(p.field in fields for p in problems if not p.warning):
        return key
    return row_key(source, row)


def _rejection(batch_id: str, source: str, item: Item, row: int, key: str, unit: str,
               p: Problem, now: int) -> RejectionRow:
    return RejectionRow(batch_id=batch_id, source=source, source_unit=unit, item=item.code, row=row,
                        record_key=key, field=p.field, code=p.code, message=p.message, created_at_ms=now)


def chunks(rows: Iterable[SourceRow], size: int, *, first: int = 0) -> Iterator[list[SourceRow]]:
    """Lists of ``size`` rows (the last may be shorter); the first of ``first`` rows, if given."""
    chunk: list[SourceRow] = []
    limit = first or size
    for r in rows:
        chunk.append(r)
        if len(chunk) >= limit:
            yield chunk
            chunk = []
            limit = size
    if chunk:
        yield chunk


def _replaced(item: Item, c: Checked) -> str:
    """The stand-in record of a 个体工商户 now reported under its USCC (see ``Prepared.replaces``)."""
    field_code = item.subject_stand_ins.get(c.subject_kind)
    if not field_code or c.subject_code == USCC_STAND_IN or "@subject_code" not in item.key_fields:
        return ""
    registration = next((v for k, v in c.fields if k == field_code), "")
    if not registration or registration == c.subject_code:
        return ""
    parts = c.key.split("\x1f")
    parts[item.key_fields.index("@subject_code")] = registration
    return make_record_id(item.code, c.source_unit, "\x1f".join(parts))
