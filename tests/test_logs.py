"""node/logs.py: one JSON line per event, the node's events at INFO and libraries' chatter at DEBUG."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from node.logs import configure_logging


@pytest.fixture
def restored() -> Iterator[None]:
    root, pika, plugins = logging.getLogger(), logging.getLogger("pika"), logging.getLogger("alembic.runtime.plugins")
    handlers, level, pika_level, plugins_level = list(root.handlers), root.level, pika.level, plugins.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    pika.setLevel(pika_level)
    plugins.setLevel(plugins_level)


def _events(stream: io.StringIO) -> list[str]:
    return [json.loads(line)["event"] for line in stream.getvalue().splitlines()]


@pytest.mark.usefixtures("restored")
def test_at_info_the_node_logs_its_events_and_pika_only_its_warnings() -> None:
    out = io.StringIO()
    configure_logging("dept:330102:scjgj", level="INFO", stream=out)
    logging.getLogger("pika.adapters.utils.io_services_utils").info("Socket connected: %r", object())
    logging.getLogger("pika.connection").warning("connection.blocked")
    logging.getLogger("node.forwarding").info("forwarder.connected")
    assert _events(out) == ["connection.blocked", "forwarder.connected"]


@pytest.mark.usefixtures("restored")
def test_at_info_a_migration_logs_its_steps_not_alembics_plugins() -> None:
    out = io.StringIO()
    configure_logging("dept:330102:scjgj", level="INFO", stream=out)
    logging.getLogger("alembic.runtime.plugins").info("setup plugin %s", "alembic.autogenerate.schemas")
    logging.getLogger("alembic.runtime.migration").info("Running upgrade %s -> %s", "0006", "0007")
    assert _events(out) == ["Running upgrade 0006 -> 0007"]


@pytest.mark.usefixtures("restored")
def test_at_debug_pika_says_everything_again() -> None:
    out = io.StringIO()
    configure_logging("dept:330102:scjgj", level="INFO", stream=out)
    configure_logging("dept:330102:scjgj", level="DEBUG", stream=out)
    logging.getLogger("pika.connection").info("Socket connected")
    assert _events(out) == ["Socket connected"]


def test_a_commands_python_warnings_and_library_warnings_are_json_lines_on_stderr_only() -> None:
    import subprocess
    import sys

    script = ("import logging, warnings\n"
              "from node.logs import configure_command_logging, log_node\n"
              "configure_command_logging()\n"
              "log_node('city:330100')\n"
              "print('{\"answer\": 1}')\n"
              "warnings.warn('a deprecated call', DeprecationWarning)\n"
              "logging.getLogger('psycopg').warning('error ignored in rollback')\n"
              "logging.getLogger('psycopg').info('detail')\n")
    run = subprocess.run([sys.executable, "-W", "always", "-c", script], capture_output=True, text=True,
                         timeout=60, check=True)
    assert json.loads(run.stdout) == {"answer": 1}
    lines = [json.loads(line) for line in run.stderr.splitlines()]
    assert [(x["level"], x["node"]) for x in lines] == [("warning", "city:330100")] * 2
    assert "DeprecationWarning: a deprecated call" in lines[0]["event"]
    assert lines[1]["event"] == "error ignored in rollback"


@pytest.mark.usefixtures("restored")
def test_a_natural_persons_id_number_never_reaches_a_log_line_whole() -> None:
    # A citizen's certificate names them: self:<ID number>. The server logs the caller of every
    # refused call (peers.check_role, vetted_caller); the line must still tell who, not the number.
    out = io.StringIO()
    configure_logging("city:330100", level="INFO", stream=out)
    person = "self:11010519491231002x"
    log = logging.getLogger("node.transport.peers")
    log.warning("call.refused", extra={"peer": person, "role": "self", "what": "ask for the node's status"})
    log.warning("call.unauthenticated", extra={"address": "ipv4:127.0.0.1:5", "code": "E_SIGNER_UNTRUSTED",
                                               "reason": f"certificate of {person} is revoked (serial 1f)"})
    log.warning("lookup.%s", "11010519491231002X", extra={"subjects": ["110105194912310021"]})
    log.info("submit.batch", extra={"peer": "dept:330102:scjgj", "unit": "91350100M000100Y43",
                                    "record_id": "admin_penalty-3f9a0c1b2d4e5f6a7b8c9d0e"})
    text = out.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert "11010519491231002" not in text and "110105194912310021" not in text
    assert lines[0]["peer"] == "self:1101**********002x"
    assert lines[1]["reason"] == "certificate of self:1101**********002x is revoked (serial 1f)"
    assert lines[2]["event"] == "lookup.1101**********002X"
    assert lines[2]["subjects"] == ["1101**********0021"]
    # Codes that are not a person's number stay as they are: a unit's USCC, a record id.
    assert lines[3]["unit"] == "91350100M000100Y43"
    assert lines[3]["record_id"] == "admin_penalty-3f9a0c1b2d4e5f6a7b8c9d0e"
