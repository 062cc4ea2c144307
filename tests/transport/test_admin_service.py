"""``Admin.Status`` and ``Admin.Echo`` against a real node; last contacts kept across a restart."""

from __future__ import annotations

import pathlib

import pytest

from node.errors import NotAuthorizedError
from node.records import pb
from node.store import Store
from node.transport import grpc_client
from node.transport.contacts import PeerContacts

from .conftest import DEADLINE_S, Running
from .nodes import CHILD_ID, PARENT_ID, SOURCE_ID, Pki, child_records


def test_status_reports_identity_counts_outbox_and_peers(running: Running, pki: Pki,
                                                         tmp_path: pathlib.Path) -> None:
    with running.channel("gov") as channel:
        before = grpc_client.status(channel, timeout=DEADLINE_S)
    assert (before.node_id, before.level) == (PARENT_ID, "district")
    assert before.catalog_version == running.node.catalog.version
    assert list(before.counts) == [] and before.outbox_depth == 0
    assert [(p.node_id, p.relation, p.last_contact_ms) for p in before.peers] == [
        (CHILD_ID, "child", 0), (SOURCE_ID, "source", 0)]

    records, cert = child_records(pki, tmp_path, 3)
    with running.channel("child") as channel:
        acks = [a for r in grpc_client.submit(channel, [pb.SubmitRequest(records=records, certificates=[cert])])
                for a in r.acks]
    assert {a.outcome for a in acks} == {pb.Ack.ACCEPTED}
    with running.channel("child") as channel:  # a node may ask too
        after = grpc_client.status(channel, timeout=DEADLINE_S)
    assert {c.item: c.records for c in after.counts} == {"admin_penalty": 3}
    child = next(p for p in after.peers if p.node_id == CHILD_ID)
    assert child.last_contact_ms > 0
    assert not after.sharing_suspended


@pytest.mark.parametrize("who", ["agency", "source"])
def test_status_is_refused_to_other_roles(shared: Running, who: str) -> None:
    with shared.channel(who) as channel, pytest.raises(NotAuthorizedError) as err:
        grpc_client.status(channel, timeout=DEADLINE_S)
    assert err.value.code == "E_NOT_AUTHORIZED" and err.value.exit_code == 3


def test_echo_answers_any_authenticated_caller(shared: Running) -> None:
    with shared.channel("agency") as channel:
        assert grpc_client.echo(channel, b"\x00payload", timeout=DEADLINE_S) == b"\x00payload"


def test_last_contacts_are_kept_in_memory_and_persisted_now_and_then(tmp_path: pathlib.Path) -> None:
    now = [1_000_000]
    with Store.open(f"sqlite:///{tmp_path / 'meta.db'}") as store:
        contacts = PeerContacts(store.meta, {"a": "child", "b": "parent"}, persist_every_ms=30_000,
                                clock=lambda: now[0])
        contacts.seen("a")
        contacts.seen("stranger")  # not configured: not tracked
        now[0] += 1_000
        contacts.seen("a")  # newer, but too soon to write again
        assert [(c.node_id, c.last_contact_ms) for c in contacts.snapshot()] == [("a", 1_001_000), ("b", 0)]
        assert store.meta.get("peer.last_contact.a") == "1000000"
        contacts.stop()  # flushes
        assert store.meta.get("peer.last_contact.a") == "1001000"
        reloaded = PeerContacts(store.meta, {"a": "child", "b": "parent"})
        assert [(c.node_id, c.relation, c.last_contact_ms) for c in reloaded.snapshot()] == [
            ("a", "child", 1_001_000), ("b", "parent", 0)]
