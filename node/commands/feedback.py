"""Feedback to sources and about them: ``rejections list``, ``conflicts list|resolve|check``, ``report sources``."""

from __future__ import annotations

import csv
import datetime as dt
import sys

import click

from node.cli import STORE_ID, cli, cli_actor, emit_json, handle_errors, not_blank, open_node, when
from node.errors import UsageError


@cli.group("rejections")
def rejections_group() -> None:
    """Rows refused by validation, kept for their source unit until a corrected version arrives."""


@rejections_group.command("list")
@click.option("--source", "source_unit", default=None, help="USCC of the source unit (default: every unit)")
@click.option("--open", "open_only", is_flag=True, help="only those not yet corrected")
@click.option("--batch", "batch_id", default=None, help="only those of one import or pull batch")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def list_rejections(ctx: click.Context, source_unit: str | None, open_only: bool, batch_id: str | None,
                    as_json: bool) -> None:
    """Refused rows with their field, code and reason; closed ones say what closed them."""
    from node.rejection import shown_record_key

    with open_node(ctx) as node:
        found = node.store.rejections.list_rejections(source_unit, open_only, batch_id=batch_id)
        items = node.catalog.items
    rows = [{"id": r.id, "source_unit": r.source_unit, "item": r.item, "source": r.source, "row": r.row,
             "record_key": shown_record_key(r.record_key, items.get(r.item)), "field": r.field, "code": r.code,
             "message": r.message, "created_at": when(r.created_at_ms), "closed_at": when(r.closed_at_ms),
             "closed_by": "" if r.closed_at_ms is None else (r.closed_by_record_id or "a later report")}
            for r in found]
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        state = f"closed {r['closed_at']} by {r['closed_by']}" if r["closed_at"] else "open"
        where = f" {r['field']}" if r["field"] else ""
        click.echo(f"#{r['id']} {r['item']} {r['source']} row {r['row']}{where}: {r['code']}: {r['message']} "
                   f"[{state}]")
    click.echo(f"{len(rows)} rejection(s)")


@rejections_group.command("close")
@click.argument("ids", nargs=-1, required=True, type=STORE_ID)
@click.option("--reason", required=True, callback=not_blank,
              help="why they will never be corrected (kept in the audit log)")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def close_rejections(ctx: click.Context, ids: tuple[int, ...], reason: str, as_json: bool) -> None:
    """Close open rejections whose row will never come back corrected (deleted, or moved and reported again)."""
    with open_node(ctx) as node:
        closed, not_open = node.store.rejections.close_by_hand(list(ids), actor=cli_actor(), reason=reason)
    if as_json:
        emit_json({"closed": closed, "not_open": not_open})
    else:
        if closed:
            click.echo(f"closed {', '.join(f'#{i}' for i in closed)}")
        if not_open:
            click.echo(f"not open (unknown, or closed already): {', '.join(f'#{i}' for i in not_open)}")
    sys.exit(1 if not_open else 0)


@cli.group("conflicts")
def conflicts_group() -> None:
    """Two source units reporting the same fact differently (flagged, never silently overwritten)."""


@conflicts_group.command("list")
@click.option("--all", "all_states", is_flag=True, help="closed ones too (resolved, agreed, revoked)")
@click.option("--item", default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def list_conflicts(ctx: click.Context, all_states: bool, item: str | None, as_json: bool) -> None:
    """Open conflicts: the fact, both reports and what differs."""
    from node.conflicts import Conflicts

    with open_node(ctx) as node:
        found = Conflicts(node.store.engine, actor=node.config.id).list_conflicts(
            state=None if all_states else "open", item=item)
    if as_json:
        emit_json([c.as_dict() for c in found])
        return
    for c in found:
        click.echo(f"#{c.id} [{c.state}] {c.item} {c.fact_key}")
        click.echo(f"    a: {c.record_a} rev {c.revision_a} from {c.source_unit_a}")
        click.echo(f"    b: {c.record_b} rev {c.revision_b} from {c.source_unit_b}")
        for name, (a, b) in c.differences.items():
            click.echo(f"    {name}: a={a!r} b={b!r}")
        if c.state != "open":
            click.echo(f"    {c.state}: kept {c.kept_record_id or '-'}; {c.note}")
    click.echo(f"{len(found)} conflict(s)")


@conflicts_group.command("resolve")
@click.argument("conflict_id", type=STORE_ID)
@click.option("--keep", required=True, help="record id of the report that is right")
@click.option("--note", required=True, help="why (kept with the decision and in the audit log)")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def resolve_conflict(ctx: click.Context, conflict_id: int, keep: str, note: str, as_json: bool) -> None:
    """Record which report of a conflict is right."""
    from node.conflicts import Conflicts

    with open_node(ctx) as node:
        c = Conflicts(node.store.engine, actor=node.config.id).resolve(conflict_id, keep=keep, note=note)
    if as_json:
        emit_json(c.as_dict())
    else:
        click.echo(f"conflict #{c.id} resolved: kept {c.kept_record_id}")


@conflicts_group.command("check")
@click.argument("conflict_id", type=STORE_ID)
@click.option("--reason", required=True, callback=not_blank, help="why both reports are checked (kept in each case)")
@click.option("--by", "by", default="", help="the operator opening them (default: this node)")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def check_conflict(ctx: click.Context, conflict_id: int, reason: str, by: str, as_json: bool) -> None:
    """Open a platform check (信息自查) of each side: both suspended, both source units asked."""
    from node.lifecycle.desk import build_desk

    with open_node(ctx) as node:
        cases = build_desk(node).checks.from_conflict(conflict_id, reason=reason, by=by)
    if as_json:
        emit_json({"conflict": conflict_id, "cases": [c.as_dict() for c in cases]})
    else:
        for c in cases:
            click.echo(f"{c.case_id}: 暂停披露; the source unit answers by {c.source_due}")


@cli.group("report")
def report_group() -> None:
    """Reports about the node's data."""


def _day(text: str, option: str) -> dt.date:
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--{option} is a date, YYYY-MM-DD (got {text!r})", field=option) from None
    if day.year >= 9999:  # the period's end + 1 day must still be a date
        raise UsageError(f"--{option} {text} is out of range", field=option)
    return day


# Excel runs a cell that starts with one of these as a formula (OWASP "CSV injection"); unit and
# item names below this node come from children's tallies, whatever they sent.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _text_cell(value: object) -> object:
    """``value``, a text that Excel would read as a formula prefixed with ' so it stays text."""
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA_START) else value


@report_group.command("sources")
@click.option("--since", required=True, help="first day of the period (YYYY-MM-DD)")
@click.option("--until", default=None, help="last day of the period (default: today)")
@click.option("--within-days", default=7, show_default=True, type=click.IntRange(0, 365),
              help="working days after the decision within which a report is on time")
@click.option("--source", "source_unit", default=None, help="only this source unit")
@click.option("--json", "as_json", is_flag=True)
@click.option("--csv", "as_csv", is_flag=True)
@click.pass_context
@handle_errors
def report_sources(ctx: click.Context, since: str, until: str | None, within_days: int, source_unit: str | None,
                   as_json: bool, as_csv: bool) -> None:
    """Reporting assessment (绩效考核) per source unit and item: volume, refusals, timeliness, completeness.

    Above a department, the refusals below are counted as each child's last 'reconcile' sent them.
    """
    from node.assessment import COLUMNS, AskedCalendar, assess, working_days_for

    first = _day(since, "since")
    last = _day(until, "until") if until else None
    if last is not None and last < first:
        raise UsageError(f"--until {last} is before --since {first}", field="until")
    if as_json and as_csv:
        raise UsageError("--json or --csv, not both")
    with open_node(ctx) as node:
        calendar = AskedCalendar(working_days_for(str(node.config.path(node.config.lifecycle.calendar))
                                                  if node.config.lifecycle.calendar else ""))
        reports = assess(node.store.engine, node.catalog, since=first, until=last, within_days=within_days,
                         calendar=calendar, source_unit=source_unit)
    rows = [r.as_dict() for r in reports]
    missing = calendar.missing_years()
    if as_json:
        emit_json({"since": first.isoformat(), "until": last.isoformat() if last else None,
                   "within_days": within_days, "calendar_missing_years": missing, "sources": rows})
        return
    if missing:
        # Not refused: the reports are there to assess; but a holiday in those years makes a
        # timely report look late, so whoever reads the figures is told.
        click.echo(f"warning: no working-day calendar for {', '.join(map(str, missing))}: timeliness in "
                   "those years is counted on weekdays (Monday to Friday), holidays and 调休 ignored", err=True)
    if as_csv:
        sys.stdout.write("\ufeff")  # Excel reads a BOM-less CSV as the local code page
        w = csv.DictWriter(sys.stdout, fieldnames=list(COLUMNS), lineterminator="\n")
        w.writeheader()
        w.writerows({k: _text_cell(v) for k, v in r.items()} for r in rows)
    else:
        for r in rows:
            t = "-" if r["timeliness"] is None else f"{float(r['timeliness']):.0%}"  # type: ignore[arg-type]
            c = "-" if r["completeness"] is None else f"{float(r['completeness']):.0%}"  # type: ignore[arg-type]
            click.echo(f"{r['source_unit']} {r['item']}: {r['reported']} reported ({r['new_records']} new), "
                       f"{r['refused']} refused ({float(r['refused_rate']):.1%}), "  # type: ignore[arg-type]
                       f"on time {t} ({r['late']} late), optional fields {c}")
        if not rows:
            click.echo("no reports in the period")
