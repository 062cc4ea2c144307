"""Local lookups by subject for the operator CLI (the network path with access rules is access.py)."""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass

from node.errors import UsageError
from node.identifiers import check_id_number, check_uscc, normalize_text
from node.records import decode_body, decode_signed, fields_dict
from node.store import Store


@dataclass(frozen=True)
class RecordOut:
    item: str
    record_id: str
    revision: int
    status: str
    fields: dict[str, str]
    signers: list[str]

    def as_dict(self) -> dict[str, object]:
        return {"item": self.item, "record_id": self.record_id, "revision": self.revision,
                "status": self.status, "fields": self.fields, "signers": self.signers}


# Longer than any USCC, resident ID, passport or permit number: a subject code, not a text.
MAX_SUBJECT_CODE = 64


def normalized_subject(code: str, *, field: str = "code") -> str:
    """The subject code looked up: normalised, upper-cased; refused if empty or no code at all."""
    subject = normalize_text(code).upper()
    if not subject:
        raise UsageError("give a USCC or an ID number", field=field)
    if len(subject) > MAX_SUBJECT_CODE or not subject.isprintable() or " " in subject:
        raise UsageError(f"not a subject code (a USCC or ID number has no spaces and at most "
                         f"{MAX_SUBJECT_CODE} characters)", field=field)
    return subject


def mistyped_code(subject: str, *, field: str, allowlist: Set[str] = frozenset()) -> UsageError | None:
    """The error for an 18-character code that is neither a valid USCC (nor allow-listed) nor a
    valid ID number: asked about, it would look like a subject with a clean record. Other lengths
    (passports, permits) have no check to apply."""
    if len(subject) != 18:
        return None
    uscc = check_uscc(subject, allowlist=allowlist)
    if uscc is None or uscc.warning or check_id_number(subject) is None:
        return None
    return UsageError(f"{subject} fails the check of a USCC (GB 32100) and of an ID number (GB 11643): "
                      "mistyped?", field=field, code="E_SUBJECT_CODE_CHECK")


def subject_records(store: Store, code: str, items: tuple[str, ...] = (), *,
                    allowlist: Set[str] = frozenset()) -> tuple[str, list[RecordOut]]:
    """What this node holds about one subject; a mistyped code finding nothing is refused, as a
    lookup refuses it (``E_SUBJECT_CODE_CHECK``), rather than answered as a clean record."""
    subject = normalized_subject(code)
    out: list[RecordOut] = []
    for row in store.records.current_for_subject(subject, items):
        body = decode_body(row.body)
        signed = decode_signed(row.signed)
        out.append(RecordOut(item=row.item, record_id=row.record_id, revision=row.revision, status=row.status,
                             fields=fields_dict(body), signers=[s.signer for s in signed.chain]))
    if not out and (mistyped := mistyped_code(subject, field="code", allowlist=allowlist)):
        raise mistyped
    return subject, out
