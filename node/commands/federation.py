"""``credit-node route explain | reconcile | broker definitions``: the federation from the operator's seat."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import sys

import click

from node.cli import cli, config_path, emit_json, handle_errors, open_node
from node.errors import UsageError


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@cli.group()
def route() -> None:
    """How records travel: the rule applied at each hop."""


@route.command("explain")
@click.argument("record_id")
@click.option("--revision", type=int, default=None, help="a given revision (default: the latest held)")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def explain(ctx: click.Context, record_id: str, revision: int | None, as_json: bool) -> None:
    """Which rule moved RECORD_ID where, hop by hop (signer, rule, time), from its stored chain."""
    from node.routes import explain_route
    from node.routing import Router

    with open_node(ctx) as node:
        cfg = node.config
        route_ = explain_route(store=node.store, verifier=node.verifier, catalog=node.catalog,
                               router=Router(cfg.id, cfg.parent.id if cfg.parent else None), node_id=cfg.id,
                               record_id=record_id, revision=revision)
    if as_json:
        emit_json(route_.as_dict())
    else:
        state = "chain verified" if route_.verified else f"CHAIN DOES NOT VERIFY: {route_.problem}"
        click.echo(f"{route_.record_id} revision {route_.revision} ({route_.item}), held at {route_.held_at}: {state}")
        for h in route_.hops:
            if h.kind == "origin":
                click.echo(f"  {h.position}. {_when(h.signed_at_ms)}  made and signed by {h.signer} (origin)")
            else:
                click.echo(f"  {h.position}. {_when(h.signed_at_ms)}  {h.signer} → {h.to}  rule {h.rule_id}")
        for o in route_.onward:
            extra = f" after {o.attempts} attempt(s): {o.last_error}" if o.last_error else ""
            click.echo(f"  next: → {o.destination}  rule {o.rule_id}: {o.state}{extra}")
        if route_.stops_here:
            click.echo(f"  stops here: {route_.stops_here}")
    sys.exit(0 if route_.verified else 1)


@cli.group()
def broker() -> None:
    """The RabbitMQ side of amqp transport: users, permissions and topology."""


@broker.command("definitions")
@click.option("--edge", "edges", multiple=True, metavar="CHILD=PARENT",
              help="a child reporting to a parent over this broker (repeatable); default: this node and its "
                   "children, from --config")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="write here instead of stdout")
@click.pass_context
@handle_errors
def definitions(ctx: click.Context, edges: tuple[str, ...], out: str | None) -> None:
    """Broker definitions for ``rabbitmqctl import_definitions`` (users, permissions, queues, bindings)."""
    from node.transport.amqp_topology import Edge
    from node.transport.amqp_topology import definitions as build

    pairs: list[Edge] = []
    for edge in edges:
        child, sep, parent = edge.partition("=")
        if not sep or not child or not parent:
            raise UsageError(f"--edge {edge!r}: expected CHILD=PARENT", field="edge")
        pairs.append(Edge(child, parent))
    if not pairs:
        from node.config import load_config

        cfg = load_config(config_path(ctx))
        pairs = [Edge(c.id, cfg.id) for c in cfg.children]
        if not pairs:
            raise UsageError("this node has no children; name the edges with --edge CHILD=PARENT")
    text = json.dumps(build(pairs), indent=1, ensure_ascii=False)
    if out:
        pathlib.Path(out).write_text(text + "\n", encoding="utf-8")
        click.echo(f"wrote {out}")
    else:
        click.echo(text)
