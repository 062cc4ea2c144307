"""``credit-node calendar | objection | check | disclosure | repair | deletion``: a record's life after collection.

Thin commands: parse, call one function of ``node.lifecycle``, print, exit (docs/lifecycle.md).
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


def _fields(pairs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        code, sep, value = pair.partition("=")
        if not sep or not code.strip():
            raise UsageError(f"--field takes CODE=VALUE, got {pair!r}", field="field")
        out[code.strip()] = value.strip()
    return out


def _case_line(case: Any, today: dt.date) -> str:
    late = " OVERDUE" if case.overdue_on(today) else ""
    due = f" source due {case.source_due}" if case.source_due and case.state != "closed" else ""
    outcome = f" → {case.outcome}" if case.outcome else ""
    kind = "check " if case.kind == "check" else ""
    return (f"{kind}{case.case_id} [{case.state}{outcome}]{late} filed {case.filed_on}{due} by {case.applicant}: "
            f"{case.reason}")


# --- objections ---------------------------------------------------------------------------------
@cli.group()
def objection() -> None:
    """Objections (异议): file, answer, deadlines, statements (docs/lifecycle.md)."""


@objection.command("file")
@click.argument("record_id")
@click.option("--by", "by", required=True, help="the subject objecting (its USCC or ID number)")
@click.option("--reason", required=True, callback=not_blank, help="the subject's grounds (kept in the case and the audit log)")
@click.option("--evidence", type=click.Path(exists=True, dir_okay=False), help="a file supporting the objection")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def objection_file(ctx: click.Context, record_id: str, by: str, reason: str, evidence: str | None,
                   as_json: bool) -> None:
    """Object to RECORD_ID: it is marked 异议正在处理 and checked, then sent to its source unit."""
    with open_node(ctx) as node:
        case = _desk(node).objections.file(record_id, by=by, reason=reason,
                                           evidence=pathlib.Path(evidence) if evidence else None)
    if as_json:
        emit_json(case.as_dict())
    elif case.state == "closed":
        click.echo(f"{case.case_id}: the platform's copy was wrong and is corrected (revision {case.revision})")
    else:
        click.echo(f"{case.case_id}: marked 异议正在处理; the source unit answers by {case.source_due}")


@objection.command("list")
@click.option("--overdue", is_flag=True, help="only cases whose source missed its deadline")
@click.option("--kind", type=click.Choice(["objection", "check"]), default=None,
              help="only a subject's objections, or the platform's checks (default: both)")
@click.option("--requests", is_flag=True, help="records marked elsewhere that this node's source unit must answer")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def objection_list(ctx: click.Context, overdue: bool, kind: str | None, requests: bool, as_json: bool) -> None:
    """Objection and check cases kept at this node (newest first)."""
    from node.lifecycle.objections import case_id_for

    with open_node(ctx) as node:
        desk = _desk(node)
        if requests:
            rows = desk.objections.requests()
            found = [{"case_id": case_id_for(r.record_id, r.revision), "record_id": r.record_id,
                      "item": r.item, "subject_code": r.subject_code, "marked_by": r.origin_node} for r in rows]
            if as_json:
                emit_json({"requests": found})
            for f in [] if as_json else found:
                click.echo(f"{f['case_id']} {f['item']} {f['subject_code']} (marked by {f['marked_by']})")
            return
        cases = [c for c in desk.objections.listing(overdue_only=overdue) if kind in (None, c.kind)]
        today = desk.objections.today()
    if as_json:
        emit_json({"cases": [c.as_dict() | {"overdue": c.overdue_on(today)} for c in cases]})
        return
    for case in cases:
        click.echo(_case_line(case, today))
    if not cases:
        click.echo("no overdue cases" if overdue else "no cases")


@objection.command("show")
@click.argument("case_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def objection_show(ctx: click.Context, case_id: str, as_json: bool) -> None:
    """One case and its log."""
    with open_node(ctx) as node:
        desk = _desk(node)
        case = desk.objections.cases.get(case_id)
        events = desk.objections.cases.events(case_id)
    if as_json:
        emit_json({"case": case.as_dict(), "events": [dict(e) for e in events]})
        return
    click.echo(_case_line(case, dt.date.min))
    for e in events:
        said = ", ".join(f"{k}={v}" for k, v in e["detail"].items() if v not in ("", None, [], {}))
        click.echo(f"  {when(e['at_ms'])} {e['actor']} {e['kind']}{': ' + said if said else ''}")


@objection.command("answer")
@click.argument("case_id")
@click.argument("action", type=click.Choice(["confirm", "correct", "revoke", "unverifiable"]))
@click.option("--field", "fields", multiple=True, help="CODE=VALUE of a corrected field (repeatable)")
@click.option("--note", default="")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def objection_answer(ctx: click.Context, case_id: str, action: str, fields: tuple[str, ...], note: str,
                     as_json: bool) -> None:
    """The source unit's answer to CASE_ID (RECORD_ID@REVISION): a new signed revision."""
    with open_node(ctx) as node:
        answer = _desk(node).objections.answer(case_id, action, fields=_fields(fields), note=note)
    if as_json:
        emit_json({"case_id": answer.case_id, "record_id": answer.record_id, "revision": answer.revision,
                   "status": answer.status, "case": answer.case.as_dict() if answer.case else None})
    else:
        click.echo(f"{answer.case_id}: {answer.status} as revision {answer.revision}")


@objection.command("statement")
@click.argument("case_id")
@click.option("--by", "by", required=True, help="the applicant (its USCC or ID number)")
@click.option("--text", required=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def objection_statement(ctx: click.Context, case_id: str, by: str, text: str, as_json: bool) -> None:
    """The applicant's 申请人存疑 statement on a closed case (kept 30 days as configured)."""
    with open_node(ctx) as node:
        case = _desk(node).objections.statement(case_id, by=by, text=text)
    if as_json:
        emit_json(case.as_dict())
    else:
        click.echo(f"{case.case_id}: statement shown until {case.statement_until}")


@objection.command("tick")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def objection_tick(ctx: click.Context, as_json: bool) -> None:
    """Close cases whose answer arrived; withdraw records whose source missed its deadline."""
    with open_node(ctx) as node:
        report = _desk(node).objections.tick()
    if as_json:
        emit_json(report.as_dict())
    else:
        click.echo(f"{len(report.answered)} answered, {len(report.overdue)} overdue")


# --- platform checks -----------------------------------------------------------------------------
@cli.group()
def check() -> None:
    """Platform checks (信息自查, seed 003 篇2 第三十三条): cases kept, answered and listed as objections."""


@check.command("open")
@click.argument("record_id")
@click.option("--reason", required=True, callback=not_blank, help="what the platform found untrue or incomplete")
@click.option("--by", "by", default="", help="the operator opening it (default: this node)")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def check_open(ctx: click.Context, record_id: str, reason: str, by: str, as_json: bool) -> None:
    """Suspend RECORD_ID from disclosure (暂停披露) and ask its source unit to check it."""
    with open_node(ctx) as node:
        case = _desk(node).checks.open(record_id, reason=reason, by=by)
    if as_json:
        emit_json(case.as_dict())
    else:
        click.echo(f"{case.case_id}: 暂停披露; the source unit answers by {case.source_due} "
                   "(objection answer CASE_ID confirm|correct|revoke)")


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
    with open_node(ctx) as node:
        report = _desk(node).sweep.run(dry_run=dry_run)
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
