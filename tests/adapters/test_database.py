"""Pulling from a department's table end to end, against the real PostgreSQL and MariaDB.

Each test creates its own database on the loopback server and drops it afterwards; the node is a
real department node with its SQLite store.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pathlib
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from conftest_values import UNIT
from source_tables import (
    BASE_TIME,
    create_and_fill,
    fill_postgres_fast,
    insert_rows,
    penalty_db_rows,
    penalty_table,
)
from sqlalchemy import create_engine, text, update
from sqlalchemy.engine import make_url

from adapters.database import DatabasePull, decode_position
from node.app import Node
from node.config import DatabaseAdapterConfig
from node.errors import ConfigError, TransportError
from node.preparing import RowOutcome

REPO = pathlib.Path(__file__).resolve().parents[2]


class Recorder:
    """The node's ingest, with every outcome remembered (what the department would be told)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.outcomes: list[RowOutcome] = []

    def prepare(self, item: Any, rows: Sequence[Any], *, source: str, batch_id: str) -> Any:
        return self.node.ingest.prepare(item, rows, source=source, batch_id=batch_id)

    def commit(self, item: Any, batch: Any, *, source: str, batch_id: str,
               meta: Mapping[str, str] | None = None) -> list[RowOutcome]:
        out = self.node.ingest.commit(item, batch, source=source, batch_id=batch_id, meta=meta)
        self.outcomes.extend(out)
        return out

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes if o.outcome == outcome)


def pull_for(node: Node, url: str, sink: Any = None, *, worker: bool = False, **kw: Any) -> DatabasePull:
    cfg = DatabaseAdapterConfig(**{"kind": "database", "item": "admin_penalty", "url": url,
                                   "table": "cf_penalties", "watermark": "updated_at", "batch_rows": 40,
                                   "page_rows": 100, **kw})
    return DatabasePull(cfg, catalog=node.catalog, sink=sink or node.ingest, state=node.store.meta,
                        name=kw.get("name", "database:cf_penalties"),
                        workers=node.prepare_worker if worker else None)


@pytest.fixture(params=["thread", "worker"])
def in_worker(request: pytest.FixtureRequest) -> bool:
    """Pages prepared on a thread of the node, or in the prepare worker process (as ``start`` does)."""
    return bool(request.param == "worker")


def drain(pull: DatabasePull) -> int:
    total = 0
    while n := pull.poll():
        total += n
    return total


def records(node: Node) -> int:
    return sum(node.store.records.counts().values())


def test_pull_takes_everything_once_then_only_changes(dept: Node, source_url: str, in_worker: bool):
    item = dept.catalog.item("admin_penalty")
    src = create_engine(source_url)
    table = penalty_table(item)
    # 7 rows share each updated_at value, so batch and page boundaries fall inside ties.
    create_and_fill(src, table, penalty_db_rows(item, 250, unit=UNIT, bad_every=25))
    rec = Recorder(dept)
    pull = pull_for(dept, source_url, rec, worker=in_worker)
    assert drain(pull) == 250
    assert rec.count("accepted") == 240 and rec.count("rejected") == 10 and rec.count("duplicate") == 0
    assert records(dept) == 240
    assert pull.poll() == 0
    # The department corrects 3 rows and adds 4: exactly those 7 come again.
    later = BASE_TIME + dt.timedelta(days=1)
    with src.begin() as conn:
        conn.execute(update(table).where(table.c.id.in_([5, 6, 7])).values(cf_nr="罚款五千元，责令改正。",
                                                                            updated_at=later))
    insert_rows(src, table, penalty_db_rows(item, 4, unit=UNIT, start=1000, seed=9))
    rec.outcomes.clear()
    assert drain(pull) == 7
    assert rec.count("accepted") == 7 and rec.count("duplicate") == 0
    assert records(dept) == 244
    assert {o.row: o.revision for o in rec.outcomes} == {5: 2, 6: 2, 7: 2, 1000: 1, 1001: 1, 1002: 1, 1003: 1}
    pull.close()
    src.dispose()


def test_rows_sharing_one_watermark_are_neither_skipped_nor_repeated(dept: Node, source_url: str,
                                                                   in_worker: bool):
    item = dept.catalog.item("admin_penalty")
    src = create_engine(source_url)
    table = penalty_table(item)
    create_and_fill(src, table, penalty_db_rows(item, 95, unit=UNIT, same_time_every=1000))  # one value
    rec = Recorder(dept)
    pull = pull_for(dept, source_url, rec, batch_rows=10, page_rows=30, worker=in_worker)
    assert drain(pull) == 95
    assert sorted(o.row for o in rec.outcomes) == list(range(1, 96))  # the id is the row number
    assert rec.count("accepted") == 95
    pull.close()
    src.dispose()


def test_column_mapping_and_a_view_without_primary_key(dept: Node, pg_source_url: str):
    item = dept.catalog.item("admin_penalty")
    src = create_engine(pg_source_url)
    create_and_fill(src, penalty_table(item), penalty_db_rows(item, 30, unit=UNIT))
    with src.begin() as conn:
        conn.execute(text("CREATE VIEW v_publish AS SELECT id AS xh, updated_at AS gxsj, cf_wsh AS wsh, "
                          + ", ".join(f"{f.code.lower()}" for f in item.fields if f.code != "CF_WSH")
                          + " FROM cf_penalties"))
    with pytest.raises(ConfigError, match="no primary key"):
        pull_for(dept, pg_source_url, table="v_publish", watermark="gxsj", columns={"CF_WSH": "wsh"}).poll()
    pull = pull_for(dept, pg_source_url, table="v_publish", watermark="gxsj", key=("xh",),
                    columns={"CF_WSH": "wsh"}, name="database:view")
    assert drain(pull) == 30
    assert records(dept) == 30
    with pytest.raises(ConfigError, match="required field CF_WSH"):
        pull_for(dept, pg_source_url, table="v_publish", watermark="gxsj", key=("xh",), name="x").poll()
    pull.close()
    src.dispose()


def test_feedback_table_shows_refusals_until_they_are_corrected(dept: Node, source_url: str, in_worker: bool):
    item = dept.catalog.item("admin_penalty")
    src = create_engine(source_url)
    table = penalty_table(item)
    good = {r["id"]: r for r in penalty_db_rows(item, 60, unit=UNIT)}
    spoiled = {10: {"cf_jdrq": None}, 20: {"cf_wsh": None}, 30: {"cf_cflb": "批评教育"},
               40: {"cf_cfjgdm": UNIT[:-1] + ("1" if UNIT[-1] == "0" else "0")}}
    create_and_fill(src, table, ({**r, **spoiled.get(i, {})} for i, r in good.items()))
    pull = pull_for(dept, source_url, feedback_table="credit_feedback", worker=in_worker)
    drain(pull)
    with src.connect() as conn:
        fb = conn.execute(text("SELECT source_key, field, code, reason FROM credit_feedback ORDER BY id")).all()
    assert sorted({int(k) for k, *_ in fb}) == [10, 20, 30, 40]
    assert {(k, f, c) for k, f, c, _r in fb} >= {("10", "CF_JDRQ", "E_FIELD_REQUIRED"),
                                                  ("20", "CF_WSH", "E_FIELD_REQUIRED")}
    assert all(r for *_, r in fb)
    assert len(dept.store.rejections.list_rejections(UNIT)) == len(fb)
    with src.connect() as conn:  # each refused row with the watermark of its own refused version
        marks = dict(conn.execute(text("SELECT source_key, row_watermark FROM credit_feedback")).all())
    assert marks == {str(i): str(good[i]["updated_at"]) for i in spoiled}
    # The department fixes the rows, which gives them a new update time.
    later = BASE_TIME + dt.timedelta(days=2)
    with src.begin() as conn:
        for i in spoiled:
            values = {k: v for k, v in good[i].items() if k != "id"}
            conn.execute(update(table).where(table.c.id == i).values(**{**values, "updated_at": later}))
    drain(pull)
    with src.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM credit_feedback")).scalar_one() == 0
    assert dept.store.rejections.list_rejections(UNIT) == []
    assert records(dept) == 60
    pull.close()
    src.dispose()


def test_rows_without_a_watermark_are_never_read_on_any_database_and_are_counted(
        dept: Node, source_url: str, caplog: pytest.LogCaptureFixture):
    import logging

    item = dept.catalog.item("admin_penalty")
    src = create_engine(source_url)
    table = penalty_table(item)
    table.c.updated_at.nullable = True
    rows = list(penalty_db_rows(item, 12, unit=UNIT))
    rows[3]["updated_at"] = None  # NULLs sort first on MariaDB and last on PostgreSQL
    rows[11]["updated_at"] = None
    create_and_fill(src, table, rows)
    pull = pull_for(dept, source_url, page_rows=5, batch_rows=2)
    with caplog.at_level(logging.WARNING, logger="adapters.database"):
        assert drain(pull) == 10
    assert records(dept) == 10
    [warned] = [r for r in caplog.records if r.getMessage() == "adapter.rows_not_pulled"]
    assert warned.rows == 2  # type: ignore[attr-defined]
    assert drain(pull) == 0  # and the position is sound: nothing is read again
    pull.close()
    src.dispose()


def test_a_binary_key_keeps_its_position_and_is_named_in_hex(dept: Node, pg_source_url: str):
    from sqlalchemy import Column, LargeBinary

    item = dept.catalog.item("admin_penalty")
    src = create_engine(pg_source_url)
    table = penalty_table(item, "cf_bin", extra=[Column("uid", LargeBinary, nullable=False)])
    rows = [{**r, "uid": bytes([i]) * 16} for i, r in enumerate(penalty_db_rows(item, 9, unit=UNIT))]
    rows[4]["cf_wsh"] = None  # refused: its feedback names the row by its key, in hex
    create_and_fill(src, table, rows)
    pull = pull_for(dept, pg_source_url, table="cf_bin", key=["uid"], page_rows=3, batch_rows=2,
                    feedback_table="credit_feedback")
    assert drain(pull) == 9
    position = pull.position
    assert position is not None and position[1] == bytes([8]) * 16
    assert drain(pull) == 0  # the stored position binds as bytes again
    with src.connect() as conn:
        keys = conn.execute(text("SELECT source_key FROM credit_feedback")).scalars().all()
    assert keys == [(bytes([4]) * 16).hex()]
    pull.close()
    src.dispose()


def _readonly_url(url: str) -> tuple[str, str]:
    """A login that may only SELECT from the source database (and the SQL to drop it)."""
    user, password = f"ro_{secrets.token_hex(4)}", secrets.token_hex(8)
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    db = make_url(url).database
    with admin.connect() as conn:
        if admin.dialect.name == "postgresql":
            conn.execute(text(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'"))
            conn.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {user}"))
            drop = f"DROP OWNED BY {user}; DROP ROLE {user}"
        else:
            conn.execute(text(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'"))
            conn.execute(text(f"CREATE USER '{user}'@'localhost' IDENTIFIED BY '{password}'"))
            for host in ("%", "localhost"):
                conn.execute(text(f"GRANT SELECT ON `{db}`.* TO '{user}'@'{host}'"))
            drop = f"DROP USER '{user}'@'%'; DROP USER '{user}'@'localhost'"
    admin.dispose()
    return make_url(url).set(username=user, password=password).render_as_string(hide_password=False), drop


def test_pull_never_writes_to_the_source_without_a_feedback_table(dept: Node, source_url: str):
    item = dept.catalog.item("admin_penalty")
    src = create_engine(source_url)
    create_and_fill(src, penalty_table(item), penalty_db_rows(item, 50, unit=UNIT, bad_every=10))
    ro_url, drop = _readonly_url(source_url)
    try:
        pull = pull_for(dept, ro_url)
        assert drain(pull) == 50
        assert records(dept) == 45
        pull.close()
    finally:
        with src.connect() as conn:
            for stmt in drop.split("; "):
                conn.execute(text(stmt))
            conn.commit()
        src.dispose()


def _node_with_adapter(make_node: Any, url: str, *, batch_rows: int, page_rows: int) -> tuple[pathlib.Path, Node]:
    yaml = (f"adapters:\n- kind: database\n  item: admin_penalty\n  url: '{url}'\n  table: cf_penalties\n"
            f"  watermark: updated_at\n  batch_rows: {batch_rows}\n  page_rows: {page_rows}\n")
    return make_node(extra_yaml=yaml)  # type: ignore[no-any-return]


def _run(cfg: pathlib.Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "node", "--config", str(cfg), "adapters", "run",
                             "--until-idle", "--json", "--log-level", "WARNING", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)


def _position(store_url: str) -> tuple[Any, ...] | None:
    eng = create_engine(store_url)
    try:
        with eng.connect() as conn:
            value = conn.execute(text("SELECT value FROM meta WHERE key = 'adapter.database:cf_penalties.position'")
                                 ).scalar_one_or_none()
    finally:
        eng.dispose()
    return decode_position(value) if value else None


@pytest.mark.parametrize("kill_after_rows", [300, 1700])
def test_kill_9_mid_pull_then_restart_has_no_gap_and_no_repeat(make_node: Any, source_url: str,
                                                               kill_after_rows: int):
    cfg, node = _node_with_adapter(make_node, source_url, batch_rows=100, page_rows=500)
    item = node.catalog.item("admin_penalty")
    src = create_engine(source_url)
    # Far more rows than the kill point, so a fast pull cannot finish between two polls.
    total = 10_000
    create_and_fill(src, penalty_table(item), penalty_db_rows(item, total, unit=UNIT, bad_every=50))
    store_url = node.config.store_url
    node.close()
    proc = _run(cfg)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pos = _position(store_url)
        if pos is not None and pos[1] >= kill_after_rows:
            break
        if proc.poll() is not None:
            pytest.fail(f"the pull ended before it could be killed: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.05)  # polling another process's progress: bounded by the deadline
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    killed_at = _position(store_url)
    assert killed_at is not None and 0 < killed_at[1] < total
    second = _run(cfg)
    out, err = second.communicate(timeout=300)
    summary = json.loads(out)
    assert second.returncode == (1 if summary["rejected"] else 0), err  # 1: ran, and refused rows
    # Exactly the rows after the committed position come again: none skipped, none repeated.
    remaining = total - killed_at[1]
    assert summary["accepted"] + summary["rejected"] == remaining
    assert summary["duplicates"] == 0
    eng = create_engine(store_url)
    with eng.connect() as conn:
        stored = conn.execute(text("SELECT count(*), max(revision) FROM record_revisions")).one()
    eng.dispose()
    assert stored == (total - total // 50, 1)
    listed = subprocess.run([sys.executable, "-m", "node", "--config", str(cfg), "adapters", "list", "--json"],
                            capture_output=True, text=True, cwd=REPO, check=False)
    (adapter,) = json.loads(listed.stdout)
    assert adapter["name"] == "database:cf_penalties" and adapter["position"][1] == ["int", total]
    src.dispose()


def test_unknown_table_and_column_are_config_errors(dept: Node, pg_source_url: str):
    src = create_engine(pg_source_url)
    with src.begin() as conn:
        conn.execute(text("CREATE TABLE other (id int primary key)"))
    with pytest.raises(ConfigError, match="no table or view"):
        pull_for(dept, pg_source_url, table="nope").poll()
    with pytest.raises(ConfigError, match="no column 'updated_at'"):
        pull_for(dept, pg_source_url, table="other").poll()
    src.dispose()


def test_a_source_failure_in_the_worker_is_retryable_and_the_next_poll_resumes(dept: Node, pg_source_url: str):
    item = dept.catalog.item("admin_penalty")
    src = create_engine(pg_source_url)
    create_and_fill(src, penalty_table(item), penalty_db_rows(item, 30, unit=UNIT))
    pull = pull_for(dept, pg_source_url, worker=True)
    assert drain(pull) == 30
    with src.begin() as conn:
        conn.execute(text("ALTER TABLE cf_penalties RENAME TO cf_gone"))
    with pytest.raises(TransportError) as failed:
        pull.poll()
    assert failed.value.code == "E_ADAPTER_SOURCE" and failed.value.retryable
    assert "cf_penalties" in failed.value.message
    with src.begin() as conn:
        conn.execute(text("ALTER TABLE cf_gone RENAME TO cf_penalties"))
    insert_rows(src, penalty_table(item), penalty_db_rows(item, 5, unit=UNIT, start=500, seed=4))
    assert drain(pull) == 5
    assert records(dept) == 35
    pull.close()
    src.dispose()


def _peak_rss_mb(pid: int, seen: dict[int, float]) -> None:
    """Each process's own peak (VmHWM) in ``seen``: the node and its prepare worker."""
    pids = [pid]
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        pids += [int(c) for c in (task / "children").read_text().split()]
    for p in pids:
        try:
            status = pathlib.Path(f"/proc/{p}/status").read_text()
        except FileNotFoundError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                seen[p] = max(seen.get(p, 0.0), int(line.split()[1]) / 1024)


@pytest.mark.slow
def test_a_million_rows_are_pulled_in_bounded_memory(make_node: Any, pg_source_url: str):
    cfg, node = _node_with_adapter(make_node, pg_source_url, batch_rows=2000, page_rows=20000)
    item = node.catalog.item("admin_penalty")
    src = create_engine(pg_source_url)
    fill_postgres_fast(src, penalty_table(item), item, 1_000_000, unit=UNIT)
    store_url = node.config.store_url
    node.close()
    proc = _run(cfg)
    peaks: dict[int, float] = {}
    while proc.poll() is None:
        try:
            _peak_rss_mb(proc.pid, peaks)
        except FileNotFoundError:
            break
        time.sleep(0.5)  # sampling the child's memory while it works
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads(out)["accepted"] == 1_000_000
    # The node and its worker together: the sum of their own peaks bounds the combined one.
    assert len(peaks) == 2, peaks
    assert sum(peaks.values()) < 400, f"peak RSS {peaks} MB"
    eng = create_engine(store_url)
    with eng.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM record_heads")).scalar_one() == 1_000_000
    eng.dispose()
    src.dispose()


def test_a_text_key_identifies_a_refused_row_across_pulls(dept: Node, pg_source_url: str):
    item = dept.catalog.item("admin_penalty")
    src = create_engine(pg_source_url)
    table = penalty_table(item)
    good = {r["id"]: r for r in penalty_db_rows(item, 30, unit=UNIT)}
    create_and_fill(src, table, ({**r, "cf_wsh": None} if i in (7, 23) else r for i, r in good.items()))
    with src.begin() as conn:
        conn.execute(text("CREATE VIEW v_cases AS SELECT 'AJ-' || id AS case_no, * FROM cf_penalties"))
    pull = pull_for(dept, pg_source_url, table="v_cases", key=("case_no",), batch_rows=5, name="database:v")
    drain(pull)
    refused = dept.store.rejections.list_rejections(UNIT)
    assert len(refused) == 2 and len({r.row for r in refused}) == 2  # rows in different batches stay apart
    with src.begin() as conn:
        conn.execute(update(table).where(table.c.id.in_([7, 23])).values(
            cf_wsh=text("'杭上市监罚〔2026〕补' || id || '号'"), updated_at=BASE_TIME + dt.timedelta(days=3)))
    drain(pull)
    assert dept.store.rejections.list_rejections(UNIT) == []
    pull.close()
    src.dispose()


@pytest.mark.parametrize("scheme", ["postgresql+psycopg", "mysql+pymysql"])
def test_a_source_that_never_answers_fails_the_poll_instead_of_hanging_it(dept: Node, scheme: str):
    # The kernel completes the TCP handshake for a listening socket that never accepts: the
    # driver connects, then waits for a greeting that never comes (a hung or firewalled server).
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        pull = pull_for(dept, f"{scheme}://u@127.0.0.1:{port}/db", timeout_s=1)
        failed: list[BaseException] = []

        def poll() -> None:
            try:
                pull.poll()
            except BaseException as exc:  # handed to the test's thread
                failed.append(exc)

        polling = threading.Thread(target=poll, daemon=True)
        polling.start()
        polling.join(120)  # a bound far above timeout_s, only so that a regression fails, not hangs
        assert not polling.is_alive(), "the pull still waits on a source that never answers"
    assert len(failed) == 1 and isinstance(failed[0], TransportError)
    assert failed[0].code == "E_ADAPTER_SOURCE" and failed[0].retryable


def _stored(node: Node) -> dict[str, dict[str, str]]:
    """Each stored record's fields, by 文号."""
    from node.records import decode_body, fields_dict

    out = {}
    for row in node.store.records.iter_revisions():
        fields = fields_dict(decode_body(row.body))
        out[fields["CF_WSH"]] = fields
    return out


@pytest.mark.parametrize(("bad_id", "batch_rows"), [(5, 40), (9, 4)])  # in the first batch read, or after two
def test_a_date_the_driver_cannot_read_is_that_rows_problem_not_the_pulls(dept: Node, pg_source_url: str,
                                                                          bad_id: int, batch_rows: int):
    # 'infinity' (or a year past 9999) made psycopg fail the page: every pull stopped there for good.
    item = dept.catalog.item("admin_penalty")
    src = create_engine(pg_source_url)
    table = penalty_table(item)
    rows = list(penalty_db_rows(item, 12, unit=UNIT))
    create_and_fill(src, table, rows)
    with src.begin() as conn:
        conn.execute(text(f"UPDATE cf_penalties SET cf_jdrq = 'infinity' WHERE id = {bad_id}"))
    pull = pull_for(dept, pg_source_url, batch_rows=batch_rows)
    drain(pull)
    pull.close()
    src.dispose()
    [refused] = dept.store.rejections.list_rejections(UNIT)
    assert (refused.code, refused.field) == ("E_FIELD_DATE", "CF_JDRQ") and "infinity" in refused.message
    assert records(dept) == 11


def test_a_mariadb_timestamp_is_dated_in_beijing_whatever_the_servers_zone(dept: Node, mariadb_source_url: str):
    item = dept.catalog.item("admin_penalty")
    src = create_engine(mariadb_source_url)
    table = penalty_table(item)
    rows = list(penalty_db_rows(item, 3, unit=UNIT))
    create_and_fill(src, table, rows)
    with src.begin() as conn:
        conn.execute(text("ALTER TABLE cf_penalties MODIFY cf_jdrq TIMESTAMP NULL"))
        conn.execute(text("SET time_zone = '+08:00'"))  # the department's application, in Beijing
        conn.execute(text("UPDATE cf_penalties SET cf_jdrq = '2024-03-01 07:00:00' WHERE id = 1"))
        conn.execute(text("SET time_zone = '+00:00'"))  # a server in UTC, as the node's session would be
        assert conn.execute(text("SELECT cf_jdrq FROM cf_penalties WHERE id = 1")).scalar() == \
            dt.datetime(2024, 2, 29, 23, 0)
    pull = pull_for(dept, mariadb_source_url)
    drain(pull)
    pull.close()
    src.dispose()
    assert _stored(dept)[rows[0]["cf_wsh"]]["CF_JDRQ"] == "2024-03-01"


def test_a_watermark_in_the_future_is_got_past_by_resetting_the_position(make_node: Any, pg_source_url: str,
                                                                         caplog: pytest.LogCaptureFixture):
    import logging

    from click.testing import CliRunner

    from node.cli import cli

    cfg, node = _node_with_adapter(make_node, pg_source_url, batch_rows=10, page_rows=10)
    item = node.catalog.item("admin_penalty")
    src = create_engine(pg_source_url)
    table = penalty_table(item)
    rows = list(penalty_db_rows(item, 20, unit=UNIT))
    create_and_fill(src, table, rows)
    with src.begin() as conn:  # one row's update time mistyped far ahead: the position goes there
        conn.execute(update(table).where(table.c.id == 3).values(updated_at=dt.datetime(2099, 1, 1)))
    pull = pull_for(node, pg_source_url, name="database:cf_penalties")
    with caplog.at_level(logging.WARNING):
        drain(pull)
    warned = [r for r in caplog.records if r.getMessage() == "adapter.watermark_in_future"]
    assert warned and "adapters reset database:cf_penalties" in warned[0].remedy  # type: ignore[attr-defined]
    with src.begin() as conn:  # a correction made today is behind the position
        conn.execute(update(table).where(table.c.id == 7).values(cf_nr="更正后的处罚内容",
                                                                  updated_at=BASE_TIME + dt.timedelta(days=5)))
    assert drain(pull) == 0
    result = CliRunner().invoke(cli, ["--config", str(cfg), "adapters", "reset", "database:cf_penalties", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["position_was"] is not None and pull.position is None
    assert drain(pull) == 20  # read again: the correction as a new revision, the rest as duplicates
    assert _stored(node)[rows[6]["cf_wsh"]]["CF_NR"] == "更正后的处罚内容"
    assert "adapter.reset" in [e.action for e in node.store.audit.iter()]
    unknown = CliRunner().invoke(cli, ["--config", str(cfg), "adapters", "reset", "database:nope"])
    assert unknown.exit_code == 2 and "no database adapter" in unknown.output
    pull.close()
    src.dispose()


@pytest.mark.parametrize(("charset", "scheme"), [("latin1", "mysql+pymysql"), ("gbk", "mariadb+pymysql")])
def test_feedback_table_holds_any_text_whatever_the_mariadb_databases_default_charset(
        dept: Node, mariadb_source_url: str, charset: str, scheme: str):
    # Legacy department databases default to latin1 or gbk: a feedback table created in that
    # charset could not hold a refused row's Chinese key (latin1) or a rare character (gbk), and
    # every later poll failed at the same feedback write.
    item = dept.catalog.item("admin_penalty")
    src = create_engine(mariadb_source_url)
    table = penalty_table(item)
    rows = list(penalty_db_rows(item, 12, unit=UNIT))
    rows[4]["cf_jdrq"] = None  # refused
    rows[4]["cf_wsh"] = "杭上市监罚〔2026〕𠀀5号"
    create_and_fill(src, table, rows)
    with src.begin() as conn:
        conn.execute(text(f"ALTER DATABASE `{make_url(mariadb_source_url).database}` CHARACTER SET {charset}"))
        conn.execute(text("CREATE VIEW v_cases AS SELECT cf_wsh AS ajh, cf_penalties.* FROM cf_penalties"))
    url = make_url(mariadb_source_url).set(drivername=scheme).render_as_string(hide_password=False)
    pull = pull_for(dept, url, table="v_cases", key=("ajh",), feedback_table="credit_feedback", name="database:v")
    assert drain(pull) == 12
    assert drain(pull) == 0
    with src.connect() as conn:
        fb = conn.execute(text("SELECT source_key, field, code, reason FROM credit_feedback")).all()
    assert [(k, f, c) for k, f, c, _r in fb] == [("杭上市监罚〔2026〕𠀀5号", "CF_JDRQ", "E_FIELD_REQUIRED")]
    assert "处罚决定日期" in fb[0][3]
    pull.close()
    src.dispose()


def _without(table: Any, *dropped: str) -> Any:
    from sqlalchemy import Column, MetaData, Table

    return Table(table.name, MetaData(), *(Column(c.name, c.type) for c in table.columns if c.name not in dropped))


def test_a_column_dropped_after_the_start_fails_one_poll_then_the_table_is_read_in_its_new_shape(
        dept: Node, source_url: str, caplog: pytest.LogCaptureFixture):
    import logging

    # The shape read at the first poll was kept for good: a dropped optional column failed every
    # poll until the node restarted (and then read the table at once), a dropped required one
    # never said which field was now missing.
    item = dept.catalog.item("admin_penalty")
    src = create_engine(source_url)
    table = penalty_table(item)
    create_and_fill(src, table, penalty_db_rows(item, 10, unit=UNIT))
    pull = pull_for(dept, source_url, worker=True)
    assert drain(pull) == 10
    with src.begin() as conn:
        conn.execute(text("ALTER TABLE cf_penalties DROP COLUMN bz"))
    insert_rows(src, _without(table, "bz"), ({k: v for k, v in r.items() if k != "bz"}
                                            for r in penalty_db_rows(item, 3, unit=UNIT, start=50, seed=4)))
    with pytest.raises(TransportError) as failed:
        pull.poll()
    assert failed.value.code == "E_ADAPTER_SOURCE" and "bz" in failed.value.message
    with caplog.at_level(logging.WARNING, logger="adapters.database"):
        assert drain(pull) == 3
    [warned] = [r for r in caplog.records if r.getMessage() == "adapter.fields_not_read"]
    assert warned.fields == ["BZ"]  # type: ignore[attr-defined]
    assert records(dept) == 13
    with src.begin() as conn:
        conn.execute(text("ALTER TABLE cf_penalties DROP COLUMN cf_wsh"))
    insert_rows(src, _without(table, "bz", "cf_wsh"), ({k: v for k, v in r.items() if k not in ("bz", "cf_wsh")}
                                                      for r in penalty_db_rows(item, 1, unit=UNIT, start=60, seed=5)))
    with pytest.raises(TransportError):
        pull.poll()
    with pytest.raises(ConfigError, match="required field CF_WSH"):
        pull.poll()
    pull.close()
    src.dispose()
