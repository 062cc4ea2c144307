"""Disclosure from the operator's seat: ``lookup``, ``verify-list`` (gRPC clients over mTLS), and
the node-side switches ``authz``, ``blocks``, ``sharing`` and ``audit verify`` (docs/access.md).

Exit codes (node/cli.py): 0 done; 1 problems found (``audit verify``); 2 usage; 3 refused (no
right, no purpose, an invalid authorisation code, blocked, rate limited, sharing suspended);
4 the node or a peer is unavailable.
"""

from __future__ import annotations

import pathlib
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from node.cli import (
    NODE_HELP,
    SECONDS,
    cli,
    cli_actor,
    emit_json,
    handle_errors,
    node_config,
    node_id,
    open_node,
    report,
    when,
)

T = TypeVar("T")

# What a subject code is made of: a USCC, an ID number, a passport or permit number.


# node.authz.MAX_DAYS, written out: importing node.authz loads the store (a third of a second for
# every command); tests/commands/test_access.py holds the two equal.
AUTHZ_MAX_DAYS = 366


def _call(fn: Callable[[], T]) -> T:
    """Run one RPC; a refusal (3), a wrong request (2) or an unreachable node (4) is its NodeError."""
    import grpc

    from node.transport.grpc_client import error_from_rpc

    try:
        return fn()
    except grpc.RpcError as exc:
        # Raised, not printed: the command's error handler says it (as JSON too) with its exit code.
        raise error_from_rpc(exc) from None


def _context(purpose: str, authz: str) -> Any:
    from node.records import pb

    return pb.CallerContext(purpose=purpose, authorization_code=authz)


def _stub(target: str, identity_dir: str, server_name: str | None, node: str | None) -> Any:
    from node.identity import load_identity
    from node.records import rpc
    from node.transport.grpc_client import open_channel

    channel = open_channel(target, load_identity(pathlib.Path(identity_dir)), server_name=server_name, node_id=node)
    return rpc.QueryStub(channel)  # type: ignore[no-untyped-call]


def _client_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--node", default=None, callback=node_id, help=NODE_HELP)(fn)
    fn = click.option("--server-name", default=None, help="name in the server's certificate, if not TARGET's host")(fn)
    fn = click.option("--identity", "identity_dir", required=True, type=click.Path(exists=True, file_okay=False),
                      help="directory with cert.pem, key.pem, ca.pem")(fn)
    fn = click.option("--target", required=True, help="HOST:PORT of the node")(fn)
    return fn


def _view_dict(v: Any) -> dict[str, object]:
    return {"record_id": v.record_id, "revision": v.revision, "item": v.item, "status": v.status,
            "class": v.disclosure_class, "subject_code": v.subject_code, "subject_name": v.subject_name,
            "decision_date": v.decision_date, "region": v.region, "marks": list(v.marks),
            "measures": list(v.measures), "signers": list(v.signers),
            "fields": {f.name: f.value for f in v.fields}}


@cli.command("lookup")
@click.argument("code")
@_client_options
@click.option("--purpose", default="", help="why you ask (required for gov and judicial callers)")
@click.option("--authz", default="", help="the subject's authorisation code (agency callers)")
@click.option("--item", "items", multiple=True, help="restrict to these items (repeatable)")
@click.option("--timeout", default=10.0, show_default=True, type=SECONDS, help="seconds")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def lookup(code: str, target: str, identity_dir: str, server_name: str | None, node: str | None, purpose: str,
           authz: str, items: tuple[str, ...], timeout: float, as_json: bool) -> None:
    """Records of one subject (USCC or ID number) that this caller may see, from a node."""
    from node.records import pb

    stub = _stub(target, identity_dir, server_name, node)
    request = pb.LookupRequest(subject_code=code, items=list(items), context=_context(purpose, authz))
    answer = _call(lambda: stub.Lookup(request, timeout=timeout))
    records = [_view_dict(v) for v in answer.records]
    if as_json:
        emit_json({"subject": answer.subject_code, "partial": answer.partial,
                   "unavailable_regions": list(answer.unavailable_regions), "records": records})
        return
    if answer.partial:
        click.echo(f"PARTIAL: no answer from {', '.join(answer.unavailable_regions)}")
    if not records:
        click.echo(f"{answer.subject_code}: no records you may see")
    for r in records:
        marks = f" [{', '.join(r['marks'])}]" if r["marks"] else ""  # type: ignore[arg-type]
        click.echo(f"{r['item']} {r['record_id']} rev {r['revision']} class {r['class']} {r['status']}{marks} "
                   f"from {r['region']}, signed by {' > '.join(r['signers'])}")  # type: ignore[arg-type]
        for name, value in r["fields"].items():  # type: ignore[attr-defined]
            click.echo(f"    {name}: {value}")


@cli.command("verify-list")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@_client_options
@click.option("--purpose", default="", help="why you check (required for gov callers)")
@click.option("--item", "items", multiple=True, help="list items to check against (default: every list)")
@click.option("--timeout", default=60.0, show_default=True, type=SECONDS, help="seconds")
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def verify_list(file: str, target: str, identity_dir: str, server_name: str | None, node: str | None, purpose: str,
                items: tuple[str, ...], timeout: float, as_json: bool) -> None:
    """核查: check many subjects against the red and black lists in one call."""
    from node.codelist import read_codes
    from node.records import pb

    codes = read_codes(pathlib.Path(file))
    stub = _stub(target, identity_dir, server_name, node)
    request = pb.VerifyListRequest(subject_codes=codes, items=list(items), context=_context(purpose, ""))
    answer = _call(lambda: stub.VerifyList(request, timeout=timeout))
    hits = [{"subject_code": h.subject_code, "subject_name": h.subject_name, "item": h.item,
             "record_id": h.record_id, "listed_on": h.listed_on, "measures": list(h.measures),
             "status": h.status, "marks": list(h.marks)}
            for h in answer.hits]
    if as_json:
        emit_json({"checked": answer.checked, "hits": hits, "unchecked": list(answer.unchecked)})
        return
    for h in hits:
        marked = f" [{'; '.join(h['marks'])}]" if h["marks"] else ""  # type: ignore[arg-type]
        click.echo(f"{h['subject_code']} {h['subject_name']}: {h['item']} since {h['listed_on']}{marked} "
                   f"({'; '.join(h['measures'])})")  # type: ignore[arg-type]
    click.echo(f"checked {answer.checked} subjects: {len(hits)} hit(s)")
    if answer.unchecked:
        shown = ", ".join(answer.unchecked[:10]) + (f" and {len(answer.unchecked) - 10} more" if len(answer.unchecked) > 10
                                                    else "")
        click.echo(f"{len(answer.unchecked)} code(s) carry no check digit (not a USCC or an 18-digit ID number), so "
                   f"a mistyped one reads as on no list: {shown}")


# --- node-side switches (need --config) ---------------------------------------------------------------
@cli.group()
def authz() -> None:
    """Authorisation codes (授权查询) a subject gives an agency for its class-B items."""


@authz.command("grant")
@click.argument("subject")
@click.option("--to", "grantee", required=True, help="the agency's certificate id, e.g. agency:bank1")
@click.option("--items", "items", required=True, multiple=True,
              help="items it may see (repeatable, or comma-separated)")
@click.option("--days", required=True, type=click.IntRange(1, AUTHZ_MAX_DAYS), help=f"validity in days (1-{AUTHZ_MAX_DAYS})")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def authz_grant(ctx: click.Context, subject: str, grantee: str, items: tuple[str, ...], days: int,
                as_json: bool) -> None:
    """Issue a code letting an agency see SUBJECT's items; the code is shown only now."""
    from node.authz import Authorizations

    wanted = [i for chunk in items for i in chunk.split(",")]
    with open_node(ctx) as node:
        grant = Authorizations(node.store).grant(subject, grantee, wanted, days, actor=cli_actor(),
                                                 known_items=node.catalog.items,
                                                 shared_only=[code for code, item in node.catalog.items.items()
                                                              if item.disclosure_class == "C"])
    now = grant.authorization.issued_at_ms
    if as_json:
        emit_json({"code": grant.code, **grant.authorization.as_dict(now)})
    else:
        a = grant.authorization
        click.echo(f"code {grant.code} (id {a.id}): {a.grantee} may see {', '.join(a.items)} of {a.subject} "
                   f"for {days} day(s)")


@authz.command("revoke")
@click.argument("code")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def authz_revoke(ctx: click.Context, code: str, as_json: bool) -> None:
    """Revoke a code (or its id, as ``authz list`` shows it)."""
    from node.authz import Authorizations

    with open_node(ctx) as node:
        a = Authorizations(node.store).revoke(code, actor=cli_actor())
    report(as_json, {"revoked": a.id, "grantee": a.grantee, "subject": a.subject},
           f"revoked {a.id} ({a.grantee} for {a.subject})")


@authz.command("list")
@click.option("--subject", default="", help="only codes of this subject")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def authz_list(ctx: click.Context, subject: str, as_json: bool) -> None:
    """Every code issued here (never the codes themselves: their ids)."""
    import time

    from node.authz import Authorizations

    with open_node(ctx) as node:
        grants = Authorizations(node.store).list(subject=subject)
    now = time.time_ns() // 1_000_000
    if as_json:
        emit_json([a.as_dict(now) for a in grants])
        return
    for a in grants:
        click.echo(f"{a.id} {a.state(now):8} {a.subject} → {a.grantee}: {', '.join(a.items)}")


@cli.group()
def blocks() -> None:
    """Addresses blocked after abnormal bursts of access (IP访问黑名单)."""


@blocks.command("list")
@click.option("--all", "include_lifted", is_flag=True, help="include lifted blocks")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def blocks_list(ctx: click.Context, include_lifted: bool, as_json: bool) -> None:
    """Addresses blocked now (with --all, lifted ones too): since when, which caller, why."""
    from node.abuse import Guard

    with open_node(ctx) as node:
        found = Guard(node.store, node.config.abuse).list(include_lifted=include_lifted)
    if as_json:
        emit_json([b.as_dict() for b in found])
        return
    for b in found:
        since = f"blocked since {when(b.since_ms, millis=True)}"
        state = since if b.lifted_at_ms is None else f"lifted at {when(b.lifted_at_ms, millis=True)} ({since})"
        click.echo(f"{b.address} {state} (caller {b.caller}): {b.reason}")
    if not found:
        click.echo("no blocks in force")


@blocks.command("lift")
@click.argument("address")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def blocks_lift(ctx: click.Context, address: str, as_json: bool) -> None:
    """Lift the block on ADDRESS (as ``blocks list`` shows it, e.g. ipv4:10.0.0.7, or a bare IP)."""
    from node.abuse import Guard, blocked_address

    address = blocked_address(address)  # before the store is opened: a typo is named at once
    with open_node(ctx) as node:
        n = Guard(node.store, node.config.abuse).lift(address, actor=cli_actor())
    report(as_json, {"address": address, "lifted": n}, f"lifted {n} block(s) on {address}")


@cli.group()
def sharing() -> None:
    """Stop or restart all disclosure at once; reporting keeps working (seed 004 第二十条)."""


@sharing.command("suspend")
@click.option("--reason", default="", help="why (kept in the audit log)")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def sharing_suspend(ctx: click.Context, reason: str, as_json: bool) -> None:
    """Stop all disclosure: Lookup and VerifyList refuse (E_SHARING_SUSPENDED); Submit goes on."""
    from node.abuse import SharingSwitch

    with open_node(ctx) as node:
        SharingSwitch(node.store).set(True, actor=cli_actor(), reason=reason)
    report(as_json, {"sharing": "suspended", "reason": reason},
           "sharing suspended: Lookup and VerifyList refuse with E_SHARING_SUSPENDED")


@sharing.command("resume")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def sharing_resume(ctx: click.Context, as_json: bool) -> None:
    """Disclose again after ``sharing suspend``."""
    from node.abuse import SharingSwitch

    with open_node(ctx) as node:
        SharingSwitch(node.store).set(False, actor=cli_actor())
    report(as_json, {"sharing": "resumed"}, "sharing resumed")


@cli.group()
def audit() -> None:
    """The hash-chained audit and query logs."""


@audit.command("verify")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def audit_verify(ctx: click.Context, as_json: bool) -> None:
    """Check both logs' hash chains: any edited, deleted or reordered row is named (exit 1)."""
    from node.store import Store

    config = node_config(ctx)
    with Store.open(config.store_url) as store:
        found = [("query_log", p.seq, p.reason) for p in store.queries.verify()]
        found += [("audit_log", p.seq, p.reason) for p in store.audit.verify()]
        rows = {"query_log": store.queries.chain.count(store.engine),
                "audit_log": store.audit.chain.count(store.engine)}
    if as_json:
        emit_json({"ok": not found, "rows": rows,
                   "problems": [{"log": log, "seq": seq, "reason": why} for log, seq, why in found]})
    else:
        for log, seq, why in found:
            click.echo(f"BAD {log} seq {seq}: {why}")
        click.echo(f"query log {rows['query_log']} rows, audit log {rows['audit_log']} rows: "
                   f"{'OK' if not found else f'{len(found)} problem(s)'}")
    sys.exit(1 if found else 0)
