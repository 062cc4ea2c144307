"""``Federation`` against a real node: what a child may ask and send, and what it may not."""

from __future__ import annotations

import datetime as dt
import pathlib
from collections.abc import Callable

import grpc
import pytest

from node.app import Node, build_node
from node.assessment import assess
from node.config import parse_config
from node.provisioning import bundled_catalog
from node.reconciliation import reconcile_with_parent
from node.store.deliveries import Deliveries
from node.store.records import OutboxEntry
from node.tabular import SourceRow
from node.transport.reconciliation_client import GrpcReconcilePeer
from node.transport.wire import fpb, frpc
from node.values import CHINA

from .conftest import Running
from .nodes import CHILD_ID, OTHER_UNIT, PARENT_ID, UNIT, penalty_values


def _pull(running: Running, who: str, request: fpb.PullRequest) -> fpb.PullResponse:
    with running.channel(who) as channel:
        response: fpb.PullResponse = frpc.FederationStub(channel).Pull(request, timeout=30)
        return response


def test_a_registered_child_pulls_an_empty_answer_from_a_quiet_parent(running: Running) -> None:
    answer = _pull(running, "child", fpb.PullRequest())
    assert list(answer.messages) == [] and answer.notice_cursor == 0


def test_ids_beyond_the_stores_range_are_invalid_arguments_not_internal_errors(running: Running) -> None:
    for request in (fpb.PullRequest(acked=[2**63]), fpb.PullRequest(notice_cursor=2**64 - 1)):
        with pytest.raises(grpc.RpcError) as info:
            _pull(running, "child", request)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert dict(info.value.trailing_metadata() or ())["credit-error-code"] == "E_USAGE"
        assert "Traceback" not in (info.value.details() or "")
    assert _pull(running, "child", fpb.PullRequest()).notice_cursor == 0  # still serving


def test_a_node_that_is_not_a_child_may_not_pull(running: Running) -> None:
    with pytest.raises(grpc.RpcError) as info:
        _pull(running, "stranger", fpb.PullRequest())
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


def _department(running: Running, work: pathlib.Path) -> Node:
    """The registered child (a department of UNIT) with the running node as its parent, over grpc."""
    return build_node(parse_config({
        "id": CHILD_ID, "level": "department", "unit": UNIT,
        "identity": {"dir": str(running.pki.dir("child"))},
        "store": {"url": f"sqlite:///{work / 'dept.db'}"},
        "catalog": {"path": str(bundled_catalog())},
        "parent": {"id": PARENT_ID, "target": running.address},
    }, base_dir=str(work)))


def _today() -> dt.date:
    return dt.datetime.now(CHINA).date()


def test_a_departments_refusals_reach_its_districts_assessment_through_reconciliation(
        running: Running, tmp_path: pathlib.Path) -> None:
    district = running.node
    with _department(running, tmp_path) as dept:
        rows = penalty_values(5)
        rows[1]["CF_CFLB"] = "批评教育"
        rows[3]["CF_WSH"] = ""
        item = dept.catalog.item("admin_penalty")
        for batch in ("b1", "b2"):  # the same file twice: its two bad rows are two refused rows
            dept.ingest.ingest_batch(item, [SourceRow(i + 2, r) for i, r in enumerate(rows)], source="p.csv",
                                     batch_id=batch)
        before = assess(district.store.engine, district.catalog, since=_today())
        assert [r.refused for r in before if r.source_unit == UNIT] in ([], [0])
        reports = []
        for _ in range(2):  # reconciling again sends the same snapshot: nothing counted twice
            peer = GrpcReconcilePeer(dept)
            try:
                reports.append(reconcile_with_parent(dept, peer).as_dict())
            finally:
                peer.close()
        mine = assess(dept.store.engine, dept.catalog, since=_today())
    (row,) = assess(district.store.engine, district.catalog, since=_today())
    assert (row.source_unit, row.item, row.refused) == (UNIT, "admin_penalty", 2)
    assert [r.refused for r in mine] == [2]  # the department counts them the same way
    assert [r["tallies"] for r in reports] == [{"sent": 1, "kept": 1, "ignored": 0}] * 2


def test_refusal_tallies_the_child_may_not_send_are_not_stored(running: Running) -> None:
    day = _today().isoformat()

    def tally(origin: str, unit: str, item: str = "admin_penalty") -> fpb.RefusalTally:
        return fpb.RefusalTally(origin=origin, source_unit=unit, item=item, days=[fpb.RefusalCount(day=day, refused=4)])

    request = fpb.ReconcileRequest(refusals=fpb.RefusalSnapshot(tallies=[
        tally(CHILD_ID, UNIT),
        tally(CHILD_ID, OTHER_UNIT),  # not a unit the child may report for
        tally(PARENT_ID, UNIT),  # the parent's own refusals are its own to count
        fpb.RefusalTally(origin=CHILD_ID, source_unit=UNIT, item="admin_license",
                         days=[fpb.RefusalCount(day="yesterday", refused=1)]),
    ]))
    with running.channel("child") as channel:
        answer: fpb.ReconcileResponse = frpc.FederationStub(channel).Reconcile(request, timeout=30)
    assert (answer.tallies_kept, answer.tallies_ignored) == (1, 3)
    node = running.node
    assert [(r.source_unit, r.item, r.refused) for r in assess(node.store.engine, node.catalog, since=_today())] \
        == [(UNIT, "admin_penalty", 4)]


def test_names_with_a_nul_in_a_reconciliation_are_held_nowhere_and_ignored_on_any_store(
        serve: Callable[..., Running], db_url: str) -> None:
    # PostgreSQL refuses a NUL in a query or a row: sent as they were, these ended the call as a
    # store outage (UNAVAILABLE), which the child retries every round.
    running = serve(store={"url": db_url})
    day = _today().isoformat()

    def tally(origin: str, item: str) -> fpb.RefusalTally:
        return fpb.RefusalTally(origin=origin, source_unit=UNIT, item=item, days=[fpb.RefusalCount(day=day, refused=2)])

    request = fpb.ReconcileRequest(
        detail=[fpb.DayDigest(item="admin_penalty\x00", day=day), fpb.DayDigest(item="admin_penalty", day=day + "\x00")],
        refusals=fpb.RefusalSnapshot(tallies=[tally(CHILD_ID, "admin_penalty"), tally(CHILD_ID + "\x00", "admin_penalty"),
                                              tally(CHILD_ID, "admin_penalty\x00")]))
    with running.channel("child") as channel:
        answer: fpb.ReconcileResponse = frpc.FederationStub(channel).Reconcile(request, timeout=30)
    assert list(answer.held) == []
    assert (answer.tallies_kept, answer.tallies_ignored) == (1, 2)


def test_what_a_child_was_sent_and_never_acknowledged_comes_again_at_once_when_it_asks(running: Running) -> None:
    node = running.node
    item = node.catalog.item("admin_penalty")
    node.ingest.ingest_batch(item, [SourceRow(2, penalty_values(1, start_no=901)[0])], source="t", batch_id="b")
    (rid,) = [r.record_id for r in node.store.records.iter_revisions()]
    Deliveries(node.store.engine).add([OutboxEntry(rid, 1, CHILD_ID, "down-to-source")])

    def sent(request: fpb.PullRequest) -> list[int]:
        return [m.delivery_id for m in _pull(running, "child", request).messages if m.delivery_id]

    first = sent(fpb.PullRequest())
    assert len(first) == 1
    assert sent(fpb.PullRequest()) == []  # leased to the child: not sent twice meanwhile
    assert sent(fpb.PullRequest(resend_unacked=True)) == first  # the child restarted: due again now
    assert sent(fpb.PullRequest(acked=first, resend_unacked=True)) == []  # acknowledged: done, not released


def test_reconcile_exits_1_while_a_revision_the_parent_lacks_waits_in_the_dead_letters(
        running: Running, tmp_path: pathlib.Path) -> None:
    """No round re-sends a dead letter (an operator replays it): a run that leaves one behind has
    not brought the parent in sync, and a cron job reading the exit status must hear of it."""
    import json
    import time

    import yaml
    from click.testing import CliRunner

    from node.cli import cli

    with _department(running, tmp_path) as dept:
        item = dept.catalog.item("admin_penalty")
        dept.ingest.ingest_batch(item, [SourceRow(i + 2, r) for i, r in enumerate(penalty_values(2))],
                                 source="p.csv", batch_id="b")
        claimed = dept.store.outbox.claim(PARENT_ID, 10, time.time_ns() // 1_000_000 + 1, lease_ms=60_000)
        assert len(claimed) == 2
        dept.store.outbox.done([claimed[0].id])  # said delivered; the parent never stored it
        dept.store.outbox.dead([claimed[1].id], "E_TRANSPORT", "refused by the parent")
        config = tmp_path / "node.yaml"
        config.write_text(yaml.safe_dump({
            "id": CHILD_ID, "level": "department", "unit": UNIT,
            "identity": {"dir": str(running.pki.dir("child"))},
            "store": {"url": f"sqlite:///{tmp_path / 'dept.db'}"},
            "catalog": {"path": str(bundled_catalog())},
            "parent": {"id": PARENT_ID, "target": running.address},
        }, allow_unicode=True), encoding="utf-8")
    done = CliRunner().invoke(cli, ["--config", str(config), "reconcile", "--with", "parent", "--json"])
    report = json.loads(done.output)
    assert (report["missing"], report["replayed"], report["dead_lettered"]) == (2, 1, 1), report
    assert done.exit_code == 1


def test_a_child_that_lost_its_whole_store_hears_what_only_the_parent_holds(
        running: Running, tmp_path: pathlib.Path) -> None:
    """A department re-installed on an empty store sends no bucket at all: the parent must still
    answer with its side, not leave the child reporting 'in sync' over everything it lost."""
    from node.records import pb

    with _department(running, tmp_path / "before") as dept:
        item = dept.catalog.item("admin_penalty")
        dept.ingest.ingest_batch(item, [SourceRow(i + 2, r) for i, r in enumerate(penalty_values(3))],
                                 source="p.csv", batch_id="b")
        signed = [pb.SignedRecord.FromString(r.signed) for r in dept.store.records.iter_revisions()]
        assert running.node.inbox.learn_certificates([dept.identity.signing_cert_der]) == []
        assert {r.outcome for r in running.node.inbox.receive(signed, sender=CHILD_ID)} == {"accepted"}
        held = sorted((r.record_id, r.revision) for r in dept.store.records.iter_revisions())
    (tmp_path / "after").mkdir()
    with _department(running, tmp_path / "after") as empty:
        peer = GrpcReconcilePeer(empty)
        try:
            report = reconcile_with_parent(empty, peer)
        finally:
            peer.close()
    assert report.buckets == 0 and not report.in_sync
    assert report.parent_only == held
