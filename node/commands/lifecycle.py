"""``credit-node calendar | objection | disclosure | repair | deletion``: a record's life after collection.

Thin commands: parse, call one function of ``node.lifecycle``, print, exit (docs/lifecycle.md).
"""

from __future__ import annotations

import datetime as dt
import pathlib

import click

from node.cli import cli, emit_json, handle_errors
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


@calendar.command("add-days")
@click.argument("date")
@click.argument("n", type=int)
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
    if as_json:
        emit_json({"date": start.isoformat(), "n": n, "due": due.isoformat(),
                   "working_day": cal.is_working_day(start), "uncovered_years": uncovered})
        return
    if uncovered:
        click.echo(f"warning: no calendar for {', '.join(map(str, uncovered))}: counted weekends only",
                   err=True)
    click.echo(due.isoformat())
