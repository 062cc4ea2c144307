"""``credit-node demo [--transport grpc|amqp]``: a whole federation on this machine (node/demo/run.py)."""

from __future__ import annotations

import pathlib
import sys

import click

from node.cli import cli, handle_errors


@cli.command("demo")
@click.option("--transport", type=click.Choice(["grpc", "amqp"]), default="grpc", show_default=True,
              help="between the nodes: grpc needs nothing else; amqp starts a private TLS RabbitMQ")
@click.option("--keep", is_flag=True, help="keep the temporary directory (configs, stores, logs)")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=None,
              help="work here instead of a new temporary directory")
@handle_errors
def demo(transport: str, keep: bool, directory: str | None) -> None:
    """Start a city, two districts and two departments, move the sample data up, check every step."""
    from node.demo.run import run_demo

    ok = run_demo(transport, keep=keep, directory=pathlib.Path(directory) if directory else None)  # type: ignore[arg-type]
    sys.exit(0 if ok else 1)
