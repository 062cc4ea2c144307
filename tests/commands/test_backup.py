"""credit-node backup create | verify | restore, through CliRunner."""

from __future__ import annotations

import json
import pathlib
import sqlite3

import pytest
import yaml
from click.testing import CliRunner

from node.catalog import load_catalog
from node.cli import cli
from node.provisioning import bundled_catalog
from node.sampledata import penalty_rows, unit_uscc, write_csv

UNIT = unit_uscc("330102", "MB000001")


@pytest.fixture
def node_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "dept"), "--id", "dept:330102:scjgj",
                                      "--level", "department", "--unit", UNIT])
    assert result.exit_code == 0, result.output
    item = load_catalog(bundled_catalog()).item("admin_penalty")
    write_csv(tmp_path / "p.csv", item, penalty_rows(25, source_unit=UNIT))
    imported = run(tmp_path / "dept" / "node.yaml", "import", str(tmp_path / "p.csv"), "--item", "admin_penalty")
    assert imported.exit_code == 0, imported.output
    return tmp_path / "dept"


def run(config: pathlib.Path, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, ["--config", str(config), *args])


def test_create_verify_and_restore_from_the_operators_seat(node_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "b.db"
    created = run(node_dir / "node.yaml", "backup", "create", str(out), "--json")
    assert created.exit_code == 0, created.output
    made = json.loads(created.output)
    assert made["format"] == "credit-node-backup/1" and made["node_id"] == "dept:330102:scjgj"
    assert made["tables"]["record_revisions"] == 25 and len(made["sha256"]) == 64

    checked = run(node_dir / "node.yaml", "backup", "verify", str(out))
    assert checked.exit_code == 0, checked.output
    assert "25 record revisions verified, OK" in checked.output

    data = yaml.safe_load((node_dir / "node.yaml").read_text(encoding="utf-8"))
    data["store"]["url"] = "sqlite:///restored.db"
    other = node_dir / "restored.yaml"
    other.write_text(yaml.safe_dump(data), encoding="utf-8")
    restored = run(other, "backup", "restore", str(out), "--json")
    assert restored.exit_code == 0, restored.output
    assert json.loads(restored.output)["records"] == 25
    assert run(other, "verify").exit_code == 0

    audit = sqlite3.connect(node_dir / "node.db").execute(
        "SELECT subject FROM audit_log WHERE action = 'backup'").fetchall()
    assert audit == [("b.db",)]  # who took the data out, and where to, is on the record


def test_a_damaged_backup_exits_1_naming_the_record(node_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "b.db"
    assert run(node_dir / "node.yaml", "backup", "create", str(out)).exit_code == 0
    with sqlite3.connect(out) as db:
        rid, rev = db.execute("SELECT record_id, revision FROM record_revisions LIMIT 1").fetchone()
        db.execute("UPDATE record_revisions SET body_digest = zeroblob(32) WHERE record_id = ?", (rid,))
    checked = run(node_dir / "node.yaml", "backup", "verify", str(out))
    assert checked.exit_code == 1
    assert f"FAIL record {rid}@{rev}: E_BODY_MISMATCH" in checked.output


def test_usage_errors_are_one_line_with_exit_2(node_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    taken = tmp_path / "taken.db"
    taken.write_bytes(b"x")
    over = run(node_dir / "node.yaml", "backup", "create", str(taken), "--json")
    assert over.exit_code == 2
    assert json.loads(over.stdout)["error"]["code"] == "E_USAGE" and taken.read_bytes() == b"x"
    into_full = run(node_dir / "node.yaml", "backup", "restore", str(taken))
    assert into_full.exit_code == 2 and "not a node backup" in into_full.output
    assert "Traceback" not in over.output + into_full.output


def test_verify_on_another_node_of_the_federation_passes_the_records_this_node_signed(
        tmp_path: pathlib.Path) -> None:
    city = CliRunner().invoke(cli, ["init", str(tmp_path / "city"), "--id", "city:330100", "--level", "city"])
    assert city.exit_code == 0, city.output
    dept = CliRunner().invoke(cli, ["init", str(tmp_path / "dept"), "--id", "dept:330102:scjgj", "--level",
                                    "department", "--unit", UNIT, "--ca", str(tmp_path / "city" / "ca")])
    assert dept.exit_code == 0, dept.output
    write_csv(tmp_path / "p.csv", load_catalog(bundled_catalog()).item("admin_penalty"), penalty_rows(5, source_unit=UNIT))
    assert run(tmp_path / "dept" / "node.yaml", "import", str(tmp_path / "p.csv"), "--item", "admin_penalty").exit_code == 0
    out = tmp_path / "b.db"
    assert run(tmp_path / "dept" / "node.yaml", "backup", "create", str(out)).exit_code == 0
    checked = run(tmp_path / "city" / "node.yaml", "backup", "verify", str(out))
    assert checked.exit_code == 0, checked.output
    assert "5 record revisions verified, OK" in checked.output
