"""``credit-node verify``: prove that nothing stored has been altered.

Every stored revision's signature chain is verified again from the stored bytes (batch by batch,
so a Merkle batch costs one Ed25519 check), the stored body must be the one the chain signs, the
columns copied out of the body (record id, revision, item, subject, status …) must still say what
the body says, every record's head must be its latest stored revision, and both hash-chained logs
(audit, query) must be intact. What no check of one store can see is in docs/operations.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import func, or_, select

from node.errors import NodeError
from node.records import body_digest, decode_body, decode_signed, pb
from node.signing import Verifier
from node.store import Store
from node.store._sql import translated
from node.store.records import RecordRow
from node.store.tables import record_heads, record_revisions

_BATCH = 2000


@dataclass(frozen=True)
class Finding:
    kind: str  # record | head | audit_log | query_log
    ref: str  # record_id@revision or log sequence number
    code: str
    message: str


@dataclass(frozen=True)
class VerifyReport:
    records: int
    findings: list[Finding]

    @property
    def ok(self) -> bool:
        return not self.findings


def verify_store(store: Store, verifier: Verifier) -> VerifyReport:
    findings: list[Finding] = []
    count = 0
    for batch in _batches(store):
        count += len(batch)
        decoded: list[pb.SignedRecord] = []
        origins: list[tuple[str, bytes]] = []
        refs: list[str] = []
        for row in batch:
            ref = f"{row.record_id}@{row.revision}"
            try:
                signed = decode_signed(row.signed)
            except NodeError as exc:
                findings.append(Finding("record", ref, exc.code, exc.message))
                continue
            if signed.body != row.body or body_digest(row.body) != row.body_digest:
                findings.append(Finding("record", ref, "E_BODY_MISMATCH",
                                        "stored body differs from the signed body or its digest"))
                continue
            try:
                body = decode_body(row.body)
            except NodeError as exc:
                findings.append(Finding("record", ref, exc.code, exc.message))
                continue
            if (wrong := _columns_unsigned(row, body)):
                findings.append(Finding("record", ref, "E_ROW_MISMATCH",
                                        f"columns that do not match the signed body: {', '.join(wrong)}"))
            decoded.append(signed)
            origins.append((body.origin_node, row.body_digest))  # parsed and hashed once, not again
            refs.append(ref)
        for ref, err in zip(refs, verifier.verify(decoded, decoded=origins), strict=True):
            if err is not None:
                findings.append(Finding("record", ref, err.code, err.message))
    findings += _head_findings(store)
    for p in store.audit.verify():
        findings.append(Finding("audit_log", str(p.seq), "E_AUDIT_CHAIN", p.reason))
    for p in store.queries.verify():
        findings.append(Finding("query_log", str(p.seq), "E_QUERY_LOG_CHAIN", p.reason))
    return VerifyReport(count, findings)


# The columns copied out of the body for lookups and routing: the signature covers only the body,
# so an edit to a copy would otherwise change what is disclosed while every signature still holds.
_COPIED = ("record_id", "revision", "item", "subject_code", "subject_kind", "source_unit", "origin_node",
           "decision_date", "catalog_version")


def _columns_unsigned(row: RecordRow, body: pb.RecordBody) -> list[str]:
    wrong = [name for name in _COPIED if getattr(row, name) != getattr(body, name)]
    if row.status != (body.status or "active"):
        wrong.append("status")
    return wrong


# What a head must agree with in its revision: the head is a cache of the latest revision, and
# lookups read the head, so a head edited, rolled back to an older revision, or deleted changes
# what is disclosed without touching a signed byte.
_HEAD_SAME = ("item", "subject_code", "status", "source_unit", "decision_date", "body_digest", "content_digest")


def _head_findings(store: Store) -> list[Finding]:
    h, r = record_heads.c, record_revisions.c
    findings: list[Finding] = []
    with translated("checking the record heads"), store.engine.connect() as conn:
        joined = record_heads.outerjoin(record_revisions, (r.record_id == h.record_id) & (r.revision == h.revision))
        differs = select(h.record_id, h.revision, r.record_id.label("held"),
                         *(r[name].label(f"r_{name}") for name in _HEAD_SAME),
                         *(h[name] for name in _HEAD_SAME)).select_from(joined).where(
            or_(r.record_id.is_(None), *(h[name] != r[name] for name in _HEAD_SAME)))
        for row in conn.execute(differs):
            m = row._mapping
            if m["held"] is None:
                why = f"the head names revision {m['revision']}, which is not stored"
            else:
                names = [n for n in _HEAD_SAME if m[n] != m[f"r_{n}"]]
                why = f"head columns that do not match revision {m['revision']}: {', '.join(names)}"
            findings.append(Finding("head", m["record_id"], "E_HEAD_MISMATCH", why))
        latest_sq = select(r.record_id, func.max(r.revision).label("revision")).group_by(r.record_id).subquery()
        stale = select(latest_sq.c.record_id, latest_sq.c.revision, h.revision.label("head")).select_from(
            latest_sq.outerjoin(record_heads, h.record_id == latest_sq.c.record_id)).where(
            or_(h.record_id.is_(None), h.revision != latest_sq.c.revision))
        for rid, revision, head in conn.execute(stale):
            why = (f"no head, though revision {revision} is stored" if head is None
                   else f"the head is at revision {head}, the latest stored revision is {revision}")
            findings.append(Finding("head", rid, "E_HEAD_MISMATCH", why))
    return sorted(findings, key=lambda f: f.ref)


def _batches(store: Store) -> Iterator[list]:  # type: ignore[type-arg]
    batch = []
    for row in store.records.iter_revisions(batch=_BATCH):
        batch.append(row)
        if len(batch) >= _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch
