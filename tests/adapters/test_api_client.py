"""Department systems pushing over gRPC with mutual TLS: the client, ``credit-node submit``, the acks."""

from __future__ import annotations

import json
import pathlib
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest_values import OTHER_UNIT, UNIT

from adapters.api_client import Pusher
from node import identity
from node.app import Node, build_node, build_runtime
from node.config import load_config
from node.provisioning import init_node
from node.runtime import Runtime
from node.sampledata import penalty_rows, write_csv
from node.transport.grpc_server import GrpcServer

SOURCE_ID = "source:330102:scjgj-xzcf"
REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def served(tmp_path: pathlib.Path) -> Iterator[tuple[Node, str, pathlib.Path, pathlib.Path]]:
    """A department node serving on a free port, and the identity of a source system registered with it."""
    ca = identity.init_ca(tmp_path / "ca")
    cfg = init_node(tmp_path / "node", node_id="dept:330102:scjgj", level="department", unit=UNIT, ca_dir=ca)
    with cfg.open("a", encoding="utf-8") as fh:
        fh.write(f"sources:\n- id: {SOURCE_ID}\n  units: [{UNIT}]\n")
    source_dir = identity.issue(ca, SOURCE_ID, "source", tmp_path / "source-identity")
    node = build_node(load_config(cfg))
    runtime: Runtime = build_runtime(node)
    runtime.start()
    try:
        yield node, runtime.extension(GrpcServer).address, source_dir, cfg
    finally:
        runtime.stop()
        node.close()


def rows_with_mistakes(n: int) -> list[tuple[int, dict[str, str]]]:
    rows = [(i + 10, r) for i, r in enumerate(penalty_rows(n, source_unit=UNIT))]
    rows[2][1]["CF_CFLB"] = "批评教育"
    rows[5][1]["CF_JDRQ"] = "2024-02-30"
    return rows


def test_push_answers_every_row_by_the_callers_row_number(served: Any):
    node, address, source_dir, _cfg = served
    rows = rows_with_mistakes(30)
    with Pusher(address, source_dir, batch=7, window=2) as pusher:
        acks = list(pusher.push("admin_penalty", rows))
        assert [a.row for a in acks] == [n for n, _r in rows]
        assert [a.row for a in acks if a.outcome == "rejected"] == [12, 15]
        by_row = {a.row: a for a in acks}
        assert by_row[12].problems[0].field == "CF_CFLB" and by_row[12].problems[0].code.startswith("E_")
        assert by_row[15].problems[0].field == "CF_JDRQ"
        assert all(a.record_id for a in acks if a.outcome == "accepted")
        again = list(pusher.push("admin_penalty", rows))  # the same batch again: nothing new
    assert {a.outcome for a in again} == {"duplicate", "rejected"}
    assert sum(node.store.records.counts().values()) == 28
    # The refusals stay visible to the department until corrected, once each.
    assert {r.field for r in node.store.rejections.list_rejections(UNIT)} == {"CF_CFLB", "CF_JDRQ"}


def test_push_streams_many_rows_in_a_bounded_window(served: Any):
    node, address, source_dir, _cfg = served
    rows = ((i + 1, r) for i, r in enumerate(penalty_rows(3000, source_unit=UNIT, seed=11)))
    with Pusher(address, source_dir, batch=250, window=2) as pusher:
        outcomes = [a.outcome for a in pusher.push("admin_penalty", rows)]
    assert outcomes.count("accepted") == 3000
    assert sum(node.store.records.counts().values()) == 3000


def test_a_batch_over_what_a_node_takes_per_request_is_sent_as_several(served: Any,
                                                                        monkeypatch: pytest.MonkeyPatch):
    from node.transport import exchange_service, wire

    _node, address, source_dir, _cfg = served
    monkeypatch.setattr(wire, "MAX_SUBMIT_RECORDS", 4)  # 10,000 at both ends, 4 here
    monkeypatch.setattr(exchange_service, "MAX_SUBMIT_RECORDS", 4)
    rows = ((i + 1, r) for i, r in enumerate(penalty_rows(10, source_unit=UNIT, seed=13)))
    with Pusher(address, source_dir, batch=50) as pusher:
        outcomes = [a.outcome for a in pusher.push("admin_penalty", rows)]
    assert outcomes == ["accepted"] * 10


def test_push_acks_carry_the_nodes_warnings_whatever_the_outcome(served: Any):
    _node, address, source_dir, _cfg = served
    rows = rows_with_mistakes(6)[:4]
    for _n, r in rows:
        r["CF_BEIZHU"] = "a field the item does not have: dropped, and the source told"
    with Pusher(address, source_dir) as pusher:
        acks = list(pusher.push("admin_penalty", rows))
        again = list(pusher.push("admin_penalty", rows[:1]))
    assert [a.outcome for a in acks] == ["accepted", "accepted", "rejected", "accepted"]
    for ack in [*acks, *again]:
        [warning] = ack.warnings
        assert (warning.code, warning.row, warning.warning) == ("W_FIELD_UNKNOWN", ack.row, True)
        assert "CF_BEIZHU" in warning.message
    assert again[0].outcome == "duplicate"
    assert [p.code for p in acks[2].problems] and not any(p.warning for p in acks[2].problems)


def test_an_unknown_item_is_refused_per_row(served: Any):
    _node, address, source_dir, _cfg = served
    with Pusher(address, source_dir) as pusher:
        (ack,) = pusher.push("no_such_item", [(1, {"X": "1"})])
    assert ack.outcome == "rejected" and ack.problems[0].code == "E_UNKNOWN_ITEM"


def _submit(address: str, source_dir: pathlib.Path, *args: str, stdin: str | None = None,
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node", "submit", *args, "--item", "admin_penalty",
                           "--target", address, "--identity", str(source_dir), "--json"],
                          input=stdin, capture_output=True, text=True, cwd=REPO, timeout=120, check=False)


def test_submit_a_csv_file_reports_refusals_by_file_row(served: Any, tmp_path: pathlib.Path):
    node, address, source_dir, cfg = served
    item = node.catalog.item("admin_penalty")
    rows = [r for _n, r in rows_with_mistakes(12)]
    path = tmp_path / "penalties.csv"
    write_csv(path, item, iter(rows), encoding="gbk")
    with path.open("a", encoding="gbk", newline="") as fh:
        fh.write('"unterminated,row\n')  # the client refuses what it cannot read, without sending it
    done = _submit(address, source_dir, str(path))
    assert done.returncode == 1, done.stderr
    out = json.loads(done.stdout)
    assert (out["accepted"], out["rejected"]) == (10, 3)
    refused_rows = sorted({r["row"] for r in out["rejections"]})
    assert refused_rows[:2] == [4, 7]  # file rows: the header is row 1
    assert sum(node.store.records.counts().values()) == 10
    listed = subprocess.run([sys.executable, "-m", "node", "--config", str(cfg), "rejections", "list",
                             "--source", UNIT, "--open", "--json"], capture_output=True, text=True, cwd=REPO,
                            check=False)
    assert listed.returncode == 0, listed.stderr
    assert {r["field"] for r in json.loads(listed.stdout)} == {"CF_CFLB", "CF_JDRQ"}


def test_submit_json_lines_from_stdin(served: Any):
    _node, address, source_dir, _cfg = served
    lines = [json.dumps(r, ensure_ascii=False) for r in penalty_rows(5, source_unit=UNIT, seed=5)]
    lines.insert(2, "this is not json")
    done = _submit(address, source_dir, "-", stdin="\n".join(lines) + "\n")
    out = json.loads(done.stdout)
    assert (out["accepted"], out["rejected"]) == (5, 1)
    assert out["rejections"][0]["row"] == 3 and out["rejections"][0]["code"] == "E_ROW_MALFORMED"
    again = json.loads(_submit(address, source_dir, "-", stdin="\n".join(lines) + "\n").stdout)
    assert again["duplicates"] == 5


def test_submit_reports_warnings_with_their_rows_as_import_does(served: Any):
    _node, address, source_dir, _cfg = served
    rows = list(penalty_rows(3, source_unit=UNIT, seed=9))
    rows[1]["CF_BEIZHU"] = "dropped"
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    done = _submit(address, source_dir, "-", stdin="\n".join(lines) + "\n")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["accepted"], out["rejected"], out["warnings"], out["rejections"]) == (3, 0, 1, [])
    [warned] = out["warned"]
    assert (warned["row"], warned["code"], warned["field"]) == (2, "W_FIELD_UNKNOWN", "")
    assert "CF_BEIZHU" in warned["message"]


def test_a_node_certificate_cannot_push_unsigned_records(served: Any, tmp_path: pathlib.Path):
    _node, address, _source_dir, _cfg = served
    with Pusher(address, tmp_path / "node" / "identity") as pusher:
        (ack,) = pusher.push("admin_penalty", [(1, next(iter(penalty_rows(1, source_unit=UNIT))))])
    assert ack.outcome == "rejected" and ack.problems[0].code == "E_NOT_AUTHORIZED"


@pytest.mark.parametrize(("stranger", "unit"), [("source:330102:stranger", UNIT),  # not under sources:
                                                 (SOURCE_ID, OTHER_UNIT)])  # not one of its units
def test_submit_by_a_source_the_node_does_not_allow_exits_3_with_the_reason(
        served: Any, tmp_path: pathlib.Path, stranger: str, unit: str):
    node, address, source_dir, _cfg = served
    if stranger != SOURCE_ID:
        source_dir = identity.issue(tmp_path / "ca", stranger, "source", tmp_path / "stranger-identity")
    lines = [json.dumps(r, ensure_ascii=False) for r in penalty_rows(3, source_unit=unit, seed=7)]
    done = _submit(address, source_dir, "-", stdin="\n".join(lines) + "\n")
    assert done.returncode == 3, (done.stdout, done.stderr)
    error = json.loads(done.stdout)["error"]
    assert error["code"] == "E_NOT_AUTHORIZED" and stranger in error["message"]
    assert done.stderr.startswith("error: E_NOT_AUTHORIZED") and "Traceback" not in done.stderr
    assert sum(node.store.records.counts().values()) == 0


def test_a_lookup_by_a_source_system_exits_3_with_the_reason(served: Any, tmp_path: pathlib.Path):
    _node, address, _source_dir, _cfg = served
    stranger = identity.issue(tmp_path / "ca", "source:330102:stranger", "source", tmp_path / "stranger-identity")
    done = subprocess.run([sys.executable, "-m", "node", "lookup", UNIT, "--target", address, "--identity",
                           str(stranger), "--purpose", "行政许可审查"], capture_output=True, text=True, cwd=REPO,
                          timeout=120, check=False)
    assert done.returncode == 3, done.stderr
    assert done.stderr == "error: E_ROLE_CANNOT_QUERY: role 'source' may not query records\n"


def _table_bytes(node: Node, tmp_path: pathlib.Path, kind: str, rows: list[dict[str, str]]) -> bytes:
    import openpyxl

    item = node.catalog.item("admin_penalty")
    if kind == "xlsx":
        wb = openpyxl.Workbook()
        ws = wb.active
        ws.append([f.name for f in item.fields])
        for row in rows:
            ws.append([row.get(f.code, "") for f in item.fields])
        wb.save(tmp_path / "rows.xlsx")
        return (tmp_path / "rows.xlsx").read_bytes()
    if kind == "jsonl-bom":  # as Windows Notepad saves UTF-8
        return "\ufeff".encode() + "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    write_csv(tmp_path / "rows.csv", item, iter(rows), encoding="gbk")
    return (tmp_path / "rows.csv").read_bytes()


@pytest.mark.parametrize("kind", ["csv", "xlsx", "jsonl-bom"])
def test_submit_reads_from_stdin_whatever_it_reads_from_a_file(served: Any, tmp_path: pathlib.Path, kind: str):
    node, address, source_dir, _cfg = served
    rows = [r for _n, r in rows_with_mistakes(6)]
    done = subprocess.run([sys.executable, "-m", "node", "submit", "-", "--item", "admin_penalty", "--target",
                           address, "--identity", str(source_dir), "--json"],
                          input=_table_bytes(node, tmp_path, kind, rows), capture_output=True, cwd=REPO,
                          timeout=120, check=False)
    assert done.returncode == 1, done.stderr
    out = json.loads(done.stdout)
    assert (out["accepted"], out["rejected"]) == (4, 2)
    header = 0 if kind == "jsonl-bom" else 1  # a table's rows are its file rows, under the header
    assert [r["row"] for r in out["rejections"]] == [3 + header, 6 + header]
    assert sum(node.store.records.counts().values()) == 4


def test_submit_cut_off_by_the_node_stopping_says_how_many_rows_were_answered(tmp_path: pathlib.Path):
    ca = identity.init_ca(tmp_path / "ca")
    cfg = init_node(tmp_path / "node", node_id="dept:330102:scjgj", level="department", unit=UNIT, ca_dir=ca)
    text = cfg.read_text(encoding="utf-8").replace("server:\n", "server:\n  grace_s: 0.2\n")
    cfg.write_text(text + f"sources:\n- id: {SOURCE_ID}\n  units: [{UNIT}]\n", encoding="utf-8")
    source_dir = identity.issue(ca, SOURCE_ID, "source", tmp_path / "source-identity")
    node = build_node(load_config(cfg))
    runtime: Runtime = build_runtime(node)
    runtime.start()
    try:
        client = subprocess.Popen([sys.executable, "-m", "node", "submit", "-", "--item", "admin_penalty",
                                   "--target", runtime.extension(GrpcServer).address, "--identity",
                                   str(source_dir), "--batch", "5", "--json"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        assert client.stdin is not None
        for row in penalty_rows(20, source_unit=UNIT, seed=21):
            client.stdin.write(json.dumps(row, ensure_ascii=False) + "\n")
        client.stdin.flush()  # the stream stays open: the node stops under it
        deadline = time.monotonic() + 60
        while sum(node.store.records.counts().values()) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sum(node.store.records.counts().values()) == 20
    finally:
        runtime.stop()
        node.close()
    out, err = client.communicate(timeout=60)
    assert client.returncode == 4, err
    message = json.loads(out)["error"]["message"]
    assert "20 rows answered (20 accepted, 0 duplicates, 0 rejected)" in message, message
    assert "submit the same input again" in message and "Traceback" not in err


def test_a_failure_of_the_callers_rows_reaches_the_caller_as_itself(served: Any):
    node, address, source_dir, _cfg = served
    rows = list(penalty_rows(3, source_unit=UNIT, seed=31))

    def failing() -> Iterator[tuple[int, dict[str, str]]]:
        yield from enumerate(rows, start=1)
        raise LookupError("the department's database went away")

    acks = []
    with Pusher(address, source_dir, batch=2) as pusher, pytest.raises(LookupError, match="went away"):
        acks.extend(pusher.push("admin_penalty", failing()))
    # The full batch sent before the failure is answered; the row after it was never sent.
    assert [(a.row, a.outcome) for a in acks] == [(1, "accepted"), (2, "accepted")]
    assert sum(node.store.records.counts().values()) == 2


def test_submit_stopped_by_ctrl_c_says_how_many_rows_were_answered(served: Any):
    node, address, source_dir, _cfg = served
    client = subprocess.Popen([sys.executable, "-m", "node", "submit", "-", "--item", "admin_penalty", "--target",
                               address, "--identity", str(source_dir), "--batch", "5", "--json"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=REPO)
    assert client.stdin is not None
    for row in penalty_rows(10, source_unit=UNIT, seed=41):
        client.stdin.write(json.dumps(row, ensure_ascii=False) + "\n")
    client.stdin.flush()
    deadline = time.monotonic() + 60
    while sum(node.store.records.counts().values()) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    client.send_signal(signal.SIGINT)
    out, err = client.communicate(timeout=60)
    assert client.returncode == 130, err
    message = json.loads(out)["error"]["message"]
    # The node may have stored rows whose acks had not reached the client yet: never more are told.
    answered = re.search(r"(\d+) rows answered \((\d+) accepted, 0 duplicates, 0 rejected\)", message)
    assert answered is not None, message
    assert answered[1] == answered[2] and int(answered[1]) <= sum(node.store.records.counts().values())
    assert "submit the same input again" in message and "Traceback" not in err
