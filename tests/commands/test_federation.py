"""``credit-node downward …``: what the federation commands refuse before touching a node."""

from __future__ import annotations

import pathlib

import pytest
from click.testing import CliRunner

from node.cli import cli


@pytest.mark.parametrize("reason", ["", "   "])
def test_downward_revise_refuses_an_empty_reason_naming_the_option(tmp_path: pathlib.Path, reason: str) -> None:
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "node.yaml"), "downward", "revise", "r1",
                                      "--status", "revoked", "--reason", reason])
    assert result.exit_code == 2, result.output
    assert "--reason" in result.output and "empty" in result.output
    assert "Traceback" not in result.output
