"""``credit-node catalog``: validate a catalogue, write reporting templates."""

from __future__ import annotations

import pathlib
import shutil

import pytest
from click.testing import CliRunner

from node.cli import cli

CATALOG_DIR = pathlib.Path(__file__).resolve().parents[2] / "exchange_config" / "catalog"


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_template_refuses_to_overwrite_an_existing_file(tmp_path: pathlib.Path, fmt: str) -> None:
    out = tmp_path / f"filled.{fmt}"
    out.write_bytes(b"a department's own rows")
    result = CliRunner().invoke(cli, ["catalog", "template", "admin_penalty", "--format", fmt, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert str(out) in result.output and "--force" in result.output and "Traceback" not in result.output
    assert out.read_bytes() == b"a department's own rows"


def test_template_replaces_an_existing_file_with_force(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "t.csv"
    out.write_text("old")
    result = CliRunner().invoke(cli, ["catalog", "template", "admin_penalty", "--out", str(out), "--force"])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8-sig").startswith("行政相对人名称")


def test_validate_names_the_item_file_that_is_not_valid_yaml(tmp_path: pathlib.Path) -> None:
    catalog = tmp_path / "catalog"
    shutil.copytree(CATALOG_DIR, catalog)
    (catalog / "red_list.yaml").write_text("code: red_list\n  bad: [\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["catalog", "validate", str(catalog)])
    assert result.exit_code == 2
    assert result.output.startswith("error: E_CATALOG: red_list.yaml: not valid YAML: ")
    assert result.output.count("\n") == 1  # one line, without PyYAML's quoted excerpt


def test_validate_names_the_item_file_of_a_schema_error(tmp_path: pathlib.Path) -> None:
    catalog = tmp_path / "catalog"
    shutil.copytree(CATALOG_DIR, catalog)
    text = (catalog / "red_list.yaml").read_text(encoding="utf-8").replace("name: 守信红名单", "name: [守信红名单]")
    (catalog / "red_list.yaml").write_text(text, encoding="utf-8")
    result = CliRunner().invoke(cli, ["catalog", "validate", str(catalog)])
    assert result.exit_code == 2
    assert "red_list.yaml: items.red_list.name: expected a string" in result.output


@pytest.mark.parametrize("text", ["a,b\n1,2\n", "- one\n- two\n"])
def test_validating_a_file_that_is_no_catalogue_names_the_file(tmp_path: pathlib.Path, text: str) -> None:
    import json

    path = tmp_path / "行政处罚.csv"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(cli, ["catalog", "validate", str(path), "--json"])
    assert result.exit_code == 2, result.output
    message = json.loads(result.stdout)["error"]["message"]
    # It said only ": expected a mapping, got a string", naming neither the file nor where.
    assert message.startswith("行政处罚.csv: ") and "expected a mapping" in message, message
