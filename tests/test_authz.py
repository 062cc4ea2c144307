"""Authorisation codes on a real store (SQLite and PostgreSQL): grant, check, expire, revoke."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select

from node.authz import MAX_DAYS, Authorizations, code_id, normalize_code
from node.errors import NotAuthorizedError, NotFoundError, UsageError
from node.store import Store
from node.store.tables import authorizations

PERSON = "11010519491231002X"
ORG = "91350100M000100Y43"
DAY = 86_400_000
T0 = 1_800_000_000_000


class Clock:
    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def store(engine: Engine) -> Store:
    return Store(engine)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def authz(store: Store, clock: Clock) -> Authorizations:
    return Authorizations(store, clock=clock)


def test_grant_then_check_every_reason(authz: Authorizations, clock: Clock) -> None:
    g = authz.grant(PERSON.lower(), "agency:bank1", ["professional_qualification"], 30)
    code = g.code
    assert g.authorization.subject == PERSON
    assert g.authorization.expires_at_ms == T0 + 30 * DAY
    assert authz.check(code, PERSON, "agency:bank1", "professional_qualification").valid
    # typed by a person: case, dashes and spaces do not matter
    assert authz.check(code.lower().replace("-", " "), PERSON, "agency:bank1", "professional_qualification").valid
    assert authz.check(code, PERSON, "agency:bank1", "admin_penalty").reason == "E_AUTHZ_SCOPE"
    assert authz.check(code, ORG, "agency:bank1", "professional_qualification").reason == "E_AUTHZ_SCOPE"
    assert authz.check(code, PERSON, "agency:bank2", "professional_qualification").reason == "E_AUTHZ_SCOPE"
    assert authz.check("AAAA-BBBB", PERSON, "agency:bank1", "x").reason == "E_AUTHZ_UNKNOWN"
    clock.now = T0 + 30 * DAY - 1
    assert authz.check(code, PERSON, "agency:bank1", "professional_qualification").valid
    clock.now = T0 + 30 * DAY
    assert authz.check(code, PERSON, "agency:bank1", "professional_qualification").reason == "E_AUTHZ_EXPIRED"


def test_resolve_gives_items_or_refuses_with_the_reason(authz: Authorizations, clock: Clock) -> None:
    g = authz.grant(PERSON, "agency:bank1", ["professional_qualification", "admin_penalty"], 1)
    ident, items = authz.resolve(g.code, PERSON, "agency:bank1")
    assert ident == g.authorization.id == code_id(g.code)
    assert items == {"professional_qualification", "admin_penalty"}
    for code, subject, grantee, reason in [
        ("NOPE", PERSON, "agency:bank1", "E_AUTHZ_UNKNOWN"),
        (g.code, ORG, "agency:bank1", "E_AUTHZ_SCOPE"),
        (g.code, PERSON, "agency:other", "E_AUTHZ_SCOPE"),
    ]:
        with pytest.raises(NotAuthorizedError) as info:
            authz.resolve(code, subject, grantee)
        assert info.value.code == reason
        assert info.value.exit_code == 3
    clock.now += DAY
    with pytest.raises(NotAuthorizedError) as info:
        authz.resolve(g.code, PERSON, "agency:bank1")
    assert info.value.code == "E_AUTHZ_EXPIRED"


def test_revoke_by_code_or_id_and_it_is_audited(authz: Authorizations, store: Store, clock: Clock) -> None:
    a = authz.grant(PERSON, "agency:bank1", ["professional_qualification"], 10)
    b = authz.grant(PERSON, "agency:bank2", ["professional_qualification"], 10)
    clock.now += 1000
    assert authz.revoke(a.code).revoked_at_ms == clock.now
    assert authz.revoke(b.authorization.id).revoked_at_ms == clock.now
    assert authz.check(a.code, PERSON, "agency:bank1", "professional_qualification").reason == "E_AUTHZ_REVOKED"
    with pytest.raises(NotAuthorizedError) as info:
        authz.resolve(b.code, PERSON, "agency:bank2")
    assert info.value.code == "E_AUTHZ_REVOKED"
    first = authz.revoke(a.code).revoked_at_ms
    clock.now += 1000
    assert authz.revoke(a.code).revoked_at_ms == first  # twice: the first revocation stands
    actions = [e.action for e in store.audit.iter()]
    assert actions.count("authz.grant") == 2 and actions.count("authz.revoke") == 2  # a repeat is no event
    assert store.audit.verify() == []


def test_the_store_keeps_only_a_digest(authz: Authorizations, store: Store) -> None:
    g = authz.grant(PERSON, "agency:bank1", ["professional_qualification"], 5)
    with store.engine.connect() as conn:
        stored = conn.execute(select(authorizations.c.code)).scalar_one()
    assert normalize_code(g.code) not in stored and len(stored) == 64
    assert len(normalize_code(g.code)) == 32  # 160 random bits


def test_list_shows_ids_and_states(authz: Authorizations, clock: Clock) -> None:
    a = authz.grant(PERSON, "agency:bank1", ["professional_qualification"], 1)
    b = authz.grant(ORG, "agency:bank1", ["admin_penalty"], 5)
    authz.revoke(b.code)
    clock.now += DAY
    listed = {x.id: x.state(clock.now) for x in authz.list()}
    assert listed == {a.authorization.id: "expired", b.authorization.id: "revoked"}
    assert [x.subject for x in authz.list(subject=ORG)] == [ORG]
    assert authz.list(grantee="agency:other") == []


@pytest.mark.parametrize(("subject", "to", "items", "days", "field"), [
    ("123", "agency:bank1", ["a"], 1, "subject"),
    (PERSON, "gov:330100:fgw", ["a"], 1, "to"),
    (PERSON, "bank1", ["a"], 1, "to"),  # no id at all: it was E_CONFIG [node_id], as if node.yaml were at fault
    (PERSON, "agency:", ["a"], 1, "to"),
    (PERSON, "agency:bank1", [], 1, "items"),
    (PERSON, "agency:bank1", ["nope"], 1, "items"),
    (PERSON, "agency:bank1", ["professional_qualification"], 0, "days"),
    (PERSON, "agency:bank1", ["professional_qualification"], MAX_DAYS + 1, "days"),
])
def test_grant_refuses_bad_input(authz: Authorizations, subject: str, to: str, items: list[str], days: int,
                                 field: str) -> None:
    with pytest.raises(UsageError) as info:
        authz.grant(subject, to, items, days, known_items={"professional_qualification", "a"})
    assert info.value.field == field


def test_a_code_cannot_name_an_item_shared_with_government_only(authz: Authorizations) -> None:
    """Class C (政务共享) is for government users' duties: no authorisation of the subject opens it to
    an agency, so a code naming it would promise what no lookup gives."""
    with pytest.raises(UsageError) as info:
        authz.grant(ORG, "agency:bank1", ["admin_inspection", "registration"], 30,
                    known_items={"admin_inspection", "registration"}, shared_only={"admin_inspection"})
    assert info.value.field == "items" and "admin_inspection" in info.value.message
    assert authz.list() == []


def test_revoke_unknown(authz: Authorizations) -> None:
    with pytest.raises(NotFoundError):
        authz.revoke("0123456789abcdef")
    with pytest.raises(NotFoundError):
        authz.revoke("xyz")
