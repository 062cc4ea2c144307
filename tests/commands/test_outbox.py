"""credit-node outbox: the dead letters from the operator's seat."""

from __future__ import annotations

import json
import pathlib

from click.testing import CliRunner

from node.cli import cli


def test_replay_given_letters_and_all_is_refused_rather_than_replaying_every_letter(tmp_path: pathlib.Path) -> None:
    from node.provisioning import init_node

    cfg = init_node(tmp_path / "n", node_id="city:330100", level="city")
    result = CliRunner().invoke(cli, ["--config", str(cfg), "outbox", "replay", "7", "--all", "--json"])
    # --all won, and every dead letter was sent again where the operator named one.
    assert result.exit_code == 2, result.output
    error = json.loads(result.stdout)["error"]
    assert (error["code"], error["field"]) == ("E_USAGE", "all")
