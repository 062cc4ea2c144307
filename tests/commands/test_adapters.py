"""``credit-node submit``: what fails before anything is sent is told as itself."""

from __future__ import annotations

import pathlib

from click.testing import CliRunner

from node.cli import cli


def test_submitting_for_an_unknown_item_is_named_before_connecting(tmp_path: pathlib.Path) -> None:
    (tmp_path / "id").mkdir()
    rows = tmp_path / "rows.csv"
    rows.write_text("统一社会信用代码\n91330102MA2K3L4P5Q\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["submit", str(rows), "--item", "no_such_item", "--target", "127.0.0.1:1",
                                      "--identity", str(tmp_path / "id")])
    assert result.exit_code == 2, result.output
    assert "E_UNKNOWN_ITEM" in result.output and "Traceback" not in result.output


def test_a_json_lines_file_that_is_not_utf8_is_named(tmp_path: pathlib.Path) -> None:
    (tmp_path / "id").mkdir()
    rows = tmp_path / "rows.jsonl"
    rows.write_bytes(b'\xff\xfe{"CF_WSH": "x"}\n')
    result = CliRunner().invoke(cli, ["submit", str(rows), "--item", "admin_penalty", "--target", "127.0.0.1:1",
                                      "--identity", str(tmp_path / "id")])
    assert result.exit_code == 2, result.output
    assert "not UTF-8" in result.output and "Traceback" not in result.output


def test_run_until_idle_names_a_file_it_could_not_read_and_exits_1(tmp_path: pathlib.Path) -> None:
    import json

    from node.provisioning import init_node

    cfg = init_node(tmp_path / "n", node_id="dept:330102:scjgj", level="department", unit="11330102MB0000019G")
    with cfg.open("a", encoding="utf-8") as fh:
        fh.write("adapters:\n- kind: file\n  dir: drop\n  item: admin_penalty\n")
    (tmp_path / "n" / "drop").mkdir()
    (tmp_path / "n" / "drop" / "colours.csv").write_text("颜色\n红\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(cfg), "adapters", "run", "--until-idle", "--json",
                                      "--log-level", "ERROR"])
    assert result.exit_code == 1, result.output
    out = json.loads(result.output)
    assert [(f["file"], f["code"]) for f in out["failed_files"]] == [("colours.csv", "E_INPUT_HEADER_UNKNOWN")]


def test_a_pull_position_is_shown_as_its_values() -> None:
    from node.commands.adapters import _shown_position

    assert _shown_position([["datetime", "2026-11-20T08:00:00"], ["int", 2]]) == "2026-11-20T08:00:00, 2"
    assert _shown_position([["hex", "00ff"]]) == "00ff"
