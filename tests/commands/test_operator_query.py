"""credit-node query: the operator's own look at a subject's records is a query-log entry like
any other non-public look (DOMAIN §4: every query of non-public information is logged)."""

from __future__ import annotations

import json
import pathlib

from click.testing import CliRunner, Result

from node.catalog import load_catalog
from node.cli import cli
from node.provisioning import bundled_catalog
from node.sampledata import penalty_rows, unit_uscc, write_csv
from node.store import Store

UNIT = unit_uscc("330102", "MB000001")


def run(node_dir: pathlib.Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(node_dir / "node.yaml"), *args])


def test_an_operator_query_is_logged_with_its_purpose_before_it_is_shown(tmp_path: pathlib.Path) -> None:
    node_dir = tmp_path / "dept"
    made = CliRunner().invoke(cli, ["init", str(node_dir), "--id", "dept:330102:scjgj", "--level", "department",
                                    "--unit", UNIT])
    assert made.exit_code == 0, made.output
    item = load_catalog(bundled_catalog()).item("admin_penalty")
    rows = list(penalty_rows(3, source_unit=UNIT))
    write_csv(tmp_path / "a.csv", item, iter(rows))
    assert run(node_dir, "import", str(tmp_path / "a.csv"), "--item", "admin_penalty").exit_code == 0
    subject = rows[0].get("CF_XDR_SHXYM") or rows[0]["CF_XDR_ZJHM"]

    shown = run(node_dir, "query", subject, "--purpose", "核对异议材料", "--json")
    assert shown.exit_code == 0, shown.output
    count = len(json.loads(shown.output)["records"])
    assert count >= 1
    run(node_dir, "query", subject, "--item", "admin_penalty")

    with Store.open(f"sqlite:///{node_dir / 'node.db'}") as store:
        entries = list(store.queries.iter())
    assert [(e.role, e.purpose, e.subject, list(e.items), e.result_count) for e in entries] == [
        ("operator", "核对异议材料", subject, [], count), ("operator", "", subject, ["admin_penalty"], count)]
    assert all(e.caller.startswith("cli") and e.detail["op"] == "store_query" for e in entries)
    assert run(node_dir, "audit", "verify").exit_code == 0  # the chain takes the operator's rows like others
