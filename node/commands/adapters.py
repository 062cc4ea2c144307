"""``credit-node adapters list|run`` and ``credit-node submit``: how departments' systems report.

``adapters run`` runs the configured adapters in the foreground (``start`` runs them next to the
gRPC server); ``--until-idle`` takes in what is there and exits, for cron jobs and scripts.
``submit`` is the push client for a department system or an operator: a CSV/XLSX file or JSON
lines ({code: value} per line) sent over mutual TLS, with every refusal printed by its row, and
the warnings (``W_…``) as ``import`` prints them.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import pathlib
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import click

from node.cli import (
    INTERRUPTED,
    NODE_HELP,
    cli,
    emit_json,
    handle_errors,
    node_config,
    node_id,
    open_node,
    report,
)
from node.errors import (
    BlockedError,
    ConfigError,
    InputFileError,
    NodeError,
    NotAuthorizedError,
    Problem,
    UnauthenticatedError,
)


class _Counting:
    """A sink that passes batches to the node's ingest and counts their outcomes (thread-safe)."""

    def __init__(self, ingest: Any) -> None:
        self._ingest = ingest
        self._lock = threading.Lock()
        self.counts = {"accepted": 0, "duplicate": 0, "rejected": 0}

    def prepare(self, item: Any, rows: Sequence[Any], *, source: str, batch_id: str) -> Any:
        return self._ingest.prepare(item, rows, source=source, batch_id=batch_id)

    def commit(self, item: Any, batch: Any, *, source: str, batch_id: str,
               meta: Mapping[str, str] | None = None) -> Any:
        outcomes = self._ingest.commit(item, batch, source=source, batch_id=batch_id, meta=meta)
        with self._lock:
            for o in outcomes:
                self.counts[o.outcome] += 1
        return outcomes


@cli.group("adapters")
def adapters_group() -> None:
    """The department front-end adapters configured under ``adapters:``."""


@adapters_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def list_adapters(ctx: click.Context, as_json: bool) -> None:
    """Each adapter with its kind, item and where it stands (a pull's position)."""
    from node.config import adapter_name

    with open_node(ctx) as node:
        out = []
        for cfg in node.config.adapters:
            name = adapter_name(cfg)
            where = str(node.config.path(cfg.dir)) if cfg.kind == "file" else cfg.table
            position = node.store.meta.get(f"adapter.{name}.position") if cfg.kind == "database" else None
            out.append({"name": name, "kind": cfg.kind, "item": cfg.item, "source": where,
                        "position": json.loads(position) if position else None})
    if as_json:
        emit_json(out)
        return
    for a in out:
        click.echo(f"{a['name']}: {a['kind']} {a['item'] or '(item from file names)'} from {a['source']}"
                   + (f", position after ({_shown_position(a['position'])})" if a["position"] else ""))
    if not out:
        click.echo("no adapters configured")


@adapters_group.command("reset")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@click.pass_context
@handle_errors
def reset_adapter(ctx: click.Context, name: str, as_json: bool) -> None:
    """Forget a database pull's position: its next run reads the whole table again (rows already
    stored count as duplicates). For a position carried past rows by a watermark in the future."""
    from adapters.database import reset_position

    with open_node(ctx) as node:
        was = reset_position(node, name)
    report(as_json, {"adapter": name, "position_was": was},
           f"{name}: position {was if was is not None else '(none)'} forgotten; the next run reads the whole table")


@adapters_group.command("run")
@click.option("--name", "names", multiple=True, help="run only this adapter (repeatable)")
@click.option("--until-idle", is_flag=True, help="take in what is ready, then exit")
@click.option("--json", "as_json", is_flag=True, help="with --until-idle: print one JSON object")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
@click.pass_context
@handle_errors
def run_adapters(ctx: click.Context, names: tuple[str, ...], until_idle: bool, as_json: bool,
                 log_level: str) -> None:
    """Run the adapters in the foreground (until SIGTERM/SIGINT, or until idle)."""
    from adapters import SourceRunner, build_sources
    from node.app import build_node
    from node.instance import running_instance
    from node.logs import configure_logging

    config = node_config(ctx)
    if not config.adapters and not until_idle:
        # It would wait for SIGTERM polling nothing, looking to the operator as if it took files in.
        raise ConfigError("adapters: none is configured in this node's node.yaml, so there is nothing to run "
                          "(docs/adapters.md)", field="adapters")
    with running_instance(config, "adapters run"), build_node(config) as node:
        configure_logging(node.config.id, level=log_level)
        counting = _Counting(node.ingest)
        failed: list[Any] = []  # files a drop could not read at all (moved to failed/)
        sources = build_sources(node, sink=counting, names=names,
                                on_file=lambda f: failed.append(f) if f.state == "failed" else None)
        if until_idle:
            try:
                for source in sources:
                    while source.poll():
                        pass
                    # A file seen for the first time is read on the next poll (it must be seen
                    # unchanged twice), so an idle file drop gets one more look.
                    if source.poll():
                        while source.poll():
                            pass
            finally:
                for source in sources:
                    source.close()
            c = counting.counts
            failed_files = [{"file": f.name, "code": f.error, "result": f.result} for f in failed]
            if as_json:
                emit_json({"adapters": [s.name for s in sources], "accepted": c["accepted"],
                           "duplicates": c["duplicate"], "rejected": c["rejected"], "failed_files": failed_files})
            else:
                click.echo(f"{', '.join(s.name for s in sources) or 'no adapters'}: {c['accepted']} accepted, "
                           f"{c['duplicate']} duplicates, {c['rejected']} rejected")
                for f in failed_files:
                    click.echo(f"  {f['file']}: not read ({f['code']}), see {f['result']}")
            # As import: 1 when rows were refused or files could not be read.
            sys.exit(1 if c["rejected"] or failed_files else 0)
        from node.runtime import Runtime

        Runtime(node, [SourceRunner(s) for s in sources]).run()


def _json_lines(stream: Any) -> Iterator[tuple[int, Mapping[str, Any]] | Problem]:
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Problem("E_ROW_MALFORMED", "", f"not a JSON object: {exc.msg}", row=number)
            continue
        if not isinstance(value, dict):
            yield Problem("E_ROW_MALFORMED", "", "each line must be one JSON object {code: value}", row=number)
            continue
        yield number, value


def _stdin_rows(item_code: str, catalog_dir: str | None, file_warnings: dict[int, Problem],
                spool: pathlib.Path) -> Iterator[Any]:
    """Rows given on stdin, in any form a file may have: JSON lines are read as they come (a system
    may stream them), a CSV or XLSX table is first copied to ``spool`` (its reader needs a file: a
    workbook is a zip, read from its end), so memory stays bounded either way."""
    stream = _stdin_bytes()
    head = b""
    while not head.removeprefix(_BOM).lstrip():
        chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
        if not chunk:
            break
        head += chunk
    if head.removeprefix(_BOM).lstrip()[:1] in (b"{", b""):
        return _json_lines(_text_lines(head, stream))
    path = spool / ("stdin.xlsx" if head.startswith(b"PK\x03\x04") else "stdin.csv")
    with path.open("wb") as out:
        out.write(head)
        shutil.copyfileobj(stream, out)
    return _table_rows(path, item_code, catalog_dir, file_warnings)


_BOM = "\ufeff".encode()


def _stdin_bytes() -> Any:
    """stdin's bytes through a reader of our own: grpc reads the rows on a daemon thread, which a node
    gone mid-stream leaves blocked in a read, holding its reader's lock; were that ``sys.stdin``'s,
    the interpreter would abort at exit taking it (SIGABRT), instead of exiting with the error's code."""
    try:
        return open(sys.stdin.fileno(), "rb", closefd=False)
    except (AttributeError, OSError, ValueError):  # a stdin without a descriptor (tests, embedding)
        return sys.stdin.buffer


def _text_lines(head: bytes, stream: Any) -> Iterator[str]:
    """The lines of ``head`` and what follows it on ``stream``, as UTF-8 text (a BOM, as Windows
    Notepad writes, is no part of the first)."""
    # Only an unfinished last line is read on: a whole one may be all a streaming writer has sent yet.
    rest = stream.readline() if head and not head.endswith(b"\n") else b""
    first = True
    for line in itertools.chain(io.BytesIO(head + rest), stream):
        yield line.decode("utf-8-sig" if first else "utf-8")
        first = False


def _table_rows(path: pathlib.Path, item_code: str, catalog_dir: str | None,
                file_warnings: dict[int, Problem]) -> Iterator[Any]:
    """A file's rows to send, or the problem of a row that cannot be read; the file's own word on a
    row that is sent (W_ROW_HIDDEN) is kept in ``file_warnings`` by row, to go with the node's answer."""
    from node.catalog import load_catalog
    from node.provisioning import bundled_catalog
    from node.tabular import HeaderMap, read_table

    item = load_catalog(pathlib.Path(catalog_dir) if catalog_dir else bundled_catalog()).item(item_code)
    headers = HeaderMap(item.header_map(), frozenset(f.code for f in item.fields if f.required))
    for row in read_table(path, headers):
        if row.warning is not None and row.problem is None:
            file_warnings[row.row] = row.warning
        yield row.problem if row.problem is not None else (row.row, row.values)


def _first_row(rows: Iterator[Any], source: str) -> list[Any]:
    try:
        return [next(rows)]
    except StopIteration:
        return []
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{source}: not UTF-8 text (byte {exc.start} of a line)", code="E_INPUT_ENCODING") from None


def _refused_call(counts: Mapping[str, int], refusals: Sequence[Mapping[str, object]]) -> None:
    """The node took nothing and refused every row for want of a right (a source it does not list,
    units not the source's): the call is refused, exit 3 with the reason, as lookups are
    (README: exit codes). The node answers per row, which is also how a mixed batch is told."""
    if counts["accepted"] or counts["duplicate"] or not refusals:
        return
    if any(r["code"] not in _REFUSED_CODES for r in refusals):
        return
    reasons = list(dict.fromkeys(str(r["message"]) for r in refusals))
    more = f" (and {len(reasons) - 3} more reasons)" if len(reasons) > 3 else ""
    raise NotAuthorizedError(f"every row refused: {'; '.join(reasons[:3])}{more}",
                             code=str(refusals[0]["code"]), field=str(refusals[0]["field"]))


def _cut_off(exc: NodeError, counts: Mapping[str, int]) -> NodeError:
    """The error that ended a push part-way, with what the node had answered by then: those rows
    are stored as answered, and the rest can be sent by running the same input again."""
    if sum(counts.values()):
        exc.message = (f"{exc.message}; {_answered(counts)} before it, and stored as answered; submit the same "
                       "input again to send the rest (rows stored come back as duplicates)")
    return exc


def _answered(counts: Mapping[str, int]) -> str:
    return (f"{sum(counts.values())} rows answered ({counts['accepted']} accepted, {counts['duplicate']} duplicates, "
            f"{counts['rejected']} rejected)")


_WARNINGS_SHOWN = 50  # in text; --json lists up to WARNINGS_KEPT

# The codes of NotAuthorizedError and its subclasses (node/errors.py): the caller's rights.
_REFUSED_CODES = frozenset({NotAuthorizedError.code, BlockedError.code, UnauthenticatedError.code})


def _shown_position(position: object) -> str:
    """A pull's position (the watermark, then the key: ``[type, value]`` pairs) as its values."""
    if isinstance(position, list):
        return ", ".join(str(p[1]) if isinstance(p, list) and len(p) == 2 else str(p) for p in position)
    return str(position)


@cli.command("submit")
@click.argument("source", type=click.Path(allow_dash=True, dir_okay=False))
@click.option("--item", required=True, help="catalogue item of every row, e.g. admin_penalty")
@click.option("--target", required=True, help="HOST:PORT of the node to push to")
@click.option("--identity", "identity_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="directory with the source system's cert.pem, key.pem, ca.pem")
@click.option("--server-name", default=None, help="name the node's certificate carries, if not TARGET's host")
@click.option("--node", default=None, callback=node_id, help=NODE_HELP)
@click.option("--catalog", "catalog_dir", default=None, help="catalogue for CSV/XLSX headers (default: bundled)")
@click.option("--batch", default=500, show_default=True, type=click.IntRange(1, 10_000), help="records per request")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@handle_errors
def submit(source: str, item: str, target: str, identity_dir: str, server_name: str | None, node: str | None,
           catalog_dir: str | None, batch: int, as_json: bool) -> None:
    """Push a CSV/XLSX file, or JSON lines (FILE or - for stdin), to a node; refusals and warnings come back by row."""
    from adapters.api_client import Pusher
    from node.preparing import WARNINGS_KEPT

    file_warnings: dict[int, Problem] = {}
    spool = contextlib.ExitStack()
    if source == "-":
        rows: Iterator[Any] = _stdin_rows(item, catalog_dir, file_warnings,
                                          pathlib.Path(spool.enter_context(tempfile.TemporaryDirectory())))
    elif source.lower().endswith((".jsonl", ".json", ".ndjson")):
        rows = _json_lines(pathlib.Path(source).open(encoding="utf-8-sig"))  # noqa: SIM115 - read to the end
    else:
        path = pathlib.Path(source)
        if not path.exists():
            raise InputFileError(f"{source}: no such file")
        rows = _table_rows(path, item, catalog_dir, file_warnings)
    local: list[Problem] = []
    failed: list[NodeError] = []
    # The first row is read before connecting: an unknown item or column fails here, named,
    # instead of inside grpc's request stream (which reports only "Exception iterating requests").
    first = _first_row(rows, source)

    def sendable() -> Iterator[tuple[int, Mapping[str, Any]]]:
        try:
            for r in itertools.chain(first, rows):
                if isinstance(r, Problem):
                    local.append(r)  # a row that cannot be read is refused here, never sent
                else:
                    yield r
        except NodeError as exc:  # ends the stream; told after what was sent is answered
            failed.append(exc)
        except UnicodeDecodeError as exc:
            failed.append(InputFileError(f"{source}: not UTF-8 text (byte {exc.start} of a line)",
                                         code="E_INPUT_ENCODING"))

    counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
    refusals: list[dict[str, object]] = []
    warnings = 0
    warned: list[dict[str, object]] = []  # the first WARNINGS_KEPT, as import keeps them
    with spool, Pusher(target, identity_dir, server_name=server_name, node_id=node, batch=batch) as pusher:
        try:
            for ack in pusher.push(item, sendable()):
                counts[ack.outcome] += 1
                refusals.extend({"row": ack.row, "field": p.field, "code": p.code, "message": p.message}
                                for p in ack.problems)
                # A row's warnings: the file's (a hidden row, read before the row was sent), then the node's.
                row_warnings = ((file_warnings.pop(ack.row),) if ack.row in file_warnings else ()) + tuple(ack.warnings)
                warnings += len(row_warnings)
                warned.extend({"row": ack.row, "field": w.field, "code": w.code, "message": w.message,
                               "outcome": ack.outcome} for w in row_warnings[:WARNINGS_KEPT - len(warned)])
        except NodeError as exc:
            raise _cut_off(exc, counts) from None
        except KeyboardInterrupt:  # as import tells a stopped import: what is stored, and how to finish
            message = (f"stopped by Ctrl-C; {_answered(counts)} before it, and stored as answered (rows sent "
                       "since may be stored too); submit the same input again to finish (rows stored come back "
                       "as duplicates)")
            if as_json:
                emit_json({"error": {"code": "E_INTERRUPTED", "field": "", "message": message}})
            click.echo(f"error: E_INTERRUPTED: {message}", err=True)
            sys.exit(INTERRUPTED)
    if failed:
        raise failed[0]
    _refused_call(counts, refusals)
    counts["rejected"] += len({p.row for p in local})
    refusals.extend({"row": p.row, "field": p.field, "code": p.code, "message": p.message} for p in local)
    refusals.sort(key=lambda r: int(str(r["row"])))
    if as_json:
        emit_json({"accepted": counts["accepted"], "duplicates": counts["duplicate"],
                   "rejected": counts["rejected"], "warnings": warnings, "rejections": refusals,
                   "warned": [{k: v for k, v in w.items() if k != "outcome"} for w in warned]})
    else:
        click.echo(f"{source}: {counts['accepted']} accepted, {counts['duplicate']} duplicates, "
                   f"{counts['rejected']} rejected, {warnings} warnings")
        for r in refusals:
            where = f" {r['field']}" if r["field"] else ""
            click.echo(f"  row {r['row']}{where}: {r['code']}: {r['message']}")
        # Capped as import caps them: a file with one stray column warns on every row.
        for w in warned[:_WARNINGS_SHOWN]:
            where = f" {w['field']}" if w["field"] else ""
            label = "accepted with a warning" if w["outcome"] == "accepted" else "warning"
            click.echo(f"  row {w['row']}{where}: {w['code']}: {w['message']} ({label})")
        if warnings > _WARNINGS_SHOWN:
            click.echo(f"  … {warnings - _WARNINGS_SHOWN} more warnings (use --json for the first {WARNINGS_KEPT})")
    sys.exit(1 if counts["rejected"] else 0)
