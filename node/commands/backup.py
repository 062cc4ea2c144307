"""``credit-node backup create | verify | restore``: the store in one file, proved restorable, restored.

- ``create OUT``: a consistent copy of the store (the node may be running) into the new file OUT
  (SQLite, mode 0600), with its manifest and SHA-256; logged in the audit log;
- ``verify FILE``: the restore drill (恢复演练): FILE restored into a scratch store and checked whole
  (rows and log heads as the manifest says, every signature chain, both hash chains); FILE is
  not changed;
- ``restore FILE``: FILE copied into this node's store, which must be empty; then checked as
  ``verify`` checks.

Exit codes: 0 done (and whole); 1 the copy or the restored store failed a check; 2 usage (OUT
exists, FILE no backup, a backup of another node, a store not empty); 4 the store unavailable.
See docs/operations.md.
"""

from __future__ import annotations

import pathlib
import sys
from typing import TYPE_CHECKING

import click

from node.cli import cli, emit_json, handle_errors, node_config, open_node

if TYPE_CHECKING:
    from node.backup import DrillReport

_FILE = click.Path(exists=True, dir_okay=False, path_type=pathlib.Path)


@cli.group()
def backup() -> None:
    """Backups of the store (定期备份) and the restore drill (恢复演练)."""


@backup.command("create")
@click.argument("out", type=click.Path(dir_okay=False, path_type=pathlib.Path))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def create(ctx: click.Context, out: pathlib.Path, as_json: bool) -> None:
    """Copy the store, as it is at one moment, into the new file OUT."""
    from node.backup import create_backup
    from node.store import AuditEvent

    with open_node(ctx) as node:
        manifest, digest = create_backup(node.store.engine, node.config.id, out,
                                           signer=node.identity.signing_cert_der)
        node.store.audit.record(AuditEvent(actor=node.config.id, action="backup", subject=out.name, detail={
            "sha256": digest, "record_revisions": manifest.tables.get("record_revisions", 0)}))
    if as_json:
        emit_json({"file": str(out), "sha256": digest, **manifest.as_dict()})
        return
    click.echo(f"backup of {manifest.node_id} written to {out}: {manifest.tables.get('record_revisions', 0)} "
               f"record revisions, audit log to seq {manifest.audit_head}, query log to seq {manifest.query_head}")
    click.echo(f"sha256 {digest}")


@backup.command("verify")
@click.argument("file", type=_FILE)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def verify(ctx: click.Context, file: pathlib.Path, as_json: bool) -> None:
    """The restore drill: restore FILE into a scratch store and check it whole."""
    from node.app import load_trust
    from node.backup import drill
    from node.identity import load_identity

    config = node_config(ctx)
    report = drill(file, load_trust(config, load_identity(config.path(config.identity.dir))))
    _report(report, f"backup {file}", as_json)


@backup.command("restore")
@click.argument("file", type=_FILE)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def restore(ctx: click.Context, file: pathlib.Path, as_json: bool) -> None:
    """Copy FILE into this node's store (which must be empty), then check the result."""
    from node.backup import restore as restore_backup

    with open_node(ctx) as node:
        report = restore_backup(file, node.store, node.config.id, node.trust)
    _report(report, "restored store", as_json)


def _report(report: DrillReport, what: str, as_json: bool) -> None:
    if as_json:
        emit_json({"ok": report.ok, "records": report.records, "manifest": report.manifest.as_dict(),
                   "failures": [f.__dict__ for f in report.findings]})
    else:
        for f in report.findings:
            click.echo(f"FAIL {f.kind} {f.ref}: {f.code}: {f.message}")
        m = report.manifest
        click.echo(f"{what} (node {m.node_id}, taken {m.created_at}): {report.records} record revisions verified, "
                   f"{'OK' if report.ok else f'{len(report.findings)} failure(s)'}")
    sys.exit(0 if report.ok else 1)
