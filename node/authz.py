"""Authorisation codes (授权查询): a subject lets one agency see its class-B items for a while.

Seed 001 附件1 五(二)/(四) and seed 003 篇1 第二十一条: querying someone else's non-public
information needs the subject's authorisation, naming who may query, what, and until when. A
code here is exactly that: one subject, one grantee (a certificate's node id), a set of items, an
expiry; the subject (through the service window) may revoke it at any time. The code is random
(160 bits) and shown once; the store keeps only its SHA-256, so a copy of the database does not
leak usable codes. Grants and revocations go to the audit log; every use of a code is written to
the query log by the lookup that used it (``node.transport.query_service``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select, update

from node.errors import ConfigError, NotAuthorizedError, NotFoundError, UsageError
from node.identifiers import is_valid_id_number, is_valid_uscc, normalize_text
from node.nodeid import parse_node_id
from node.store import AuditEvent, Store
from node.store._sql import translated, write_transaction
from node.store.audit import canonical_json
from node.store.tables import authorizations

__all__ = ["MAX_DAYS", "Authorization", "Authorizations", "Grant", "Verdict", "code_id", "normalize_code"]

MAX_DAYS: Final = 366
_DAY_MS: Final = 86_400_000
_CODE_BYTES: Final = 20  # 160 bits: 32 base32 characters


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def normalize_code(code: str) -> str:
    """Codes are typed by people: case, dashes and spaces do not matter."""
    return "".join(ch for ch in normalize_text(code).upper() if ch.isalnum())


def _digest(code: str) -> str:
    return hashlib.sha256(normalize_code(code).encode()).hexdigest()


def code_id(code: str) -> str:
    """A code's public id (first 16 hex of its digest): what listings and logs show instead of it."""
    return _digest(code)[:16]


@dataclass(frozen=True)
class Authorization:
    id: str  # code_id: never the code itself
    subject: str
    grantee: str
    items: tuple[str, ...]
    issued_at_ms: int
    expires_at_ms: int
    revoked_at_ms: int | None

    def state(self, now_ms: int) -> str:
        if self.revoked_at_ms is not None:
            return "revoked"
        return "expired" if now_ms >= self.expires_at_ms else "valid"

    def as_dict(self, now_ms: int) -> dict[str, object]:
        return {"id": self.id, "subject": self.subject, "grantee": self.grantee, "items": list(self.items),
                "issued_at_ms": self.issued_at_ms, "expires_at_ms": self.expires_at_ms,
                "revoked_at_ms": self.revoked_at_ms, "state": self.state(now_ms)}


@dataclass(frozen=True)
class Grant:
    code: str  # shown once: give it to the subject, who hands it to the grantee
    authorization: Authorization


@dataclass(frozen=True)
class Verdict:
    reason: str = ""  # '' = valid; else E_AUTHZ_UNKNOWN | E_AUTHZ_REVOKED | E_AUTHZ_EXPIRED | E_AUTHZ_SCOPE
    message: str = ""

    @property
    def valid(self) -> bool:
        return not self.reason


class Authorizations:
    def __init__(self, store: Store, *, clock: Callable[[], int] = _now_ms) -> None:
        self._store = store
        self._clock = clock

    def grant(self, subject: str, to: str, items: Sequence[str], days: int, *, actor: str = "operator",
              known_items: Iterable[str] | None = None, shared_only: Iterable[str] = ()) -> Grant:
        """Issue a code letting ``to`` see ``items`` of ``subject`` for ``days`` days.

        ``shared_only``: the items of class C (政务共享), which no code can name: they are shared
        with government users for their duties, never opened to an agency by the subject.
        """
        subj = normalize_text(subject).upper()
        if not (is_valid_uscc(subj) or is_valid_id_number(subj)):
            raise UsageError(f"{subject!r} is neither a valid USCC nor a valid ID number", field="subject")
        try:
            grantee = parse_node_id(to)
        except ConfigError as exc:  # the grammar's refusal, said of the operator's --to, not of node.yaml
            raise UsageError(f"--to: {exc.message}", field="to") from None
        if grantee.kind != "agency":
            raise UsageError(f"{to!r} is not an agency: codes are for agency callers (gov callers have "
                             "legal authority, a subject queries itself)", field="to")
        wanted = tuple(dict.fromkeys(i.strip() for i in items if i.strip()))
        if not wanted:
            raise UsageError("name at least one item the subject authorises", field="items")
        if known_items is not None:
            unknown = sorted(set(wanted) - set(known_items))
            if unknown:
                raise UsageError(f"unknown catalogue item(s): {', '.join(unknown)}", field="items")
        closed = sorted(set(wanted) & set(shared_only))
        if closed:
            raise UsageError(f"{', '.join(closed)}: shared with government users only (class C); "
                             "an authorisation opens class B, never C", field="items")
        if not 1 <= days <= MAX_DAYS:
            raise UsageError(f"days must be between 1 and {MAX_DAYS}", field="days")
        code = _new_code()
        now = self._clock()
        auth = Authorization(code_id(code), subj, str(grantee), wanted, now, now + days * _DAY_MS, None)
        with translated("storing an authorisation"), write_transaction(self._store.engine) as conn:
            conn.execute(authorizations.insert().values(
                code=_digest(code), subject=subj, grantee=auth.grantee, items=canonical_json(list(wanted)),
                issued_at_ms=now, expires_at_ms=auth.expires_at_ms, revoked_at_ms=None))
            self._store.audit.append(conn, [AuditEvent(actor, "authz.grant", subj, {
                "id": auth.id, "grantee": auth.grantee, "items": list(wanted), "days": days})], at_ms=now)
        return Grant(code, auth)

    def revoke(self, code_or_id: str, *, actor: str = "operator") -> Authorization:
        """Revoke by the code or by its id (as ``authz list`` shows it). Revoking twice is a no-op."""
        digest = self._find(code_or_id)
        now = self._clock()
        t = authorizations.c
        with translated("revoking an authorisation"), write_transaction(self._store.engine) as conn:
            changed = conn.execute(update(authorizations).where(t.code == digest, t.revoked_at_ms.is_(None))
                                   .values(revoked_at_ms=now)).rowcount
            row = conn.execute(select(authorizations).where(t.code == digest)).one()
            if changed:  # the audit log says what happened, once: a second revoke changes nothing
                self._store.audit.append(conn, [AuditEvent(actor, "authz.revoke", row.subject,
                                                           {"id": digest[:16]})], at_ms=now)
        return _from_row(row)

    def list(self, *, subject: str = "", grantee: str = "") -> list[Authorization]:
        t = authorizations.c
        stmt = select(authorizations).order_by(t.issued_at_ms, t.code)
        if subject:
            stmt = stmt.where(t.subject == normalize_text(subject).upper())
        if grantee:
            stmt = stmt.where(t.grantee == grantee)
        with translated("reading authorisations"), self._store.engine.connect() as conn:
            return [_from_row(r) for r in conn.execute(stmt)]

    def resolve(self, code: str, subject: str, grantee: str, now_ms: int | None = None) -> tuple[str, frozenset[str]]:
        """The code's id and the items it lets ``grantee`` see of ``subject`` now, or a refusal."""
        now = self._clock() if now_ms is None else now_ms
        digest = _digest(code)
        with translated("reading an authorisation"), self._store.engine.connect() as conn:
            row = conn.execute(select(authorizations).where(authorizations.c.code == digest)).first()
        if row is None:
            raise NotAuthorizedError("no such authorisation code", code="E_AUTHZ_UNKNOWN",
                                     field="authorization_code")
        auth = _from_row(row)
        verdict = _verdict(auth, subject, grantee, None, now)
        if not verdict.valid:
            raise NotAuthorizedError(verdict.message, code=verdict.reason, field="authorization_code")
        return auth.id, frozenset(auth.items)

    def check(self, code: str, subject: str, grantee: str, item: str, now_ms: int | None = None) -> Verdict:
        """Whether ``code`` lets ``grantee`` see ``item`` of ``subject`` at ``now_ms``."""
        now = self._clock() if now_ms is None else now_ms
        with translated("reading an authorisation"), self._store.engine.connect() as conn:
            row = conn.execute(select(authorizations).where(authorizations.c.code == _digest(code))).first()
        if row is None:
            return Verdict("E_AUTHZ_UNKNOWN", "no such authorisation code")
        return _verdict(_from_row(row), subject, grantee, item, now)

    def _find(self, code_or_id: str) -> str:
        text = normalize_code(code_or_id)
        t = authorizations.c
        with translated("reading authorisations"), self._store.engine.connect() as conn:
            if len(text) == 32:  # a whole code
                digest = _digest(text)
                if conn.execute(select(t.code).where(t.code == digest)).first() is not None:
                    return digest
            ident = text.lower()
            if len(ident) < 8 or any(c not in "0123456789abcdef" for c in ident):
                raise NotFoundError(f"no authorisation with code or id {code_or_id!r}")
            found = [str(r.code) for r in conn.execute(select(t.code).where(t.code.startswith(ident)).limit(2))]
        if len(found) != 1:
            raise NotFoundError(f"no authorisation with code or id {code_or_id!r}" if not found
                                else f"id {code_or_id!r} is ambiguous; give more of it or the code")
        return found[0]


def _verdict(auth: Authorization, subject: str, grantee: str, item: str | None, now: int) -> Verdict:
    if auth.revoked_at_ms is not None and auth.revoked_at_ms <= now:
        return Verdict("E_AUTHZ_REVOKED", f"authorisation {auth.id} was revoked")
    if now >= auth.expires_at_ms or now < auth.issued_at_ms:
        return Verdict("E_AUTHZ_EXPIRED", f"authorisation {auth.id} is not valid now (it expired or is "
                                          "not yet issued)")
    if auth.subject != subject:
        return Verdict("E_AUTHZ_SCOPE", f"authorisation {auth.id} is for another subject")
    if auth.grantee != grantee:
        return Verdict("E_AUTHZ_SCOPE", f"authorisation {auth.id} was granted to another caller")
    if item is not None and item not in auth.items:
        return Verdict("E_AUTHZ_SCOPE", f"authorisation {auth.id} does not cover {item}")
    return Verdict()


def _from_row(row: object) -> Authorization:
    m = row._mapping  # type: ignore[attr-defined]
    return Authorization(str(m["code"])[:16], m["subject"], m["grantee"], tuple(json.loads(m["items"])),
                         int(m["issued_at_ms"]), int(m["expires_at_ms"]),
                         None if m["revoked_at_ms"] is None else int(m["revoked_at_ms"]))


def _new_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(_CODE_BYTES)).decode()
    return "-".join(raw[i:i + 4] for i in range(0, len(raw), 4))
