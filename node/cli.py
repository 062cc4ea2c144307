"""The ``credit-node`` command: thin commands that parse, call one function, map errors to exits.

Exit codes: 0 success; 1 the operation ran and found problems (refused rows, failed checks);
2 usage or configuration error; 3 refused (no right, no purpose, blocked); 4 a service or peer
is unavailable; 130 stopped by Ctrl-C; 141 stdout's reader went away (`| head`), said nowhere.
User errors print one line, never a traceback.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import pathlib
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from node.errors import NodeError, UsageError

F = TypeVar("F", bound=Callable[..., Any])

# Parameter types shared by the commands: a store id is a signed 64-bit integer, counts of days
# stay where dates exist, and a timeout is positive. Out of range is a usage error (exit 2).
STORE_ID = click.IntRange(1, 2**63 - 1)
DAYS = click.IntRange(1, 36_500)
SECONDS = click.FloatRange(0, 86_400, min_open=True)

# 128 + SIGPIPE: what a shell reports for a tool that stopped because the reader of its output
# went away (`| head`). Not 1, which here means "ran and found problems".
READER_GONE = 141

# 128 + SIGINT: what a shell reports for a command stopped by Ctrl-C. Not 1 either.
INTERRUPTED = 130


def not_blank(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """Callback for a text option that is recorded (a signed revision's reason): never empty or spaces."""
    if value is not None and not value.strip():
        raise click.BadParameter("must not be empty or only spaces")
    return value


def node_id(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """Callback for ``--node``: a node's id (the server a client means), checked by its grammar."""
    if value is None:
        return None
    from node.errors import ConfigError
    from node.nodeid import parse_node_id

    try:
        parsed = parse_node_id(value)
    except ConfigError as exc:
        raise click.BadParameter(exc.message) from None
    if not parsed.is_node:
        raise click.BadParameter(f"{value!r} is a caller's id, not a node's (city:330100, dept:330102:scjgj …)")
    return value


# A client's check of the server it reaches: a node's id (its certificate's name for it), or a host.
NODE_HELP = "the node TARGET must be (its certificate is checked for this id, not for TARGET's host)"


def when(ms: int | None, *, millis: bool = False) -> str:
    """A stored time (Unix ms) as operators read it: ISO 8601 in UTC; '' for none."""
    if not ms:
        return ""
    at = dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds" if millis else "seconds")
    return at.replace("+00:00", "Z")


def cli_actor() -> str:
    """Who acts from the command line, for the audit log: the operating-system account."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def emit_json(data: object) -> None:
    """``data`` as one line of JSON, valid UTF-8 whatever it holds: a path's bytes that are not UTF-8
    (lone surrogates, printed as the raw bytes) come out as U+FFFD, as ``ls`` shows them."""
    from node.identifiers import readable_name

    click.echo(readable_name(json.dumps(data, ensure_ascii=False, sort_keys=False)))


def report(as_json: bool, data: dict[str, object], text: str) -> None:
    """What a command that changes something says it did: ``data`` as JSON, or ``text``."""
    if as_json:
        emit_json(data)
    else:
        click.echo(text)


def _reader_gone() -> NoReturn:
    """Stop quietly: whoever read stdout has closed it (`credit-node … | head`), so no one is left to
    tell; the Python docs' recipe (library/signal.html, "Note on SIGPIPE")."""
    try:
        # Python flushes stdout again at exit, which would fail the same way and say so on stderr.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # a stdout without a descriptor (a test's) has nothing to flush
        pass
    sys.exit(READER_GONE)


def handle_errors(fn: F) -> F:
    """Map the exception tree to one line on stderr and the error's exit code (with ``--json``, also
    ``{"error": {"code", "field", "message"}}`` on stdout); a closed stdout ends it quietly."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return _reported(fn, args, kwargs)
        except BrokenPipeError:  # from the command's output or from reporting its error there
            _reader_gone()

    return wrapper  # type: ignore[return-value]


def _not_utf8(ctx: click.Context | None) -> UsageError | None:
    """The refusal of a text argument holding bytes that are not UTF-8 (a GBK terminal, a latin-1
    script): Python keeps each as a lone surrogate, which no store, peer or log can take. A path is
    the file system's, whatever its bytes, and is left to the command."""
    if ctx is None:
        return None
    for param in ctx.command.params:
        if isinstance(param.type, click.Path):
            continue
        value = ctx.params.get(param.name or "")
        for text in value if isinstance(value, tuple) else (value,):
            if not isinstance(text, str):
                continue
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                name = (param.opts[0] if param.opts else param.name or "").lstrip("-")
                shown = param.opts[0] if isinstance(param, click.Option) else name.upper()
                byte = text[exc.start].encode("utf-8", "surrogateescape").hex()
                return UsageError(f"{shown} is not UTF-8 text (byte 0x{byte} at character {exc.start + 1}): "
                                  "give it from a UTF-8 terminal or script", field=name)
    return None


def _reported(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        if (refused := _not_utf8(click.get_current_context(silent=True))) is not None:
            raise refused
        return fn(*args, **kwargs)
    except NodeError as exc:
        if kwargs.get("as_json"):  # a script reading stdout learns why there is no answer
            emit_json({"error": {"code": exc.code, "field": exc.field, "message": exc.message}})
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except BrokenPipeError:  # not the OSError below: a closed stdout is no path for the user to fix
        raise
    except OSError as exc:  # a path given that cannot be read or written: the user's to fix
        where = f"{exc.filename}: " if exc.filename else ""
        if kwargs.get("as_json"):
            emit_json({"error": {"code": "E_IO", "field": "", "message": f"{where}{exc.strerror or exc}"}})
        click.echo(f"error: E_IO: {where}{exc.strerror or exc}", err=True)
        sys.exit(UsageError.exit_code)
    except KeyboardInterrupt:  # Ctrl-C: click would say "Aborted!" and exit 1, "ran and found problems"
        message = "stopped by Ctrl-C before the command finished"
        if kwargs.get("as_json"):
            emit_json({"error": {"code": "E_INTERRUPTED", "field": "", "message": message}})
        click.echo(f"error: E_INTERRUPTED: {message}", err=True)
        sys.exit(INTERRUPTED)
    except OverflowError as exc:  # a date or number beyond what can be stored (9999-12-31 + days)
        if kwargs.get("as_json"):
            emit_json({"error": {"code": "E_USAGE", "field": "", "message": f"a value is out of range ({exc})"}})
        click.echo(f"error: E_USAGE: a value is out of range ({exc})", err=True)
        sys.exit(UsageError.exit_code)


def config_path(ctx: click.Context) -> pathlib.Path:
    path = ctx.obj.get("config_path") if ctx.obj else None
    if not path:
        raise UsageError("this command needs --config FILE (or CREDIT_NODE_CONFIG)")
    return pathlib.Path(path)


def node_config(ctx: click.Context) -> Any:
    """The node's configuration, for a command that uses its store: one that names a SQLite file in a
    directory that does not exist is refused (a typo would otherwise start an empty store there)."""
    from node.config import load_config
    from node.errors import ConfigError
    from node.logs import log_node
    from node.store.engine import missing_store_directory

    config = load_config(config_path(ctx))
    log_node(config.id)
    path = missing_store_directory(config.store_url)
    if path is not None:
        raise ConfigError(f"store.url: no store at {path}: the directory {path.parent} does not exist "
                          "(a typo? `credit-node init` creates a node and its store's directory)", field="store.url")
    return config


def open_node(ctx: click.Context) -> Any:
    from node.app import build_node

    return build_node(node_config(ctx))


@click.group()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), envvar="CREDIT_NODE_CONFIG",
              help="node.yaml of the node to act on (or CREDIT_NODE_CONFIG)")
@click.version_option(package_name="credit-node")
@click.pass_context
def cli(ctx: click.Context, config_file: str | None) -> None:
    """Federated exchange node for public credit information (公共信用信息)."""
    from node.logs import configure_command_logging

    configure_command_logging()  # a library's warning: a JSON line on stderr, never text among the output
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_file


def main() -> None:
    # grpc's C core logs a failed TLS handshake on stderr before the client's own one-line error
    # says the same; operators set GRPC_VERBOSITY themselves to see its INFO lines.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    if "--json" not in sys.argv[1:]:
        cli(prog_name="credit-node")
        return
    # With --json, a script reads stdout: click's own refusals (a missing argument, a file that
    # does not exist, a number out of range) come out as JSON there too, as the node's errors do.
    try:
        cli(prog_name="credit-node", standalone_mode=False)
    except click.ClickException as exc:
        field = ""
        if isinstance(exc, click.BadParameter) and exc.param is not None:
            field = (exc.param.opts[0] if exc.param.opts else exc.param.name or "").lstrip("-")  # as typed
        emit_json({"error": {"code": "E_USAGE", "field": field, "message": exc.format_message()}})
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:  # Ctrl-C before a command started
        click.echo("Aborted!", err=True)
        sys.exit(INTERRUPTED)


# Command groups live in node/commands/, one module per concept; importing them registers them.
from node.commands import access, adapters, backup, ca, catalog, demo, federation, feedback, lifecycle, objections, outbox, records, service  # noqa: E402, F401, I001
