"""`--help` says what the docs say the commands do: an operator finds a command from the help alone."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from node.cli import cli


def _help(*args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return re.sub(r"\s+", " ", result.output)


@pytest.mark.parametrize(("command", "words"), [
    # docs/lifecycle.md: the case's limit and its extension, the withdrawal of a statement
    (("objection",), ("limit and its extension", "withdrawal")),
    # docs/lifecycle.md, "Platform checks": both sides of a conflict
    (("check",), ("conflicts check",)),
    # docs/federation.md, "Reconciliation": round 1 carries the refusal tallies for report sources above
    (("reconcile",), ("refusal tallies", "report sources")),
    # docs/adapters.md: above a department, refused counts come from the children's reconciliation
    (("report", "sources"), ("reconcile",)),
])
def test_help_names_what_the_docs_promise(command: tuple[str, ...], words: tuple[str, ...]) -> None:
    text = _help(*command)
    for word in words:
        assert word in text, (command, word, text)

