"""``credit-node verify``: prove that nothing stored has been altered.

Every stored revision's signature chain is verified again from the stored bytes (batch by batch,
so a Merkle batch costs one Ed25519 check), the stored body must be the one the chain signs, and
both hash-chained logs (audit, query) must be intact.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from node.errors import NodeError
from node.records import body_digest, decode_signed, pb
from node.signing import Verifier
from node.store import Store

_BATCH = 2000


@dataclass(frozen=True)
class Finding:
    kind: str  # record | audit_log | query_log
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
            decoded.append(signed)
            refs.append(ref)
        for ref, err in zip(refs, verifier.verify(decoded), strict=True):
            if err is not None:
                findings.append(Finding("record", ref, err.code, err.message))
    for p in store.audit.verify():
        findings.append(Finding("audit_log", str(p.seq), "E_AUDIT_CHAIN", p.reason))
    for p in store.queries.verify():
        findings.append(Finding("query_log", str(p.seq), "E_QUERY_LOG_CHAIN", p.reason))
    return VerifyReport(count, findings)


def _batches(store: Store) -> Iterator[list]:  # type: ignore[type-arg]
    batch = []
    for row in store.records.iter_revisions(batch=_BATCH):
        batch.append(row)
        if len(batch) >= _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch
