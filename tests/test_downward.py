"""The downward channel's rules, in process (the wire paths are in tests/test_federation.py).

A real city, district and department (dev CA, SQLite stores), messages handed over directly:
only the parent may send down; a revision is accepted only for a record that came up through the
node; notices reach the origin as feedback to the source unit, are passed on by intermediate
nodes and recognised when delivered twice; a catalogue release is applied only when the
configured authority signed exactly these files, and only if it is newer.
"""

from __future__ import annotations

import pathlib
import shutil
from collections.abc import Iterator

import pytest
import yaml

from node.app import Node, build_node
from node.config import load_config
from node.demo.layout import chain_plan, provision
from node.downward import Downward
from node.errors import NodeError, StoreError, UsageError
from node.forwarding import HopSigner
from node.inbox import REJECTED
from node.provisioning import bundled_catalog
from node.records import pb
from node.releases import sign_release, verify_release
from node.sampledata import penalty_rows, write_csv
from node.transport.amqp_downward import refused_notices
from node.transport.wire import fpb, submit_request

CITY, DISTRICT, DEPT = "city:330100", "district:330102", "dept:330102:scjgj"


@pytest.fixture
def tree(tmp_path: pathlib.Path) -> Iterator[dict[str, Node]]:
    fed = provision(tmp_path, chain_plan())
    nodes = {nid: build_node(load_config(cfg)) for nid, cfg in fed.configs.items()}
    csv = tmp_path / "p.csv"
    write_csv(csv, nodes[DEPT].catalog.item("admin_penalty"),
              penalty_rows(20, source_unit=fed.layout.node(DEPT).unit, seed=41))
    nodes[DEPT].import_file(csv, "admin_penalty")
    for child, parent in ((DEPT, DISTRICT), (DISTRICT, CITY)):  # up the tree, by hand
        items = nodes[child].store.outbox.claim(parent, 100, 10**13)
        payload, certs = HopSigner(nodes[child].signer, nodes[child].trust).prepare(items)
        nodes[parent].inbox.learn_certificates(certs)
        request = pb.SubmitRequest.FromString(submit_request(payload))
        assert {r.outcome for r in nodes[parent].inbox.receive(request.records, sender=child)} == {"accepted"}
        nodes[child].store.outbox.done([i.id for i in items])
    try:
        yield nodes
    finally:
        for node in nodes.values():
            node.close()


def down(nodes: dict[str, Node], parent: str, child: str) -> list[fpb.DownMessage]:
    """What ``parent`` has for ``child`` right now, as the grpc pull would carry it."""
    items = nodes[parent].store.outbox.claim(child, 100, 10**13)
    payload, certs = HopSigner(nodes[parent].signer, nodes[parent].trust).prepare(items)
    nodes[parent].store.outbox.done([i.id for i in items])
    return [fpb.DownMessage(records=submit_request([p], certs)) for p in payload]


def test_a_revision_goes_down_only_from_the_parent_and_only_to_where_the_record_came_from(
        tree: dict[str, Node]) -> None:
    record_id = next(tree[CITY].store.records.iter_revisions()).record_id
    revision = Downward(tree[CITY]).revise(record_id, status="revoked", reason="撤销")
    assert revision.destinations == [DISTRICT]  # the city is the top here: nothing goes up
    to_district = down(tree, CITY, DISTRICT)
    with pytest.raises(NodeError) as err:
        Downward(tree[DISTRICT]).apply(DEPT, to_district[0])  # not the parent
    assert err.value.code == "E_SENDER_NOT_PARENT" and not err.value.retryable
    assert "1 revision(s) stored" in Downward(tree[DISTRICT]).apply(CITY, to_district[0])
    assert "already held" in Downward(tree[DISTRICT]).apply(CITY, to_district[0])  # a redelivery: no effect
    to_dept = down(tree, DISTRICT, DEPT)
    assert "1 revision(s) stored" in Downward(tree[DEPT]).apply(DISTRICT, to_dept[0])
    head = tree[DEPT].store.records.get(record_id)
    assert head is not None and (head.revision, head.status) == (2, "revoked")
    assert tree[DEPT].store.outbox.status() == {}  # the origin keeps it: nothing goes back up


def test_route_explain_of_a_revision_that_came_down_says_so_and_plans_nothing_up(tree: dict[str, Node]) -> None:
    from node.routes import explain_route
    from node.routing import Router

    def explain(node_id: str, parent: str, record_id: str) -> dict[str, object]:
        node = tree[node_id]
        return explain_route(store=node.store, verifier=node.verifier, catalog=node.catalog,
                             router=Router(node_id, parent), node_id=node_id, record_id=record_id).as_dict()

    record_id = next(tree[CITY].store.records.iter_revisions()).record_id
    Downward(tree[CITY]).revise(record_id, status="revoked", reason="撤销")
    Downward(tree[DISTRICT]).apply(CITY, down(tree, CITY, DISTRICT)[0])
    at_district = explain(DISTRICT, CITY, record_id)
    assert [(o["destination"], o["rule_id"]) for o in at_district["onward"]] == [(DEPT, "down-to-source")]
    assert f"came down from {CITY}" in str(at_district["stops_here"])
    Downward(tree[DEPT]).apply(DISTRICT, down(tree, DISTRICT, DEPT)[0])
    at_dept = explain(DEPT, DISTRICT, record_id)
    assert at_dept["revision"] == 2 and at_dept["onward"] == []  # never "not yet queued" up to the district
    assert at_dept["stops_here"] == (f"revision 2 came down from {DISTRICT} (rule down-to-source); "
                                     "a revision from above is not sent back up")


def test_a_revision_of_a_record_that_never_came_through_is_refused_alone(tree: dict[str, Node]) -> None:
    ids = iter(dict.fromkeys(r.record_id for r in tree[CITY].store.records.iter_revisions()))
    lost, kept = next(ids), next(ids)
    for record_id in (lost, kept):
        Downward(tree[CITY]).revise(record_id, status="corrected", reason="更正")
    messages = down(tree, CITY, DISTRICT)
    both = [pb.SubmitRequest.FromString(m.records) for m in messages]
    batch = fpb.DownMessage(records=pb.SubmitRequest(records=[r for b in both for r in b.records],
                                                     certificates=both[0].certificates).SerializeToString())
    tree[DISTRICT].store.engine.dispose()
    with tree[DISTRICT].store.engine.begin() as conn:  # the district never held one of them
        conn.exec_driver_sql("DELETE FROM record_revisions WHERE record_id = ?", (lost,))
        conn.exec_driver_sql("DELETE FROM record_heads WHERE record_id = ?", (lost,))
    # One batch (as amqp carries them): the record held here is stored, the other refused alone.
    assert Downward(tree[DISTRICT]).apply(CITY, batch) == "1 revision(s) stored, 0 already held, " \
                                                         "1 refused (inbound dead letters)"
    head = tree[DISTRICT].store.records.get(kept)
    assert head is not None and head.status == "corrected"
    letters = [d for d in tree[DISTRICT].store.outbox.dead_letters() if d.kind == "inbound"]
    assert [d.reason for d in letters] == ["E_NOT_ADDRESSED"]


def test_a_store_outage_while_a_revision_is_checked_fails_the_message_for_the_parent_to_send_again(
        tree: dict[str, Node], monkeypatch: pytest.MonkeyPatch) -> None:
    # A lost connection or a statement timeout is no verdict on the record: the puller leaves the
    # message unacknowledged when apply raises a retryable error, and the parent sends it again.
    record_id = next(tree[CITY].store.records.iter_revisions()).record_id
    Downward(tree[CITY]).revise(record_id, status="revoked", reason="撤销")
    [message] = down(tree, CITY, DISTRICT)
    records = tree[DISTRICT].store.records

    def outage(*_args: object, **_kwargs: object) -> None:
        raise StoreError("reading records: server closed the connection unexpectedly")

    with monkeypatch.context() as patch:
        patch.setattr(records, "get", outage)
        with pytest.raises(NodeError) as err:
            Downward(tree[DISTRICT]).apply(CITY, message)
    assert err.value.retryable
    assert [d for d in tree[DISTRICT].store.outbox.dead_letters() if d.kind == "inbound"] == []
    assert "1 revision(s) stored" in Downward(tree[DISTRICT]).apply(CITY, message)


def test_a_notice_reaches_the_origin_as_feedback_once(tree: dict[str, Node]) -> None:
    record = next(tree[CITY].store.records.iter_revisions())
    notice_id = Downward(tree[CITY]).raise_notice(DISTRICT, to_node=DEPT, source_unit=record.source_unit,
                                                  record_id=record.record_id, revision=1, code="E_FIELD_FORMAT",
                                                  message="处罚决定日期格式错误")
    notices, cursor = Downward(tree[CITY]).notices_for(DISTRICT, 0)
    assert [n.notice_id for n in notices] == [notice_id] and cursor > 0
    assert Downward(tree[CITY]).notices_for(DISTRICT, cursor)[0] == []
    assert Downward(tree[CITY]).notices_for("district:330106", 0)[0] == []  # addressed down one branch
    passed = Downward(tree[DISTRICT]).apply(CITY, fpb.DownMessage(notice=notices[0]))
    assert passed == f"notice {notice_id} passed on to {DEPT}"
    relayed, _ = Downward(tree[DISTRICT]).notices_for(DEPT, 0)
    assert [n.notice_id for n in relayed] == [notice_id]
    assert "kept for the source unit" in Downward(tree[DEPT]).apply(DISTRICT, fpb.DownMessage(notice=relayed[0]))
    assert "already kept" in Downward(tree[DEPT]).apply(DISTRICT, fpb.DownMessage(notice=relayed[0]))
    feedback = [r for r in tree[DEPT].store.rejections.list_rejections() if r.batch_id == notice_id]
    assert len(feedback) == 1 and feedback[0].code == "E_FIELD_FORMAT" and feedback[0].source == CITY


def test_a_record_refused_upstream_becomes_a_notice_for_its_source(tree: dict[str, Node]) -> None:
    record = next(tree[DISTRICT].store.records.iter_revisions())
    signed = pb.SignedRecord.FromString(record.signed)
    receipts = tree[CITY].inbox.receive([signed], sender="district:330106")  # not the city's child
    assert receipts[0].outcome == REJECTED
    refused_notices(Downward(tree[CITY]))("district:330106", [(receipts[0], signed)])
    notices, _ = Downward(tree[CITY]).notices_for("district:330106", 0)
    assert [(n.to_node, n.record_id, n.code) for n in notices] == [(DEPT, record.record_id, "E_SENDER_NOT_CHILD")]


def _release_dir(tmp_path: pathlib.Path, version: str, authority: str = CITY) -> pathlib.Path:
    catalog = tmp_path / f"catalog-{version}"
    shutil.copytree(bundled_catalog(), catalog)
    meta = yaml.safe_load((catalog / "catalog.yaml").read_text(encoding="utf-8"))
    meta["version"], meta["authority"] = version, authority
    (catalog / "catalog.yaml").write_text(yaml.safe_dump(meta, allow_unicode=True), encoding="utf-8")
    return catalog


def test_a_release_counts_only_when_the_authority_signed_exactly_these_files(
        tree: dict[str, Node], tmp_path: pathlib.Path) -> None:
    release = sign_release(tree[CITY].identity, _release_dir(tmp_path, "2027.1"), now_ms=1_800_000_000_000)
    assert verify_release(release, tree[DEPT].trust, CITY).version == "2027.1"
    with pytest.raises(NodeError) as err:
        verify_release(release, tree[DEPT].trust, DISTRICT)  # not the authority this node trusts
    assert err.value.code == "E_RELEASE_AUTHORITY"
    tampered = fpb.CatalogRelease()
    tampered.CopyFrom(release)
    tampered.files[1].content += b"\n# one more line\n"
    with pytest.raises(NodeError) as err:
        verify_release(tampered, tree[DEPT].trust, CITY)
    assert err.value.code == "E_SIGNATURE_INVALID"
    # A district that makes itself the authority of its own catalogue is still not the department's.
    by_district = sign_release(tree[DISTRICT].identity, _release_dir(tmp_path, "2027.2", DISTRICT),
                               now_ms=1_800_000_000_000)
    with pytest.raises(NodeError) as err:
        Downward(tree[DEPT]).releases.apply(by_district, tree[DEPT].trust, "2026.11")
    assert err.value.code == "E_RELEASE_AUTHORITY"
    applied = Downward(tree[DEPT]).releases.apply(release, tree[DEPT].trust, "2026.11")
    assert applied.applied
    older = sign_release(tree[CITY].identity, _release_dir(tmp_path, "2026.12"), now_ms=1_800_000_000_000)
    assert not Downward(tree[DEPT]).releases.apply(older, tree[DEPT].trust, "2026.11").applied
    assert Downward(tree[DEPT]).releases.current_version() == "2027.1"


def test_a_dead_lettered_downward_message_is_applied_again_by_replay(tree: dict[str, Node]) -> None:
    from node.replay import replay_letters

    record_id = next(tree[CITY].store.records.iter_revisions()).record_id
    Downward(tree[CITY]).revise(record_id, status="revoked", reason="撤销")
    message = down(tree, CITY, DISTRICT)[0]
    # The district could not apply it then (as the grpc pull and the amqp consumer keep it):
    tree[DISTRICT].store.inbound.add(CITY, "E_STORE", "database is locked", message.SerializeToString())
    [letter] = [d for d in tree[DISTRICT].store.outbox.dead_letters() if d.kind == "inbound"]
    report = replay_letters(tree[DISTRICT], [letter.id])
    assert (report.accepted, report.failed) == ([letter.id], [])
    head = tree[DISTRICT].store.records.get(record_id)
    assert head is not None and head.status == "revoked"


def test_the_same_refusal_raised_twice_is_one_notice_kept_once_at_the_source(tree: dict[str, Node]) -> None:
    record = next(tree[CITY].store.records.iter_revisions())
    ids = [Downward(tree[CITY]).raise_notice(DISTRICT, to_node=DEPT, source_unit=record.source_unit,
                                             record_id=record.record_id, revision=1, code="E_FIELD_FORMAT",
                                             message="处罚决定日期格式错误") for _ in range(2)]
    assert ids[0] == ids[1]  # after a crash the same refusal is raised again: the same notice
    # kept once here too: a child re-publishing one refused record must not grow the audit log per copy
    assert [e.subject for e in tree[CITY].store.audit.iter() if e.action == "notice"] == [ids[0]]
    notices, _ = Downward(tree[CITY]).notices_for(DISTRICT, 0)
    for n in notices:
        Downward(tree[DISTRICT]).apply(CITY, fpb.DownMessage(notice=n))
    for n in Downward(tree[DISTRICT]).notices_for(DEPT, 0)[0]:
        Downward(tree[DEPT]).apply(DISTRICT, fpb.DownMessage(notice=n))
    kept = [r for r in tree[DEPT].store.rejections.list_rejections() if r.batch_id == ids[0]]
    assert len(kept) == 1


@pytest.mark.parametrize("reason", ["", "  \t"])
def test_a_revision_without_a_reason_is_refused_and_nothing_is_stored(tree: dict[str, Node], reason: str) -> None:
    record_id = next(tree[CITY].store.records.iter_revisions()).record_id
    with pytest.raises(UsageError) as err:
        Downward(tree[CITY]).revise(record_id, status="revoked", reason=reason)
    assert err.value.field == "reason"
    head = tree[CITY].store.records.get(record_id)
    assert head is not None and head.revision == 1


def test_a_release_the_child_refuses_is_fetched_and_dead_lettered_once(tree: dict[str, Node],
                                                                       tmp_path: pathlib.Path) -> None:
    from node.backoff import Backoff
    from node.releases import version_key
    from node.transport.grpc_downward import DownwardPuller

    # Signed by the district, which is not the department's authority: refused, not retryable.
    release = sign_release(tree[DISTRICT].identity, _release_dir(tmp_path, "2027.3", DISTRICT),
                           now_ms=1_800_000_000_000)

    class Parent:  # what Federation.Pull offers: the release, to a child running an older catalogue
        def __init__(self) -> None:
            self.asked: list[str] = []

        def Pull(self, request: fpb.PullRequest, timeout: float) -> fpb.PullResponse:
            self.asked.append(request.catalog_version)
            newer = version_key(release.version) > version_key(request.catalog_version or "0")
            return fpb.PullResponse(messages=[fpb.DownMessage(catalog=release)] if newer else [])

    puller = DownwardPuller(tree[DEPT], Downward(tree[DEPT]), Backoff(min_s=0.1, max_s=0.1))
    parent = Parent()
    got = [puller.pull_once(parent, lambda exc: exc) for _ in range(3)]  # type: ignore[arg-type]
    assert got == [1, 0, 0]  # the refused release is not asked for again
    assert parent.asked[1:] == ["2027.3", "2027.3"]
    letters = [d for d in tree[DEPT].store.outbox.dead_letters() if d.kind == "inbound"]
    assert [d.reason for d in letters] == ["E_RELEASE_AUTHORITY"]
    assert Downward(tree[DEPT]).releases.current_version() != "2027.3"


def test_a_release_whose_files_were_torn_gives_way_to_the_configured_catalogue(tree: dict[str, Node],
                                                                               tmp_path: pathlib.Path) -> None:
    import os
    import time

    from node.releases import Releases

    node = tree[DEPT]
    releases = Releases(node.config)
    leftover = node.config.path(node.config.catalog.releases) / ".2027.1.deadbeef"
    leftover.mkdir(parents=True)
    os.utime(leftover, (time.time() - 7200, time.time() - 7200))  # what a killed apply left, long ago
    release = sign_release(tree[CITY].identity, _release_dir(tmp_path, "2027.4"), now_ms=1_800_000_000_000)
    assert releases.apply(release, node.trust, "2026.11").applied
    assert not leftover.exists()
    used = releases.current_path()
    assert used.name == "2027.4"
    # A power cut tore one of its files after the rename: the node must still start, on the
    # catalogue it was configured with, not on rules nobody signed.
    (used / "admin_penalty.yaml").write_text("")
    assert releases.current_path() == node.config.path(node.config.catalog.path)
    config_file = node.config.path("node.yaml")
    assert config_file.exists()
    restarted = build_node(load_config(config_file))
    assert restarted.catalog.version != "2027.4"
    restarted.close()


def test_the_puller_asks_for_unacknowledged_messages_again_after_a_start_or_a_response_cut_short(
        tree: dict[str, Node]) -> None:
    from node.backoff import Backoff
    from node.errors import StoreError
    from node.transport.grpc_downward import DownwardPuller

    class Parent:
        def __init__(self) -> None:
            self.asked: list[tuple[bool, list[int]]] = []
            self.answer: list[fpb.DownMessage] = []

        def Pull(self, request: fpb.PullRequest, timeout: float) -> fpb.PullResponse:
            self.asked.append((request.resend_unacked, list(request.acked)))
            return fpb.PullResponse(messages=self.answer)

    downward = Downward(tree[DEPT])
    puller = DownwardPuller(tree[DEPT], downward, Backoff(min_s=0.1, max_s=0.1))
    parent = Parent()
    puller.pull_once(parent, lambda exc: exc)  # type: ignore[arg-type]
    puller.pull_once(parent, lambda exc: exc)  # type: ignore[arg-type]
    assert parent.asked == [(True, []), (False, [])]  # the first pull after a start asks for what was leased

    applied: list[int] = []

    def apply(sender: str, message: fpb.DownMessage) -> str:
        if message.delivery_id == 3:
            raise StoreError("the store is busy")  # retryable: stop here, unacknowledged
        applied.append(message.delivery_id)
        return "applied"

    downward.apply = apply  # type: ignore[method-assign]
    parent.answer = [fpb.DownMessage(delivery_id=i) for i in (1, 2, 3, 4)]
    with pytest.raises(StoreError):
        puller.pull_once(parent, lambda exc: exc)  # type: ignore[arg-type]
    parent.answer = []
    puller.pull_once(parent, lambda exc: exc)  # type: ignore[arg-type]
    assert applied == [1, 2] and parent.asked[-1] == (True, [1, 2])  # 3 and 4 are asked for again now


@pytest.mark.parametrize("rename", ["{}\n", "../{}", ".{}", "sub/{}"])
def test_a_signed_release_naming_a_file_outside_plain_names_is_refused(tree: dict[str, Node], tmp_path: pathlib.Path,
                                                                        rename: str) -> None:
    # Even the authority's signature does not make a name with a line break (or a path) one the
    # node writes into its releases directory.
    from node.releases import release_statement

    good = sign_release(tree[CITY].identity, _release_dir(tmp_path, "2027.5"), now_ms=1_800_000_000_000)
    last = good.files[-1].name  # an item file: the catalogue still loads with it renamed
    files = [(rename.format(f.name) if f.name == last else f.name, bytes(f.content)) for f in good.files]
    statement = release_statement(good.version, good.authority, good.signed_at_ms, files)
    forged = fpb.CatalogRelease(version=good.version, authority=good.authority, signed_at_ms=good.signed_at_ms,
                                files=[fpb.CatalogFile(name=n, content=c) for n, c in files],
                                certificate=good.certificate, signature=tree[CITY].identity.signing_key.sign(statement))
    with pytest.raises(NodeError) as err:
        verify_release(forged, tree[DEPT].trust, CITY)
    assert err.value.code == "E_CATALOG" and "file names" in err.value.message
