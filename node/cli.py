"""The ``credit-node`` command: thin commands that parse, call one function, map errors to exits."""

from __future__ import annotations

import click


@click.group()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="CREDIT_NODE_CONFIG",
              help="node.yaml of the node to act on")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Federated exchange node for public credit information."""
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path


def main() -> None:
    cli(prog_name="credit-node")
