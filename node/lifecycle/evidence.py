"""Evidence a subject attaches to an objection: a file (the CLI) or bytes (a portal's upload), bounded."""

from __future__ import annotations

import hashlib
import pathlib
from dataclasses import dataclass

from node.errors import UsageError

__all__ = ["Evidence", "read_evidence"]


@dataclass(frozen=True)
class Evidence:
    """Evidence sent as bytes (a portal's upload) rather than read from a file (the CLI)."""

    name: str
    data: bytes


def read_evidence(given: pathlib.Path | Evidence | None, max_bytes: int) -> tuple[str, bytes | None, bytes | None]:
    """(name, bytes, SHA-256) of the evidence; ("", None, None) without any."""
    if given is None:
        return "", None, None
    if isinstance(given, Evidence):
        if len(given.data) > max_bytes:
            raise UsageError(f"evidence {given.name} is {len(given.data)} bytes; at most {max_bytes}",
                             field="evidence", code="E_EVIDENCE_TOO_LARGE")
        return given.name, given.data, hashlib.sha256(given.data).digest()
    try:
        size = given.stat().st_size
        if size > max_bytes:
            raise UsageError(f"evidence {given.name} is {size} bytes; at most {max_bytes}",
                             field="evidence", code="E_EVIDENCE_TOO_LARGE")
        data = given.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read evidence {given}: {exc.strerror}", field="evidence") from None
    return given.name, data, hashlib.sha256(data).digest()
