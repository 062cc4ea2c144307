"""Evidence a subject attaches to an objection: a file (the CLI) or bytes (a portal's upload), bounded."""

from __future__ import annotations

import hashlib
import pathlib
from dataclasses import dataclass

from node.errors import UsageError
from node.identifiers import normalize_text, readable_name

__all__ = ["MAX_EVIDENCE_NAME", "Evidence", "evidence_name", "read_evidence"]

MAX_EVIDENCE_NAME = 200  # characters of an evidence file name kept


@dataclass(frozen=True)
class Evidence:
    """Evidence sent as bytes (a portal's upload) rather than read from a file (the CLI)."""

    name: str
    data: bytes


def evidence_name(sent: str) -> str:
    """The name kept for evidence: the last part of what was sent, printable, on one line.

    It names a file, not a path, and is shown by ``objection show`` and the portal's case view: a
    NUL could not even be stored in PostgreSQL (the filing failed as a store outage, retried for
    good), and a line break or escape sequence would forge lines on an operator's terminal.
    """
    text = " ".join(normalize_text(readable_name(sent), prose=True).split())  # control characters dropped
    base = text.replace("\\", "/").rsplit("/", 1)[-1].strip()[:MAX_EVIDENCE_NAME].strip()
    return base if base not in ("", ".", "..") else "evidence"


def read_evidence(given: pathlib.Path | Evidence | None, max_bytes: int) -> tuple[str, bytes | None, bytes | None]:
    """(name, bytes, SHA-256) of the evidence; ("", None, None) without any."""
    if given is None:
        return "", None, None
    if isinstance(given, Evidence):
        if len(given.data) > max_bytes:
            raise UsageError(f"evidence {given.name} is {len(given.data)} bytes; at most {max_bytes}",
                             field="evidence", code="E_EVIDENCE_TOO_LARGE")
        return evidence_name(given.name), given.data, hashlib.sha256(given.data).digest()
    try:
        size = given.stat().st_size
        if size > max_bytes:
            raise UsageError(f"evidence {given.name} is {size} bytes; at most {max_bytes}",
                             field="evidence", code="E_EVIDENCE_TOO_LARGE")
        data = given.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read evidence {given}: {exc.strerror}", field="evidence") from None
    return evidence_name(given.name), data, hashlib.sha256(data).digest()
