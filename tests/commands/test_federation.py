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


def test_downward_release_on_a_node_without_a_catalogue_authority_is_a_configuration_error(
        tmp_path: pathlib.Path) -> None:
    from node.provisioning import bundled_catalog, init_node

    cfg = init_node(tmp_path / "city", node_id="city:330100", level="city")  # catalog.authority unset
    result = CliRunner().invoke(cli, ["--config", str(cfg), "downward", "release", str(bundled_catalog()), "--json"])
    assert result.exit_code == 2, result.output
    assert "E_CONFIG [catalog.authority]: catalog.authority is not set" in result.stderr
    assert not (tmp_path / "city" / "catalog-releases").exists()


@pytest.mark.parametrize("edge", ["foo=bar", "dept:330102:scjgj=gov:330100:fgw", "city:330100=dept:330102:scjgj",
                                  "dept:330102:scjgj=dept:330102:other"])
def test_broker_definitions_refuse_an_edge_that_is_not_a_child_node_and_its_parent(edge: str) -> None:
    # Accepted, it made broker users and queues for names no node has, or a child above its parent:
    # definitions imported into RabbitMQ that no node could ever use.
    result = CliRunner().invoke(cli, ["broker", "definitions", "--edge", edge])
    assert result.exit_code == 2, result.output
    assert "E_USAGE [edge]" in result.stderr and repr(edge) in result.stderr
    assert "Traceback" not in result.output


def test_broker_definitions_take_a_department_reporting_to_its_district() -> None:
    result = CliRunner().invoke(cli, ["broker", "definitions", "--edge", "dept:330102:scjgj=district:330102"])
    assert result.exit_code == 0, result.output
