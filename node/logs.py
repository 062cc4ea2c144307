"""Structured logs: one JSON object per line, so operators can grep, ship and query them.

Every line carries ``ts`` (UTC, ISO 8601, milliseconds), ``level``, ``event`` (a short dotted name
such as ``submit.batch``), ``node`` (this node's id) and whatever the call site passes in
``extra``: ``peer`` (the caller's node id), ``record_id`` where one record is concerned, counts,
codes. Values under names that look like key material are replaced, so a careless ``extra`` can
never put a key or a secret into a log file, and a natural person's ID number is masked wherever it
stands (``1101**********002X``): a citizen's certificate names them (``self:<ID number>``), and the
node logs the caller of every refused call.

Configured once by the long-running ``start`` command (:func:`configure_logging`); library code
only calls ``logging.getLogger(__name__)`` and never configures anything itself. A one-shot command
(:func:`configure_command_logging`) sends only warnings and errors of libraries (psycopg's, Python
warnings) as the same JSON lines to stderr: never plain text, and never on stdout, where a
``--json`` command's answer is.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import IO, Any

from node.identifiers import looks_like_id_number, mask_id_number

__all__ = ["JsonFormatter", "configure_command_logging", "configure_logging", "log_node"]

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_RESERVED = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_SECRET_WORDS = ("key", "secret", "password", "passwd", "token", "credential", "private")
_REDACTED = "[redacted]"
# 18 characters standing alone (not inside a longer code): only those with a birth date in them are
# masked, so a USCC or a record's number of the same length stays readable.
_ID_IN_TEXT = re.compile(r"(?<![0-9A-Za-z])[0-9]{17}[0-9Xx](?![0-9A-Za-z])")


def _without_id_numbers(value: Any) -> Any:
    if isinstance(value, str):
        return _ID_IN_TEXT.sub(lambda m: mask_id_number(m[0]) if looks_like_id_number(m[0].upper()) else m[0], value)
    if isinstance(value, list | tuple):
        return [_without_id_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _without_id_numbers(v) for k, v in value.items()}
    return value


def _is_secret(name: str) -> bool:
    lowered = name.lower()
    # key_id (a certificate digest) and record keys are public identifiers, not key material.
    if lowered in ("key_id", "record_key"):
        return False
    return any(word in lowered for word in _SECRET_WORDS)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object on one line (newlines in values are escaped by JSON)."""

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": _without_id_numbers(record.getMessage()),
            "node": self.node_id,
        }
        for name, value in vars(record).items():
            if name in _RESERVED or name.startswith("_") or name in out:
                continue
            out[name] = _REDACTED if _is_secret(name) else _without_id_numbers(value)
        if record.exc_info and record.exc_info[0] is not None:
            out["error"] = _without_id_numbers(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False, default=str)


def configure_logging(node_id: str, *, level: str | int = "INFO", stream: IO[str] | None = None) -> logging.Handler:
    """Send every log record of the process to ``stream`` (stderr) as JSON lines; returns the handler.

    Replaces a handler installed by an earlier call, so calling it twice never doubles the lines.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(node_id))
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old.formatter, JsonFormatter):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    # pika narrates every socket and TLS step at INFO, with object reprs: an operator's log at INFO
    # is the node's events; the library's detail is there at DEBUG.
    # Likewise Alembic, migrating a new server store at start, lists each of its plugins set up
    # (seven lines of "setup plugin …"); its "Running upgrade A -> B" lines stay, the operator's news.
    quiet = logging.WARNING if root.level > logging.DEBUG else logging.NOTSET
    logging.getLogger("pika").setLevel(quiet)
    logging.getLogger("alembic.runtime.plugins").setLevel(quiet)
    return handler


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler writing to whatever ``sys.stderr`` is when a record comes (as logging's last resort
    does): a command run inside another program (a test's runner) may swap it."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, _value: IO[str]) -> None:
        pass


def configure_command_logging(node_id: str = "") -> logging.Handler:
    """For a one-shot command: records at WARNING and above (a library's: psycopg's "error ignored in
    rollback") and Python warnings as JSON lines on stderr, where Python would print their bare text.
    Does nothing more once done (or once :func:`configure_logging` has set the process up)."""
    logging.captureWarnings(True)
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler.formatter, JsonFormatter):
            return handler
    handler = _Stderr()
    handler.setLevel(logging.WARNING)
    handler.setFormatter(JsonFormatter(node_id))
    root.addHandler(handler)
    return handler


def log_node(node_id: str) -> None:
    """Name the node in the JSON lines of a command, once its configuration is read."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler.formatter, JsonFormatter):
            handler.formatter.node_id = node_id
