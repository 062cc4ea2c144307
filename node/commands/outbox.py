"""``credit-node outbox status | dead-letters | replay``: the forwarder's work from the operator's seat.

- ``status``: per destination, deliveries pending (and how old the oldest is) and dead;
- ``dead-letters``: deliveries that used up their retries (kind ``outbox``) and records received
  from a child that could not be accepted (kind ``inbound``), each with its code and reason;
- ``replay ID… | --all``: an ``outbox`` letter goes back to pending (the forwarder picks it up);
  an ``inbound`` letter is fed to the inbox again as its sender (after the cause was fixed, e.g.
  the child registered) and marked replayed if the inbox takes it now.

Exit codes: 0 done; 1 some letters could not be replayed (or unknown ids); 2 usage.
"""

from __future__ import annotations

import sys
import time

import click

from node.cli import STORE_ID, cli, emit_json, handle_errors, open_node
from node.errors import UsageError


@cli.group()
def outbox() -> None:
    """Deliveries to the parent and children: status, dead letters, replay."""


def _age(oldest_ms: int | None) -> str:
    if oldest_ms is None:
        return "-"
    seconds = max(0, time.time() - oldest_ms / 1000)
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f}min"


@outbox.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def status(ctx: click.Context, as_json: bool) -> None:
    """Pending and dead deliveries per destination."""
    with open_node(ctx) as node:
        per_destination = node.store.outbox.status()
        inbound = len(node.store.inbound.letters())
    if as_json:
        emit_json({"destinations": per_destination, "inbound_dead_letters": inbound})
        return
    if not per_destination:
        click.echo("outbox empty: nothing pending, nothing dead")
    for dest, st in sorted(per_destination.items()):
        click.echo(f"{dest}: {st['pending']} pending (oldest {_age(st['oldest_ms'])}), {st['dead']} dead")
    click.echo(f"inbound dead letters: {inbound}")


@outbox.command("dead-letters")
@click.option("--kind", type=click.Choice(["outbox", "inbound"]), default=None, help="only this kind")
@click.option("--all", "include_replayed", is_flag=True, help="include letters already replayed")
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def dead_letters(ctx: click.Context, kind: str | None, include_replayed: bool, limit: int | None,
                 as_json: bool) -> None:
    """Deliveries that gave up, and received records that could not be accepted."""
    with open_node(ctx) as node:
        letters = node.store.outbox.dead_letters(kind, include_replayed=include_replayed,  # type: ignore[arg-type]
                                                 limit=limit)
    if as_json:
        emit_json([{"id": d.id, "kind": d.kind, "record_id": d.record_id, "revision": d.revision,
                    "peer": d.destination_or_sender, "code": d.reason, "message": d.message,
                    "created_at_ms": d.created_at_ms, "replayed_at_ms": d.replayed_at_ms} for d in letters])
        return
    if not letters:
        click.echo("no dead letters")
    for d in letters:
        peer = ("to " if d.kind == "outbox" else "from ") + d.destination_or_sender
        replayed = " (replayed)" if d.replayed_at_ms else ""
        click.echo(f"#{d.id} {d.kind} {d.record_id or '-'}@{d.revision} {peer}: {d.reason}: {d.message}{replayed}")


@outbox.command("replay")
@click.argument("ids", nargs=-1, type=STORE_ID)
@click.option("--all", "replay_all", is_flag=True, help="every letter not replayed yet")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def replay(ctx: click.Context, ids: tuple[int, ...], replay_all: bool, as_json: bool) -> None:
    """Send dead letters again: outbox letters to their destination, inbound ones through the inbox."""
    from node.replay import replay_letters

    if not ids and not replay_all:
        raise UsageError("name the letters to replay (IDS), or --all")
    if ids and replay_all:  # --all would win: every letter sent again where some were named
        raise UsageError("name the letters to replay (IDS) or give --all, not both", field="all")
    with open_node(ctx) as node:
        report = replay_letters(node, None if replay_all else list(ids))
    if as_json:
        emit_json(report.as_dict())
    else:
        click.echo(f"replayed {len(report.requeued)} outbox letter(s), {len(report.accepted)} inbound letter(s)"
                   f" accepted now")
        for letter_id, reason in report.failed:
            click.echo(f"  #{letter_id}: not replayed: {reason}")
    sys.exit(1 if report.failed else 0)
