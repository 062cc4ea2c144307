"""Per-item, per-day digests of the revisions a node holds: what reconciliation compares.

A bucket is (item, day), the day being the record's decision date (the same on every node, known
without decoding a body; '' for records without one). Its digest is SHA-256 over the lines
``record_id 0x1f revision 0x1f hex(body digest) 0x0a`` of the revisions in the bucket, sorted by
record id and revision: equal digests mean the same revisions with the same bodies.

The scope says which revisions count: at a parent, those received from the child asking; at the
child, those of the items its routing sends to the parent, except what came down from the parent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, and_, or_, select, tuple_

from node.store._sql import chunks, translated
from node.store.tables import record_revisions

__all__ = ["Bucket", "HeldDigests", "Scope"]

Bucket = tuple[str, str]  # (item, day)
Key = tuple[str, int]  # (record_id, revision)


@dataclass(frozen=True)
class Scope:
    received_from: str | None = None  # only revisions received from this node
    items: tuple[str, ...] | None = None  # only these items
    not_from: str | None = None  # except revisions received from this node


class HeldDigests:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def _where(self, scope: Scope) -> list[object]:
        r = record_revisions.c
        clauses: list[object] = []
        if scope.received_from is not None:
            clauses.append(r.received_from == scope.received_from)
        if scope.items is not None:
            clauses.append(r.item.in_(list(scope.items)))
        if scope.not_from is not None:
            clauses.append(r.received_from != scope.not_from)
        return clauses

    def _rows(self, scope: Scope, buckets: Sequence[Bucket] | None = None) -> Iterator[tuple[str, str, str, int, bytes]]:
        r = record_revisions.c
        base = (select(r.item, r.decision_date, r.record_id, r.revision, r.body_digest)
                .where(and_(True, *self._where(scope)))  # type: ignore[arg-type]
                .order_by(r.item, r.decision_date, r.record_id, r.revision))
        with translated("reading held revisions"), self._engine.connect() as conn:
            if buckets is None:
                for row in conn.execution_options(yield_per=5000).execute(base):
                    yield row.item, row.decision_date, row.record_id, int(row.revision), bytes(row.body_digest)
                return
            for chunk in chunks(sorted(set(buckets)), 200):
                stmt = base.where(or_(*(tuple_(r.item, r.decision_date) == tuple_(i, d) for i, d in chunk)))
                for row in conn.execute(stmt):
                    yield row.item, row.decision_date, row.record_id, int(row.revision), bytes(row.body_digest)

    def buckets(self, scope: Scope) -> dict[Bucket, tuple[int, bytes]]:
        """(item, day) → (revisions, digest) over the whole scope."""
        out: dict[Bucket, tuple[int, bytes]] = {}
        current: Bucket | None = None
        h = hashlib.sha256()
        n = 0
        for item, day, record_id, revision, digest in self._rows(scope):
            if (item, day) != current:
                if current is not None:
                    out[current] = (n, h.digest())
                current, h, n = (item, day), hashlib.sha256(), 0
            h.update(f"{record_id}\x1f{revision}\x1f{digest.hex()}\n".encode())
            n += 1
        if current is not None:
            out[current] = (n, h.digest())
        return out

    def held(self, scope: Scope, buckets: Sequence[Bucket]) -> dict[Key, tuple[Bucket, bytes]]:
        """(record_id, revision) → ((item, day), body digest) for the revisions in ``buckets``."""
        return {(rid, rev): ((item, day), digest)
                for item, day, rid, rev, digest in self._rows(scope, buckets)}
