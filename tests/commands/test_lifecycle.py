"""``credit-node calendar | objection | disclosure | repair | deletion`` end to end on a real node directory."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import re

import pytest
from click.testing import CliRunner, Result

from node.catalog import load_catalog
from node.cli import cli
from node.lifecycle.calendar import WorkingCalendar, bundled_calendar, china_date
from node.provisioning import bundled_catalog, init_node
from node.sampledata import penalty_rows, unit_uscc, write_csv

UNIT = unit_uscc("330102", "00248297")


def run(*args: str, config: pathlib.Path | None = None) -> Result:
    prefix = ["--config", str(config)] if config else []
    return CliRunner().invoke(cli, [*prefix, *args], catch_exceptions=False)


def ok(*args: str, config: pathlib.Path | None = None) -> dict[str, object]:
    result = run(*args, "--json", config=config)
    assert result.exit_code == 0, result.output + (result.stderr if result.stderr_bytes else "")
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_calendar_add_days() -> None:
    assert run("calendar", "add-days", "2026-02-13", "2").stdout.strip() == "2026-02-24"
    out = ok("calendar", "add-days", "2026-09-30", "10")
    assert out["due"] == "2026-10-20" and out["uncovered_years"] == []
    bad = run("calendar", "add-days", "2026-02-30", "1")
    assert bad.exit_code == 2 and "E_USAGE" in bad.stderr


@pytest.fixture
def node_config(tmp_path: pathlib.Path, db_url: str) -> tuple[pathlib.Path, list[dict[str, str]]]:
    config = init_node(tmp_path / "dept", node_id="dept:330102:scjgj", level="department", unit=UNIT,
                       store_url=db_url)
    # Decided three weeks ago: disclosed (ordinary: 3-12 months), too early to repair.
    decided = china_date(int(dt.datetime.now(dt.UTC).timestamp() * 1000)) - dt.timedelta(days=21)
    rows = [{**r, "CF_JDRQ": decided.isoformat(), "CF_YXQ": (decided + dt.timedelta(days=365)).isoformat()}
            for r in penalty_rows(3, source_unit=UNIT, seed=5)]
    csv = tmp_path / "penalties.csv"
    write_csv(csv, load_catalog(bundled_catalog()).item("admin_penalty"), iter(rows))
    assert ok("import", str(csv), "--item", "admin_penalty", config=config)["accepted"] == 3
    return config, rows


def _subject(row: dict[str, str]) -> str:
    return row.get("CF_XDR_SHXYM") or row["CF_XDR_ZJHM"]


def _record_id(config: pathlib.Path, subject: str) -> str:
    records = ok("query", subject, config=config)["records"]
    assert isinstance(records, list) and records
    return str(records[0]["record_id"])


def test_objection_commands(node_config: tuple[pathlib.Path, list[dict[str, str]]], tmp_path: pathlib.Path) -> None:
    config, rows = node_config
    subject = _subject(rows[0])
    rid = _record_id(config, subject)
    evidence = tmp_path / "证据.pdf"
    evidence.write_bytes(b"%PDF evidence")

    wrong = run("objection", "file", rid, "--by", "91350100M000100Y43", "--reason", "x", config=config)
    assert wrong.exit_code == 3 and "E_OBJECTION_NOT_SUBJECT" in wrong.stderr
    case = ok("objection", "file", rid, "--by", subject, "--reason", "处罚内容有误", "--evidence", str(evidence),
              config=config)
    assert case["state"] == "awaiting_source" and case["case_id"] == f"{rid}@2"
    assert case["evidence_name"] == "证据.pdf" and len(str(case["evidence_digest"])) == 64
    listed = ok("objection", "list", config=config)["cases"]
    assert [c["case_id"] for c in listed] == [case["case_id"]]  # type: ignore[index, union-attr]
    assert ok("objection", "list", "--overdue", config=config)["cases"] == []

    answer = ok("objection", "answer", str(case["case_id"]), "correct", "--field", "CF_NR=警告。", "--note", "已更正",
                config=config)
    assert answer["status"] == "corrected" and answer["revision"] == 3
    assert answer["case"]["outcome"] == "corrected"  # type: ignore[index]
    shown = ok("query", subject, config=config)["records"][0]  # type: ignore[index]
    assert shown["revision"] == 3 and shown["fields"]["CF_NR"] == "警告。"  # type: ignore[index]
    noted = ok("objection", "statement", str(case["case_id"]), "--by", subject, "--text", "仍有异议", config=config)
    assert noted["statement"] == "仍有异议"
    log = ok("objection", "show", str(case["case_id"]), config=config)
    assert [e["kind"] for e in log["events"]] == [  # type: ignore[union-attr, index]
        "filed", "checked", "request_sent", "answered", "result", "statement"]
    text = run("objection", "show", str(case["case_id"]), config=config).stdout.splitlines()[1:]
    # Read by people: times as dates, details as key=value, no Python reprs.
    assert len(text) == 6 and all(re.match(r"  20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ ", line) for line in text), text
    assert not any("{" in line for line in text) and "statement: text=仍有异议" in text[-1]
    assert ok("objection", "tick", config=config) == {"answered": [], "overdue": [], "past_limit": []}
    bad = run("objection", "answer", "nope", "confirm", config=config)
    assert bad.exit_code == 2 and "E_OBJECTION_UNKNOWN" in bad.stderr
    assert ok("verify", config=config)["ok"] is True


def test_objection_limit_extension_and_statement_withdrawal_commands(
        node_config: tuple[pathlib.Path, list[dict[str, str]]]) -> None:
    config, rows = node_config
    subject = _subject(rows[2])
    rid = _record_id(config, subject)
    cal = WorkingCalendar.load(bundled_calendar())
    today = china_date(int(dt.datetime.now(dt.UTC).timestamp() * 1000))
    limit = cal.add_calendar_days(today, 30)  # seed 001 附件2 三, off rest days
    case = ok("objection", "file", rid, "--by", subject, "--reason", "处罚对象有误", config=config)
    case_id = str(case["case_id"])
    assert case["limit_due"] == limit.isoformat() and case["extended_days"] == 0
    listed = ok("objection", "list", config=config)["cases"][0]  # type: ignore[index]
    assert listed["limit_due"] == limit.isoformat() and listed["past_limit"] is False
    assert f"limit {limit.isoformat()}" in run("objection", "list", config=config).stdout

    too_long = run("objection", "extend", case_id, "--working-days", "16", "--approval", "批复", config=config)
    assert too_long.exit_code == 2 and "E_EXTENSION_TOO_LONG" in too_long.stderr
    longer = ok("objection", "extend", case_id, "--working-days", "5", "--approval", "杭信用办〔2026〕12号",
                config=config)
    assert longer["limit_due"] == cal.add_working_days(limit, 5).isoformat() and longer["extended_days"] == 5
    shown = run("objection", "show", case_id, config=config).stdout
    assert f"limit {longer['limit_due']} (extended 5)" in shown and "approval=杭信用办〔2026〕12号" in shown
    assert ok("objection", "show", case_id, config=config)["case"]["past_limit"] is False  # type: ignore[index]

    ok("objection", "answer", case_id, "confirm", config=config)
    ok("objection", "statement", case_id, "--by", subject, "--text", "仍有异议", config=config)
    other = run("objection", "withdraw-statement", case_id, "--by", "91350100M000100Y43", config=config)
    assert other.exit_code == 3 and "E_STATEMENT_NOT_APPLICANT" in other.stderr
    withdrawn = ok("objection", "withdraw-statement", case_id, "--by", subject, config=config)
    assert withdrawn["statement"] == "" and withdrawn["statement_until"] == ""
    events = ok("objection", "show", case_id, config=config)["events"]
    assert [e["kind"] for e in events][-2:] == ["statement", "statement_withdrawn"]  # type: ignore[index, union-attr]
    again = run("objection", "withdraw-statement", case_id, "--by", subject, config=config)
    assert again.exit_code == 1 and "E_STATEMENT_NONE" in again.stderr
    assert ok("verify", config=config)["ok"] is True


def _swept_day(config: pathlib.Path) -> str | None:
    from node.app import build_node
    from node.config import load_config
    from node.lifecycle.schedule import LAST_SWEEP_KEY

    with build_node(load_config(config)) as node:
        return node.store.meta.get(LAST_SWEEP_KEY)


def test_sweep_repair_and_deletion_commands(node_config: tuple[pathlib.Path, list[dict[str, str]]]) -> None:
    config, rows = node_config
    dry = ok("disclosure", "sweep", "--dry-run", config=config)
    assert dry["dry_run"] is True and dry["moved"] == 0 and dry["examined"] == 3
    assert _swept_day(config) is None  # a dry run is no day's sweep
    done = ok("disclosure", "sweep", config=config)
    assert done["moved"] == 0
    assert _swept_day(config) == done["today"]  # a running node's schedule skips the day's sweep
    subject = _subject(rows[1])
    rid = _record_id(config, subject)
    early = run("repair", "request", rid, "--by", subject, "--reason", "已整改", config=config)
    assert early.exit_code == 1 and "E_REPAIR_TOO_EARLY" in early.stderr and "apply on or after" in early.stderr
    refused = run("deletion", "request", rid, "--by", subject, config=config)
    assert refused.exit_code == 2 and "E_DELETION_NOT_ALLOWED" in refused.stderr
    unknown = run("repair", "approve", "nope", config=config)
    assert unknown.exit_code == 1 and "E_REPAIR_UNKNOWN" in unknown.stderr
    assert ok("repair", "list", config=config) == {"cases": []}  # the early request left no case
    assert run("repair", "list", "--state", "requested", config=config).stdout.strip() == "no repair cases"


@pytest.mark.parametrize("command", [("objection", "file", "REC", "--by", "X"), ("repair", "request", "REC", "--by", "X"),
                                     ("repair", "reject", "CASE")])
def test_a_blank_reason_is_refused_naming_the_option(command: tuple[str, ...], tmp_path: pathlib.Path) -> None:
    # Refused as the command line is read, before a node is opened: the reason is the case's record.
    result = run(*command, "--reason", "   ", config=tmp_path / "absent.yaml")
    assert result.exit_code == 2 and "--reason" in result.stderr and "must not be empty" in result.stderr


def test_check_commands(tmp_path: pathlib.Path, node_config: tuple[pathlib.Path, list[dict[str, str]]]) -> None:
    dept, dept_rows = node_config
    city = init_node(tmp_path / "city", node_id="city:330100", level="city")  # its own SQLite store
    decided = china_date(int(dt.datetime.now(dt.UTC).timestamp() * 1000)) - dt.timedelta(days=21)
    rows = [{**r, "CF_JDRQ": decided.isoformat(), "CF_YXQ": (decided + dt.timedelta(days=365)).isoformat()}
            for r in penalty_rows(2, source_unit=UNIT, seed=6)]
    csv = tmp_path / "city-penalties.csv"
    write_csv(csv, load_catalog(bundled_catalog()).item("admin_penalty"), iter(rows))
    assert ok("import", str(csv), "--item", "admin_penalty", config=city)["accepted"] == 2
    subject = _subject(rows[0])
    rid = _record_id(city, subject)

    case = ok("check", "open", rid, "--reason", "与登记机关信息不一致", "--by", "operator-01", config=city)
    assert (case["kind"], case["state"], case["applicant"]) == ("check", "awaiting_source", "city:330100")
    assert ok("query", subject, config=city)["records"][0]["status"] == "checking"  # type: ignore[index]
    again = run("check", "open", rid, "--reason", "x", config=city)
    assert again.exit_code == 1 and "E_OBJECTION_OPEN" in again.stderr
    assert [c["case_id"] for c in ok("objection", "list", "--kind", "check", config=city)["cases"]] == [  # type: ignore[index, union-attr]
        case["case_id"]]
    assert ok("objection", "list", "--kind", "objection", config=city)["cases"] == []
    log = ok("objection", "show", str(case["case_id"]), config=city)
    assert [e["kind"] for e in log["events"]] == ["opened", "request_sent"]  # type: ignore[union-attr, index]
    answer = ok("objection", "answer", str(case["case_id"]), "confirm", config=city)
    assert answer["status"] == "confirmed" and answer["case"]["outcome"] == "confirmed"  # type: ignore[index]
    assert ok("query", subject, config=city)["records"][0]["status"] == "confirmed"  # type: ignore[index]

    unknown = run("conflicts", "check", "99", "--reason", "两个来源不一致", config=city)
    assert unknown.exit_code == 1 and "E_NOT_FOUND" in unknown.stderr
    at_source = run("check", "open", _record_id(dept, _subject(dept_rows[0])), "--reason", "自查", config=dept)
    assert at_source.exit_code == 3 and "E_CHECK_NOT_PLATFORM" in at_source.stderr


def test_evidence_whose_file_name_is_not_utf8_is_filed_under_a_readable_name(
        node_config: tuple[pathlib.Path, list[dict[str, str]]], tmp_path: pathlib.Path) -> None:
    import os

    config, rows = node_config
    subject = _subject(rows[0])
    evidence = tmp_path / os.fsdecode("处罚".encode("gbk") + b".pdf")  # a name made on a GBK system
    evidence.write_bytes(b"%PDF evidence")
    case = ok("objection", "file", _record_id(config, subject), "--by", subject, "--reason", "处罚内容有误",
              "--evidence", str(evidence), config=config)
    assert case["evidence_name"] == "\ufffd" * 4 + ".pdf"
