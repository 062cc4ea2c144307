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
