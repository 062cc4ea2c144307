"""``credit-node calendar | disclosure | repair | deletion``: a record's life after collection.

Thin commands: parse, call one function of ``node.lifecycle``, print, exit (docs/lifecycle.md).
Objections and platform checks: ``node.commands.objections``.
"""

from __future__ import annotations

import datetime as dt
import pathlib
from typing import Any

import click

from node.cli import cli, emit_json, handle_errors, not_blank, open_node, when
from node.errors import UsageError


def _calendar_dir(ctx: click.Context, given: str | None) -> pathlib.Path:
    """--calendar, else the node's configured calendar (with --config), else the bundled one."""
    from node.lifecycle.calendar import bundled_calendar

    if given:
        return pathlib.Path(given)
    if ctx.obj and ctx.obj.get("config_path"):
        from node.config import load_config

        cfg = load_config(ctx.obj["config_path"])
        if cfg.lifecycle.calendar:
            return cfg.path(cfg.lifecycle.calendar)
    return bundled_calendar()


def _parse_date(text: str, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{name}: expected a date YYYY-MM-DD, got {text!r}", field=name) from None


@cli.group()
def calendar() -> None:
    """Working days (weekends, public holidays, make-up working days) for lifecycle deadlines."""


@calendar.command("add-days", context_settings={"ignore_unknown_options": True})  # N may be negative: -10
@click.argument("date")
@click.argument("n", type=click.IntRange(-3_650, 3_650))
@click.option("--calendar", "calendar_dir", type=click.Path(exists=True, file_okay=False),
              help="calendar directory (default: the node's, or the bundled one)")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def add_days(ctx: click.Context, date: str, n: int, calendar_dir: str | None, as_json: bool) -> None:
    """The N-th working day after DATE (before it for a negative N): a deadline's due date."""
    from node.lifecycle.calendar import WorkingCalendar

    cal = WorkingCalendar.load(_calendar_dir(ctx, calendar_dir))
    start = _parse_date(date, "DATE")
    due = cal.add_working_days(start, n)
    uncovered = cal.uncovered_years(start, due)
    provisional = cal.provisional_years(start, due)
    if as_json:
        emit_json({"date": start.isoformat(), "n": n, "due": due.isoformat(),
                   "working_day": cal.is_working_day(start), "uncovered_years": uncovered,
                   "provisional_years": provisional})
        return
    if uncovered:
        click.echo(f"warning: no calendar for {', '.join(map(str, uncovered))}: counted weekends only",
                   err=True)
    if provisional:
        click.echo(f"warning: the calendar for {', '.join(map(str, provisional))} is provisional (statutory "
                   "holidays only, no make-up working days yet): check the due date", err=True)
    click.echo(due.isoformat())


def _desk(node: Any) -> Any:
    from node.lifecycle.desk import build_desk

    return build_desk(node)


# --- disclosure periods ---------------------------------------------------------------------------
@cli.group()
def disclosure() -> None:
    """Disclosure periods (公示期限) and the archive."""


@disclosure.command("sweep")
@click.option("--dry-run", is_flag=True, help="report what would be archived, store nothing")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def disclosure_sweep(ctx: click.Context, dry_run: bool, as_json: bool) -> None:
    """Archive records past their disclosure window (a signed 'expired' revision each); idempotent."""
    from node.lifecycle.schedule import LAST_SWEEP_KEY

    with open_node(ctx) as node:
        report = _desk(node).sweep.run(dry_run=dry_run)
        if not dry_run:  # the day's sweep is done: a running node's schedule need not do it again
            node.store.meta.put(LAST_SWEEP_KEY, report.today.isoformat())
    if as_json:
        emit_json(report.as_dict() | {"dry_run": dry_run})
        return
    verb = "would archive" if dry_run else "archived"
    click.echo(f"{report.today}: examined {report.examined}, {verb} {len(report.moved)}"
               + "".join(f"\n  {item}: {n}" for item, n in sorted(report.by_item.items())))


# --- credit repair ----------------------------------------------------------------------------
@cli.group()
def repair() -> None:
    """Credit repair (信用修复): request, list, approve, reject."""


@repair.command("request")
@click.argument("record_id")
@click.option("--by", "by", required=True)
@click.option("--reason", required=True, callback=not_blank)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def repair_request(ctx: click.Context, record_id: str, by: str, reason: str, as_json: bool) -> None:
    """Apply for the repair of RECORD_ID (refused before the minimum period, naming the date)."""
    with open_node(ctx) as node:
        case = _desk(node).repairs.request(record_id, by=by, reason=reason)
    emit_json(case.as_dict()) if as_json else click.echo(f"{case.case_id}: requested")


@repair.command("list")
@click.option("--state", type=click.Choice(["requested", "approved", "rejected"]), default=None,
              help="only cases in this state (default: all)")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def repair_list(ctx: click.Context, state: str | None, as_json: bool) -> None:
    """Repair cases held here, newest first (their ids are what approve and reject take)."""
    with open_node(ctx) as node:
        cases = _desk(node).repairs.listing(state)
    if as_json:
        emit_json({"cases": [c.as_dict() for c in cases]})
        return
    for c in cases:
        click.echo(f"{c.case_id} [{c.state}] {c.subject_code} requested {when(c.requested_at_ms)}: {c.reason}")
    if not cases:
        click.echo("no repair cases")


@repair.command("approve")
@click.argument("case_id")
@click.option("--by", "by", default="", help="who decided for the source unit")
@click.option("--note", default="")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def repair_approve(ctx: click.Context, case_id: str, by: str, note: str, as_json: bool) -> None:
    """The source unit agrees: the record stops being disclosed publicly (a 'repaired' revision)."""
    with open_node(ctx) as node:
        case = _desk(node).repairs.approve(case_id, by=by, note=note)
    emit_json(case.as_dict()) if as_json else click.echo(
        f"{case.case_id}: approved; repaired as revision {case.repaired_revision}")


@repair.command("reject")
@click.argument("case_id")
@click.option("--reason", required=True, callback=not_blank)
@click.option("--by", "by", default="")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def repair_reject(ctx: click.Context, case_id: str, reason: str, by: str, as_json: bool) -> None:
    """The source unit refuses, with its reason."""
    with open_node(ctx) as node:
        case = _desk(node).repairs.reject(case_id, reason=reason, by=by)
    emit_json(case.as_dict()) if as_json else click.echo(f"{case.case_id}: rejected")


# --- deletion on request ------------------------------------------------------------------------
@cli.group()
def deletion() -> None:
    """Deleting a subject's own commendation, volunteer and charity records on its request."""


@deletion.command("request")
@click.argument("record_id")
@click.option("--by", "by", required=True)
@click.option("--reason", default="")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def deletion_request(ctx: click.Context, record_id: str, by: str, reason: str, as_json: bool) -> None:
    """Remove RECORD_ID from disclosure now (due within 2 working days) and tell its source unit."""
    with open_node(ctx) as node:
        done = _desk(node).deletions.request(record_id, by=by, reason=reason)
    emit_json(done.as_dict()) if as_json else click.echo(
        f"{done.record_id}: deleted as revision {done.revision}; source unit told via {done.told}")
