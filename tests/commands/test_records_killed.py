"""credit-node import killed with SIGKILL (no handler runs, its worker process goes with it) while
its batches are being committed, then run again: the outcome is the same as one uninterrupted run.

The SIGINT/SIGTERM stop is in test_records.py; a kill -9 leaves no message and a SQLite WAL behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import sqlalchemy as sa

from node.catalog import load_catalog
from node.provisioning import bundled_catalog, init_node
from node.sampledata import penalty_rows, unit_uscc, write_csv

UNIT = unit_uscc("330102", "MB000001")
ROWS = 40_000  # over 4 MiB: read and checked in the worker process, committed in many batches
DEADLINE_S = 120


def _stored(engine: sa.Engine) -> int:
    with contextlib.suppress(sa.exc.OperationalError), engine.connect() as conn:  # tables may not exist yet
        return int(conn.execute(sa.text("select count(*) from record_revisions")).scalar() or 0)
    return 0


def _cli(config: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=600, check=False)


def test_an_import_killed_mid_file_and_run_again_stores_every_row_once(tmp_path: pathlib.Path) -> None:
    config = init_node(tmp_path / "dept", node_id="dept:330102:scjgj", level="department", unit=UNIT)
    item = load_catalog(bundled_catalog()).item("admin_penalty")
    path = tmp_path / "big.csv"
    write_csv(path, item, penalty_rows(ROWS, source_unit=UNIT, seed=5, bad_every=97))
    engine = sa.create_engine(f"sqlite:///{config.parent / 'node.db'}")
    proc = subprocess.Popen([sys.executable, "-m", "node", "--config", str(config), "import", str(path),
                             "--item", "admin_penalty", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + DEADLINE_S
    # Killed once a few batches are in: later ones are being read, checked and committed.
    while _stored(engine) < 5_000 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # polling another process's commits; the deadline bounds it
    os.killpg(proc.pid, signal.SIGKILL)  # the node and its worker, as a crash of the machine's session
    proc.communicate(timeout=60)
    kept = _stored(engine)
    assert proc.returncode == -signal.SIGKILL and 5_000 <= kept < ROWS - ROWS // 97

    again = _cli(config, "import", str(path), "--item", "admin_penalty", "--json")
    summary = json.loads(again.stdout)
    assert again.returncode == 1, again.stderr  # 1: rows refused, as on a first run
    assert summary["duplicates"] == kept
    assert summary["accepted"] + summary["duplicates"] + summary["rejected"] == ROWS
    with engine.connect() as conn:
        revisions, records = conn.execute(sa.text(
            "select count(*), count(distinct record_id) from record_revisions")).one()
        open_rejections = conn.execute(sa.text(
            "select count(*), count(distinct row || ' ' || field || ' ' || code) from rejections "
            "where closed_at_ms is null")).one()
    engine.dispose()
    assert revisions == records == summary["accepted"] + summary["duplicates"]
    assert open_rejections == (summary["rejected"], summary["rejected"])  # one open per refused row, no copy
    for check in (("verify",), ("audit", "verify")):
        result = _cli(config, *check)
        assert result.returncode == 0, (check, result.stdout, result.stderr)
