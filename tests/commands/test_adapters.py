"""``credit-node submit``: what fails before anything is sent is told as itself; what the node
answers is printed by row."""

from __future__ import annotations

import pathlib
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from node.cli import cli
from node.errors import Problem


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


class _AnsweringPusher:
    """Stands for the node: each row accepted with a warning, except row 3, rejected with one too."""

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        pass

    def __enter__(self) -> _AnsweringPusher:
        return self

    def __exit__(self, *_exc: object) -> None:
        pass

    def push(self, _item: str, rows: Iterable[tuple[int, Any]]) -> Iterator[Any]:
        from adapters.api_client import RowAck

        for number, _values in rows:
            warning = Problem("W_FIELD_UNKNOWN", "", "columns not in admin_penalty ignored: BEIZHU", number, True)
            problems = (Problem("E_FIELD_DATE", "CF_JDRQ", "no such date", number),) if number == 3 else ()
            yield RowAck(number, "rejected" if problems else "accepted", "", 0, problems, (warning,))


def test_submit_prints_the_warnings_the_node_answers_with_after_the_refusals(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("adapters.api_client.Pusher", _AnsweringPusher)
    (tmp_path / "id").mkdir()
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"CF_WSH": "x"}\n' * 55, encoding="utf-8")
    result = CliRunner().invoke(cli, ["submit", str(rows), "--item", "admin_penalty", "--target", "127.0.0.1:1",
                                      "--identity", str(tmp_path / "id")])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{rows}: 54 accepted, 0 duplicates, 1 rejected, 55 warnings"
    assert lines[1] == "  row 3 CF_JDRQ: E_FIELD_DATE: no such date"
    assert lines[2] == "  row 1: W_FIELD_UNKNOWN: columns not in admin_penalty ignored: BEIZHU (accepted with a warning)"
    assert lines[4] == "  row 3: W_FIELD_UNKNOWN: columns not in admin_penalty ignored: BEIZHU (warning)"
    assert lines[-1] == "  … 5 more warnings (use --json for the first 1000)" and len(lines) == 2 + 50 + 1


class _SilentPusher(_AnsweringPusher):
    """Stands for the node: every row accepted, without a word."""

    def push(self, _item: str, rows: Iterable[tuple[int, Any]]) -> Iterator[Any]:
        from adapters.api_client import RowAck

        for number, _values in rows:
            yield RowAck(number, "accepted", "", 0, (), ())


def test_submit_names_a_hidden_row_of_a_workbook_it_sent(tmp_path: pathlib.Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import openpyxl

    from node.catalog import load_catalog
    from node.provisioning import bundled_catalog
    from node.sampledata import penalty_rows, unit_uscc

    monkeypatch.setattr("adapters.api_client.Pusher", _SilentPusher)
    (tmp_path / "id").mkdir()
    path = tmp_path / "rows.xlsx"
    fields = load_catalog(bundled_catalog()).item("admin_penalty").fields
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append([f.name for f in fields])
    for row in penalty_rows(3, source_unit=unit_uscc("330102", "MB000001")):
        ws.append([row.get(f.code, "") for f in fields])
    ws.row_dimensions[3].hidden = True
    wb.save(path)
    result = CliRunner().invoke(cli, ["submit", str(path), "--item", "admin_penalty", "--target", "127.0.0.1:1",
                                      "--identity", str(tmp_path / "id")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{path}: 3 accepted, 0 duplicates, 0 rejected, 1 warnings"
    assert lines[1].startswith("  row 3: W_ROW_HIDDEN: row 3 is hidden in the sheet") and len(lines) == 2
    assert lines[1].endswith("(accepted with a warning)")


def test_a_database_adapter_setting_that_cannot_work_is_named_by_its_dotted_path(tmp_path: pathlib.Path) -> None:
    import json

    from sqlalchemy import create_engine, text

    from node.provisioning import init_node

    source = tmp_path / "dept.db"
    engine = create_engine(f"sqlite:///{source}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE cf (id INTEGER PRIMARY KEY, updated_at TIMESTAMP NOT NULL)"))
    engine.dispose()
    cfg = init_node(tmp_path / "n", node_id="dept:330102:scjgj", level="department", unit="11330102MB0000019G")
    with cfg.open("a", encoding="utf-8") as fh:
        fh.write(f"adapters:\n- kind: file\n  dir: drop\n  item: admin_penalty\n"
                 f"- kind: database\n  item: admin_penalty\n  url: 'sqlite:///{source}'\n  table: cf\n"
                 f"  watermark: updated_at\n  columns: {{CF_XDR_MC: mingcheng}}\n")
    result = CliRunner().invoke(cli, ["--config", str(cfg), "adapters", "run", "--until-idle", "--json",
                                      "--name", "database:cf", "--log-level", "ERROR"])
    assert result.exit_code == 2, result.output
    error = json.loads(result.stdout)["error"]
    assert (error["code"], error["field"]) == ("E_CONFIG", "adapters[1].columns.CF_XDR_MC")
    assert "'mingcheng'" in error["message"] and "Traceback" not in result.output


def test_run_in_the_foreground_with_no_adapters_configured_is_refused_at_once(tmp_path: pathlib.Path) -> None:
    import json

    from node.provisioning import init_node

    cfg = init_node(tmp_path / "n", node_id="dept:330102:scjgj", level="department", unit="11330102MB0000019G")
    # Without the refusal this waits for SIGTERM, polling nothing, as if it were taking files in.
    result = CliRunner().invoke(cli, ["--config", str(cfg), "adapters", "run", "--json", "--log-level", "ERROR"])
    assert result.exit_code == 2, result.output
    error = json.loads(result.stdout)["error"]
    assert (error["code"], error["field"]) == ("E_CONFIG", "adapters")
