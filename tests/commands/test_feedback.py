"""credit-node rejections list: what an operator's list of refused rows shows."""

from __future__ import annotations

import json
import pathlib

from click.testing import CliRunner

from node.catalog import load_catalog
from node.cli import cli
from node.provisioning import bundled_catalog
from node.sampledata import penalty_rows, unit_uscc, write_csv

UNIT = unit_uscc("330102", "MB000001")
ID = "11010519491231002X"


def test_rejections_list_masks_a_persons_id_number_in_the_record_key(tmp_path: pathlib.Path) -> None:
    runner = CliRunner()
    node = tmp_path / "dept"
    assert runner.invoke(cli, ["init", str(node), "--id", "dept:330102:scjgj", "--level", "department",
                               "--unit", UNIT]).exit_code == 0
    item = load_catalog(bundled_catalog()).item("admin_penalty")
    rows = list(penalty_rows(2, source_unit=UNIT))
    person = {k: "" for k in ("CF_XDR_SHXYM", "CF_FRDB", "CF_FR_ZJLX", "CF_FR_ZJHM")}
    rows[0] |= {**person, "CF_XDR_MC": "张三", "CF_XDR_LB": "自然人", "CF_XDR_ZJLX": "身份证", "CF_XDR_ZJHM": ID,
                "CF_CFLB": "批评"}  # refused: not a 处罚类别, its key read
    write_csv(tmp_path / "p.csv", item, rows)
    config = ["--config", str(node / "node.yaml")]
    assert runner.invoke(cli, [*config, "import", str(tmp_path / "p.csv"), "--item", "admin_penalty"]).exit_code == 1
    listed = runner.invoke(cli, [*config, "rejections", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    [refused] = json.loads(listed.stdout)
    assert refused["code"] == "E_FIELD_ENUM"
    assert refused["record_key"].endswith(" / 1101**********002X"), refused
    assert ID not in listed.stdout
    assert ID not in runner.invoke(cli, [*config, "rejections", "list"]).stdout


def test_rejections_list_shows_an_organisations_uscc_in_the_record_key() -> None:
    from node.rejection import shown_record_key

    item = load_catalog(bundled_catalog()).item("admin_penalty")
    assert shown_record_key("X1\x1f91350100M000100Y43", item) == "X1 / 91350100M000100Y43"
    assert shown_record_key("X1\x1fE12345678", item) == "X1 / E1*****78"  # a passport number
    assert shown_record_key(f"X1\x1f{ID}", None) == "X1 / 1101**********002X"  # item no longer catalogued
    assert shown_record_key("row:3@p.csv", item) == "row:3@p.csv"


def test_an_operator_closes_rejections_that_will_never_be_corrected_with_a_reason_on_the_record(
        tmp_path: pathlib.Path) -> None:
    runner = CliRunner()
    node = tmp_path / "dept"
    assert runner.invoke(cli, ["init", str(node), "--id", "dept:330102:scjgj", "--level", "department",
                               "--unit", UNIT]).exit_code == 0
    item = load_catalog(bundled_catalog()).item("admin_penalty")
    write_csv(tmp_path / "p.csv", item, penalty_rows(40, source_unit=UNIT, bad_every=10))
    config = ["--config", str(node / "node.yaml")]
    assert runner.invoke(cli, [*config, "import", str(tmp_path / "p.csv"), "--item", "admin_penalty"]).exit_code == 1
    first, second, *rest = [r["id"] for r in json.loads(runner.invoke(cli, [*config, "rejections", "list", "--open",
                                                                           "--json"]).stdout)]
    closed = runner.invoke(cli, [*config, "rejections", "close", str(first), str(second), "--reason",
                                 "两行已从台账删除", "--json"])
    assert closed.exit_code == 0, closed.output
    assert json.loads(closed.stdout) == {"closed": [first, second], "not_open": []}
    still_open = [r["id"] for r in json.loads(runner.invoke(cli, [*config, "rejections", "list", "--open",
                                                                  "--json"]).stdout)]
    assert still_open == rest
    listed = {r["id"]: r for r in json.loads(runner.invoke(cli, [*config, "rejections", "list", "--json"]).stdout)}
    assert listed[first]["closed_by"] == "operator"

    again = runner.invoke(cli, [*config, "rejections", "close", str(first), "999999", "--reason", "x"])
    assert again.exit_code == 1
    assert f"not open (unknown, or closed already): #{first}, #999999" in again.output
    blank = runner.invoke(cli, [*config, "rejections", "close", str(rest[0]), "--reason", "  "])
    assert blank.exit_code == 2

    import sqlite3
    with sqlite3.connect(node / "node.db") as db:
        [(actor, detail)] = db.execute(
            "SELECT actor, detail FROM audit_log WHERE action = 'rejections.close'").fetchall()
    assert actor.startswith("cli") and json.loads(detail) == {"ids": [first, second], "reason": "两行已从台账删除"}
