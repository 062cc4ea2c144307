"""``credit-node route explain | reconcile | broker definitions``: the federation from the operator's seat."""

from __future__ import annotations

import json
import pathlib
import sys
from typing import TYPE_CHECKING

import click

from node.cli import STORE_ID, cli, config_path, emit_json, handle_errors, not_blank, open_node, when
from node.errors import UsageError

if TYPE_CHECKING:
    from node.transport.amqp_topology import Edge


@cli.group()
def route() -> None:
    """How records travel: the rule applied at each hop."""


@route.command("explain")
@click.argument("record_id")
@click.option("--revision", type=STORE_ID, default=None, help="a given revision (default: the latest held)")
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
                click.echo(f"  {h.position}. {when(h.signed_at_ms, millis=True)}  made and signed by {h.signer} (origin)")
            else:
                click.echo(f"  {h.position}. {when(h.signed_at_ms, millis=True)}  {h.signer} → {h.to}  rule {h.rule_id}")
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

    pairs = [_edge(edge) for edge in edges]
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


def _edge(text: str) -> Edge:
    """``--edge CHILD=PARENT``: two node ids, the child's level below its parent's (dept < district <
    city < province); anything else would make broker users and queues no node ever uses."""
    from node.errors import ConfigError
    from node.nodeid import LEVELS, parse_node_id
    from node.transport.amqp_topology import Edge

    child, sep, parent = text.partition("=")
    if not sep or not child or not parent:
        raise UsageError(f"--edge {text!r}: expected CHILD=PARENT", field="edge")
    try:
        ids = parse_node_id(child), parse_node_id(parent)
    except ConfigError as exc:
        raise UsageError(f"--edge {text!r}: {exc.message}", field="edge") from None
    for given, parsed in zip((child, parent), ids, strict=True):
        if not parsed.is_node:
            raise UsageError(f"--edge {text!r}: {given!r} is a caller's id, not a node's "
                             "(dept:330102:scjgj, district:330102, city:330100 …)", field="edge")
    if LEVELS.index(ids[0].kind) >= LEVELS.index(ids[1].kind):
        raise UsageError(f"--edge {text!r}: a {ids[0].kind} does not report to a {ids[1].kind} "
                         "(CHILD=PARENT, the child first)", field="edge")
    return Edge(child, parent)


@cli.command("reconcile")
@click.option("--with", "with_", type=click.Choice(["parent"]), default="parent", show_default=True,
              help="whom to compare with")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def reconcile(ctx: click.Context, with_: str, as_json: bool) -> None:
    """Compare per-item, per-day digests with the parent; re-enqueue what it lacks; send the refusal tallies.

    The tallies (distinct refused facts per origin node, source unit, item and day: this node's and those
    held from below) are what 'report sources' at the parent counts as refused.

    Exit 0 in sync (or repaired by replay), 1 when something no replay can fix remains (revisions only
    the parent holds, or held with different bodies, or missing there and waiting in this node's dead
    letters for `outbox replay`), 4 when the parent does not answer.
    """
    from node.reconciliation import reconcile_with_parent
    from node.transport.reconciliation_client import peer_for

    with open_node(ctx) as node:
        peer = peer_for(node)  # an unreachable parent: PeerUnavailableError, exit 4
        try:
            report = reconcile_with_parent(node, peer)
        finally:
            peer.close()
    if as_json:
        emit_json(report.as_dict())
    else:
        click.echo(f"compared {report.buckets} (item, day) bucket(s) with {report.parent}: "
                   + ("in sync" if report.in_sync else f"{len(report.differing)} differ"))
        for item, day in report.differing[:20]:
            click.echo(f"  differs: {item} {day or '(no date)'}")
        if report.missing:
            click.echo(f"  {report.missing} revision(s) missing at the parent: {report.replayed} replayed, "
                       f"{report.in_flight} already on their way, {report.dead_lettered} in the dead letters "
                       "(replay them with `outbox replay`)")
        for rid, rev in report.parent_only[:20]:
            click.echo(f"  only at the parent: {rid}@{rev}")
        for rid, rev in report.conflicting[:20]:
            click.echo(f"  different bodies: {rid}@{rev}")
        if report.tallies_sent or report.tallies_ignored:
            click.echo(f"  refusal tallies: {report.tallies_sent} sent, {report.tallies_kept} kept, "
                       f"{report.tallies_ignored} ignored (the parent logs why)")
    sys.exit(1 if report.parent_only or report.conflicting or report.dead_lettered else 0)


@cli.group()
def downward() -> None:
    """What travels down the tree: revisions for a source, catalogue releases, notices."""


@downward.command("revise")
@click.argument("record_id")
@click.option("--status", required=True, help="the record's new status, e.g. revoked or corrected")
@click.option("--reason", required=True, callback=not_blank, help="why (kept in the revision and the audit log)")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def revise(ctx: click.Context, record_id: str, status: str, reason: str, as_json: bool) -> None:
    """Make a new signed revision of RECORD_ID here and send it up (routing) and down to its source."""
    from node.downward import Downward

    with open_node(ctx) as node:
        done = Downward(node).revise(record_id, status=status, reason=reason)
    if as_json:
        emit_json({"record_id": done.record_id, "revision": done.revision, "to": done.destinations})
    else:
        click.echo(f"{done.record_id} revision {done.revision} stored; on its way to {', '.join(done.destinations) or 'nobody'}")


@downward.command("release")
@click.argument("catalog_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def release(ctx: click.Context, catalog_dir: str, as_json: bool) -> None:
    """Sign CATALOG_DIR as the catalogue authority and release it to every node below."""
    from node.downward import Downward

    with open_node(ctx) as node:
        applied = Downward(node).publish_release(pathlib.Path(catalog_dir))
    if as_json:
        emit_json({"version": applied.version, "applied": applied.applied, "reason": applied.reason})
    else:
        click.echo(f"release {applied.version}: " + ("signed and released" if applied.applied else applied.reason))
    sys.exit(0 if applied.applied else 1)


@downward.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def downward_status(ctx: click.Context, as_json: bool) -> None:
    """The catalogue in use and released here, and the notices received from upstream."""
    from node.downward import Downward
    from node.releases import RUNNING_KEY

    with open_node(ctx) as node:
        releases = Downward(node).releases
        notices = [r for r in node.store.rejections.list_rejections() if r.row == 0 and "/" in r.batch_id]
        # What the node's last start loaded; a release held since is used from the next start,
        # which is what this process (a CLI, not the node) has just loaded.
        running = node.store.meta.get(RUNNING_KEY) or node.catalog.version
        data = {"running": running, "next_start": node.catalog.version, "release": releases.current_version(),
                "notices": [{"id": r.batch_id, "record_id": r.record_key, "code": r.code, "message": r.message,
                             "from": r.source} for r in notices]}
    if as_json:
        emit_json(data)
    else:
        pending = f"; the next start uses {data['next_start']}" if data["next_start"] != data["running"] else ""
        click.echo(f"catalogue running {data['running']}, newest release held {data['release'] or '-'}{pending}")
        for n in data["notices"]:  # type: ignore[attr-defined]
            click.echo(f"  notice {n['id']} from {n['from']}: {n['record_id']}: {n['code']}: {n['message']}")
