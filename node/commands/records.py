"""``credit-node import | query | verify | show-config``: the node's records from the operator's seat."""

from __future__ import annotations

import contextlib
import pathlib
import signal
import sys
import threading
from collections.abc import Iterator

import click

from node.cli import INTERRUPTED, cli, cli_actor, config_path, emit_json, handle_errors, open_node
from node.errors import NodeError


class _Progress:
    """A progress bar on a terminal (bytes of the file read), silence elsewhere; rows committed."""

    def __init__(self, path: pathlib.Path, enabled: bool) -> None:
        self.read = 0
        self.committed = 0
        self.stop_asked = False
        self._bar = None
        if enabled:
            self._bar = click.progressbar(length=max(path.stat().st_size, 1), label=f"importing {path.name}",
                                          file=sys.stderr, show_pos=False, show_percent=True)
            self._bar.__enter__()

    def on_bytes(self, n: int) -> None:
        self.read += n

    def on_batch(self, rows: int) -> None:
        """After each batch's commit: the one place an asked stop is taken, so the count is exact."""
        self.committed += rows
        if self._bar is not None:
            self._bar.update(self.read - self._bar.pos)
        if self.stop_asked:
            raise _Stopped

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


class _Stopped(Exception):
    """A signal asked the import to stop; it stops between two batches."""


INTERRUPTED_EXIT = INTERRUPTED  # the shell's code for a command ended by Ctrl-C


@contextlib.contextmanager
def _stop_between_batches(progress: _Progress) -> Iterator[None]:
    """SIGINT or SIGTERM stops the import once the batch being committed is; a second one at once
    (the open transaction rolls back, so nothing is half-stored either way)."""

    def stop(_signum: int, _frame: object) -> None:
        if progress.stop_asked:
            raise KeyboardInterrupt
        progress.stop_asked = True

    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@cli.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--item", required=True, help="catalogue item, e.g. admin_penalty")
@click.option("--encoding", default=None, help="file encoding (default: detect UTF-8 / GB18030)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@click.pass_context
@handle_errors
def import_(ctx: click.Context, path: str, item: str, encoding: str | None, as_json: bool) -> None:
    """Import a CSV/XLSX file whose headers are Chinese field names or column codes."""
    file = pathlib.Path(path)
    with open_node(ctx) as node:
        progress = _Progress(file, enabled=sys.stderr.isatty() and not as_json)
        try:
            with _stop_between_batches(progress):
                summary = node.import_file(file, item, encoding=encoding, on_bytes=progress.on_bytes,
                                           progress=progress.on_batch)
        except NodeError as exc:
            # A file refused part-way (a UTF-16 file cut short, a damaged sheet): the batches before
            # were committed, and the refusal alone would read as if nothing had been imported.
            if not progress.committed or type(exc).__init__ is not NodeError.__init__:
                raise
            # A store that failed (the server restarted, the session was ended) is no fault of the file.
            then = "once the store answers, import it again" if exc.retryable else "fix the file and import it again"
            raise type(exc)(f"{exc.message}. The {progress.committed:,} rows before it were committed (stored, "
                            f"or refused and listed by rejections list): {then}; rows already stored count as "
                            "duplicates", field=exc.field, code=exc.code) from None
        except (_Stopped, KeyboardInterrupt) as exc:
            progress.close()
            count = f"{'at least ' if isinstance(exc, KeyboardInterrupt) else ''}{progress.committed}"
            message = (f"the import of {file.name} was stopped after {count} rows; those are committed (stored, "
                       "or refused and listed). Import the file again to finish: rows already stored count as "
                       "duplicates")
            if as_json:  # a script reading stdout learns why there is no summary
                emit_json({"error": {"code": "E_INTERRUPTED", "field": "", "message": message}})
            click.echo(f"error: E_INTERRUPTED: {message}", err=True)
            sys.exit(INTERRUPTED_EXIT)
        finally:
            progress.close()
        rejections = [{"row": r.row, "field": r.field, "code": r.code, "message": r.message}
                      for r in node.store.rejections.for_batch(summary.batch_id)]
    warned = [{"row": w.row, "field": w.field, "code": w.code, "message": w.message} for w in summary.warned]
    if as_json:
        emit_json({"accepted": summary.accepted, "duplicates": summary.duplicates,
                   "rejected": summary.rejected, "warnings": summary.warnings, "rejections": rejections,
                   "warned": warned})
    else:
        click.echo(f"{file.name}: {summary.accepted} accepted, {summary.duplicates} duplicates, "
                   f"{summary.rejected} rejected, {summary.warnings} warnings")
        if not summary.accepted + summary.duplicates + summary.rejected:
            click.echo(f"  {file.name} holds no records: a header and nothing under it (the wrong file, or an "
                       "empty report)")
        from node.preparing import WARNINGS_KEPT

        # A warning may sit on an accepted, a duplicate or a refused row: it is labelled as one only.
        for label, shown, total, more in (("", rejections, len(rejections), "use --json for all"),
                                          (" (warning)", warned, summary.warnings,
                                           f"--json lists the first {WARNINGS_KEPT:,}")):
            for r in shown[:50]:
                where = f" {r['field']}" if r["field"] else ""
                click.echo(f"  row {r['row']}{where}: {r['code']}: {r['message']}{label}")
            if total > 50:
                click.echo(f"  … {total - 50} more ({more})")
    sys.exit(1 if summary.rejected else 0)


@cli.command("query")
@click.argument("code")
@click.option("--item", "items", multiple=True, help="restrict to these items (repeatable)")
@click.option("--purpose", default="", help="why you look (kept in the query log)")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def query(ctx: click.Context, code: str, items: tuple[str, ...], purpose: str, as_json: bool) -> None:
    """Records of one subject (USCC or ID number) held by this node, every one unmasked: the look
    is a query-log entry (role ``operator``), written before anything is shown."""
    from node.access import stated_purpose
    from node.query import subject_records
    from node.store import QueryLogEntry

    stated = stated_purpose(purpose)
    with open_node(ctx) as node:
        for item in items:  # a mistyped item would only find nothing
            node.catalog.item(item)
        subject, records = subject_records(node.store, code, items,
                                           allowlist=frozenset(node.config.validation.uscc_allowlist))
        # Unmasked, archived and class-C records alike: the operator's look is accounted for as a
        # caller's is (DOMAIN §4, seed 001 附件1 七(一)); with no log, nothing is shown.
        node.store.queries.record(QueryLogEntry(caller=cli_actor(), role="operator", purpose=stated, subject=subject,
                                                items=list(items), result_count=len(records),
                                                detail={"op": "store_query", "region": node.config.id}))
    if as_json:
        emit_json({"subject": subject, "records": [r.as_dict() for r in records]})
        return
    if not records:
        click.echo(f"{subject}: no records")
    for r in records:
        click.echo(f"{r.item} {r.record_id} rev {r.revision} [{r.status}] signed by {' > '.join(r.signers)}")
        for name, value in r.fields.items():
            click.echo(f"    {name}: {value}")


@cli.command("verify")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def verify(ctx: click.Context, as_json: bool) -> None:
    """Re-verify every stored record's signature chain and the hash chains of the logs."""
    from node.integrity import verify_store

    with open_node(ctx) as node:
        report = verify_store(node.store, node.verifier)
    if as_json:
        emit_json({"records": report.records, "ok": report.ok,
                   "failures": [f.__dict__ for f in report.findings]})
    else:
        for f in report.findings:
            click.echo(f"FAIL {f.kind} {f.ref}: {f.code}: {f.message}")
        click.echo(f"verified {report.records} record revisions: "
                   f"{'OK' if report.ok else f'{len(report.findings)} failure(s)'}")
    sys.exit(0 if report.ok else 1)


@cli.command("show-config")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def show_config(ctx: click.Context, as_json: bool) -> None:
    """The effective configuration (defaults applied, ${ENV} expanded)."""
    import yaml

    from node.config import load_config, to_dict

    data = to_dict(load_config(config_path(ctx)))
    if as_json:
        emit_json(data)
    else:
        click.echo(yaml.safe_dump(data, allow_unicode=True, sort_keys=False).rstrip())
