"""Reporting assessment (绩效考核) over a real store: counts, refusals, timeliness, completeness."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import pathlib
import subprocess
import sys

import pytest

from node import identity
from node.app import Node, build_node
from node.assessment import Weekdays, assess, optional_fields, working_days_for
from node.config import load_config
from node.errors import ConfigError
from node.ingest import Ingest
from node.preparing import Preparer
from node.provisioning import init_node
from node.routing import Router
from node.sampledata import penalty_rows, unit_uscc
from node.store.tallies import Tally, TallyStore
from node.tabular import SourceRow
from node.validation import Validator
from node.values import CHINA

UNIT = unit_uscc("330102", "MB000001")
REPO = pathlib.Path(__file__).resolve().parents[1]


def at(day: str, hour: int = 10) -> int:
    return int(dt.datetime.combine(dt.date.fromisoformat(day), dt.time(hour), CHINA).timestamp() * 1000)


@pytest.fixture
def dept(tmp_path: pathlib.Path) -> tuple[pathlib.Path, Node]:
    ca = identity.init_ca(tmp_path / "ca")
    cfg = init_node(tmp_path / "n", node_id="dept:330102:scjgj", level="department", unit=UNIT, ca_dir=ca)
    node = build_node(load_config(cfg))
    yield cfg, node
    node.close()


def report(node: Node, rows: list[dict[str, str]], *, on: str, batch: str) -> None:
    """Ingest ``rows`` as if reported on day ``on`` (the node's clock set to that day)."""
    clock = lambda: at(on)  # noqa: E731
    validator = Validator(node.catalog, source_unit=UNIT)
    preparer = Preparer(node_id=node.config.id, catalog=node.catalog, validator=validator, clock=clock)
    ingest = Ingest(preparer=preparer, signer=node.signer, store=node.store,
                    router=Router(node.config.id, None), clock=clock)
    item = node.catalog.item("admin_penalty")
    ingest.ingest_batch(item, [SourceRow(i + 1, r) for i, r in enumerate(rows)], source="penalties.csv", batch_id=batch)


def decided(rows: list[dict[str, str]], day: str) -> list[dict[str, str]]:
    return [{**r, "CF_JDRQ": day, "CF_YXQ": "2027-12-31"} for r in rows]


def test_counts_refusals_timeliness_and_completeness(dept):
    _cfg, node = dept
    rows = list(penalty_rows(10, source_unit=UNIT))
    report(node, decided(rows[:4], "2026-01-05"), on="2026-01-09", batch="b1")  # 4 working days: on time
    report(node, decided(rows[4:6], "2026-01-05"), on="2026-01-20", batch="b2")  # 11 working days: late
    bad = decided(rows[6:8], "2026-01-05")
    bad[0]["CF_CFLB"] = "批评教育"
    bad[1]["CF_WSH"] = ""
    report(node, bad, on="2026-01-20", batch="b3")
    report(node, bad, on="2026-01-21", batch="b4")  # the same bad rows again: still two refused rows
    changed = decided(rows[:1], "2026-01-05")
    changed[0]["BZ"] = "补充备注"
    report(node, changed, on="2026-02-02", batch="b5")  # a change: reported, not a new record
    (r,) = assess(node.store.engine, node.catalog, since=dt.date(2026, 1, 1), calendar=Weekdays())
    assert (r.source_unit, r.item) == (UNIT, "admin_penalty")
    assert (r.reported, r.new_records, r.refused) == (7, 6, 2)
    assert r.refused_rate == round(2 / 9, 4)
    assert (r.timely, r.late, r.undated) == (4, 2, 0)
    assert r.mean_delay_days == round((4 * 4 + 2 * 11) / 6, 2)
    optional = optional_fields(node.catalog.item("admin_penalty"))
    assert "BZ" in optional and "CF_WSH" not in optional and "CF_XDR_SHXYM" not in optional
    assert 0 < r.completeness < 1  # type: ignore[operator]
    assert (r.first_reported, r.last_reported) == ("2026-01-09", "2026-02-02")
    # The period bounds what counts.
    (later,) = assess(node.store.engine, node.catalog, since=dt.date(2026, 1, 21), calendar=Weekdays())
    assert (later.reported, later.new_records, later.refused) == (1, 0, 2)
    assert assess(node.store.engine, node.catalog, since=dt.date(2026, 3, 1)) == []


def test_the_holiday_calendar_decides_timeliness(dept):
    _cfg, node = dept
    rows = decided(list(penalty_rows(1, source_unit=UNIT)), "2026-02-13")  # the Friday before 春节
    report(node, rows, on="2026-02-26", batch="spring")
    (weekdays,) = assess(node.store.engine, node.catalog, since=dt.date(2026, 2, 1), calendar=Weekdays())
    assert (weekdays.timely, weekdays.late, weekdays.mean_delay_days) == (0, 1, 9.0)
    # 2026-02-14 is a make-up working day, 02-15…02-23 are holidays: 4 working days.
    (calendar,) = assess(node.store.engine, node.catalog, since=dt.date(2026, 2, 1), calendar=working_days_for())
    assert (calendar.timely, calendar.late, calendar.mean_delay_days) == (1, 0, 4.0)


def test_weekdays_counts_after_a_up_to_b():
    w = Weekdays()
    monday = dt.date(2026, 1, 5)
    assert w.working_days_between(monday, monday) == 0
    assert w.working_days_between(monday, dt.date(2026, 1, 9)) == 4
    assert w.working_days_between(dt.date(2026, 1, 9), dt.date(2026, 1, 12)) == 1  # Friday → Monday
    assert w.working_days_between(monday, dt.date(2026, 1, 26)) == 15
    assert w.working_days_between(dt.date(2026, 1, 26), monday) == -15


def test_report_sources_cli_json_and_csv(dept):
    cfg, node = dept
    report(node, decided(list(penalty_rows(3, source_unit=UNIT)), "2026-01-05"), on="2026-01-06", batch="x")
    node.close()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "node", "--config", str(cfg), "report", "sources", *args],
                              capture_output=True, text=True, cwd=REPO, check=False)

    as_json = cli("--since", "2026-01-01", "--json")
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["within_days"] == 7 and data["sources"][0]["reported"] == 3 and data["sources"][0]["timely"] == 3
    as_csv = cli("--since", "2026-01-01", "--csv")
    assert as_csv.stdout.startswith("\ufeff")
    (row,) = list(csv.DictReader(io.StringIO(as_csv.stdout.lstrip("\ufeff"))))
    assert row["source_unit"] == UNIT and row["reported"] == "3"
    text = cli("--since", "2026-01-01")
    assert "3 reported (3 new)" in text.stdout
    bad = cli("--since", "January")
    assert bad.returncode == 2 and "YYYY-MM-DD" in bad.stderr
    backwards = cli("--since", "2026-02-01", "--until", "2026-01-01")
    assert backwards.returncode == 2 and "[until]" in backwards.stderr and "before" in backwards.stderr
    far = cli("--since", "2026-01-01", "--until", "9999-12-31")
    assert far.returncode == 2 and "out of range" in far.stderr


def test_a_configured_calendar_that_is_missing_is_refused_not_replaced_by_weekdays(dept, tmp_path):
    # 7 working days (seed 003 篇2 第十五条) counted without the holidays would call a report made
    # after 春节 late: a node whose lifecycle.calendar names no directory is told so, as its
    # objection deadlines are, instead of being assessed on weekdays.
    cfg, node = dept
    node.close()
    with pytest.raises(ConfigError) as err:
        working_days_for(str(tmp_path / "no-such-dir"))
    assert err.value.field == "lifecycle.calendar"
    cfg.write_text(cfg.read_text(encoding="utf-8") + "lifecycle:\n  calendar: no-such-dir\n", encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "node", "--config", str(cfg), "report", "sources", "--since",
                          "2026-02-01", "--json"], capture_output=True, text=True, cwd=REPO, check=False)
    assert run.returncode == 2, run.stdout
    assert json.loads(run.stdout)["error"]["field"] == "lifecycle.calendar"


def _cli(cfg: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node", "--config", str(cfg), "report", "sources", *args],
                          capture_output=True, text=True, cwd=REPO, check=False)


def test_csv_cells_that_excel_would_read_as_formulas_are_quoted(dept):
    # Tallies from below carry whatever unit and item names a child sent: a name starting with
    # = + - @ must open in Excel as text, not run as a formula.
    cfg, node = dept
    names = ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(1)"]
    TallyStore(node.store.engine).replace(
        "district:330102", [Tally("dept:330102:other", name, "admin_penalty", "2026-01-05", 1) for name in names],
        at("2026-01-06"))
    node.close()
    run = _cli(cfg, "--since", "2026-01-01", "--csv")
    assert run.returncode == 0, run.stderr
    rows = list(csv.DictReader(io.StringIO(run.stdout.lstrip("\ufeff"))))
    assert sorted(r["source_unit"] for r in rows) == sorted("'" + n for n in names)
    assert all(r["refused"] == "1" for r in rows)


def test_a_period_the_calendar_does_not_cover_is_counted_on_weekdays_and_said(dept):
    cfg, node = dept
    rows = list(penalty_rows(3, source_unit=UNIT))
    # Decided on Monday 2024-12-30 (2024 has no calendar file), reported on 2025-01-03 (元旦 off).
    report(node, decided(rows[:2], "2024-12-30"), on="2025-01-03", batch="y")
    report(node, decided(rows[2:], "2025-01-06"), on="2025-01-08", batch="z")
    node.close()
    run = _cli(cfg, "--since", "2024-12-01", "--json")
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["calendar_missing_years"] == [2024], run.stdout
    (row,) = data["sources"]
    # 12-31 counted as a weekday, 01-01 a holiday of the 2025 file, 01-02, 01-03; then 01-07, 01-08.
    assert row["mean_delay_days"] == round((3 + 3 + 2) / 3, 2)
    text = _cli(cfg, "--since", "2024-12-01")
    assert "2024" in text.stderr and "weekdays" in text.stderr
    covered = _cli(cfg, "--since", "2025-01-05", "--json")
    assert json.loads(covered.stdout)["calendar_missing_years"] == []
    assert "weekdays" not in _cli(cfg, "--since", "2025-01-05").stderr


def test_an_operator_setting_a_record_active_again_is_not_a_report_of_its_source(dept):
    # `downward revise --status active` (a record put back after a dispute) is the platform's
    # lifecycle change, made with a reason; the source reported nothing.
    from sqlalchemy import select

    from node.downward import Downward
    from node.store.tables import record_revisions

    _cfg, node = dept
    report(node, decided(list(penalty_rows(1, source_unit=UNIT)), "2026-01-05"), on="2026-01-06", batch="r")
    with node.store.engine.connect() as conn:
        (record_id,) = conn.execute(select(record_revisions.c.record_id)).scalars()
    Downward(node).revise(record_id, status="disputed", reason="异议处理中")
    Downward(node).revise(record_id, status="active", reason="异议不成立，恢复公示")
    (r,) = assess(node.store.engine, node.catalog, since=dt.date(2026, 1, 1), calendar=Weekdays())
    assert (r.reported, r.new_records, r.last_reported) == (1, 1, "2026-01-06")


def test_a_source_changing_a_disputed_record_is_a_report_though_the_record_stays_disputed(dept):
    from sqlalchemy import select

    from node.downward import Downward
    from node.store.tables import record_revisions

    _cfg, node = dept
    rows = decided(list(penalty_rows(1, source_unit=UNIT)), "2026-01-05")
    report(node, rows, on="2026-01-06", batch="r")
    with node.store.engine.connect() as conn:
        (record_id,) = conn.execute(select(record_revisions.c.record_id)).scalars()
    Downward(node).revise(record_id, status="disputed", reason="异议处理中")
    report(node, [{**rows[0], "BZ": "来源单位更正"}], on="2026-12-01", batch="s")
    (r,) = assess(node.store.engine, node.catalog, since=dt.date(2026, 1, 1), calendar=Weekdays())
    assert (r.reported, r.new_records, r.last_reported) == (2, 1, "2026-12-01")
