"""``credit-node objection | check``: objection cases (异议) and the platform's checks (信息自查).

Thin commands: parse, call one function of ``node.lifecycle``, print, exit (docs/lifecycle.md).
"""

from __future__ import annotations

import datetime as dt
import pathlib
from typing import Any

import click

from node.cli import cli, emit_json, handle_errors, not_blank, open_node, when
from node.errors import UsageError


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
    from node.lifecycle.case_limit import past_limit

    late = " OVERDUE" if case.overdue_on(today) else ""
    late += " PAST LIMIT" if past_limit(case, today) else ""
    if case.state == "closed" and case.limit_due and case.closed_on > case.limit_due:
        late += " CLOSED AFTER LIMIT"
    due = f" source due {case.source_due}" if case.source_due and case.state != "closed" else ""
    if case.limit_due:
        due += f" limit {case.limit_due}" + (f" (extended {case.extended_days})" if case.extended_days else "")
    outcome = f" → {case.outcome}" if case.outcome else ""
    kind = "check " if case.kind == "check" else ""
    return (f"{kind}{case.case_id} [{case.state}{outcome}]{late} filed {case.filed_on}{due} by {case.applicant}: "
            f"{case.reason}")


def _case_json(case: Any, today: dt.date) -> dict[str, object]:
    from node.lifecycle.case_limit import past_limit

    return dict(case.as_dict()) | {"overdue": case.overdue_on(today), "past_limit": past_limit(case, today)}


# --- objections ---------------------------------------------------------------------------------
@cli.group()
def objection() -> None:
    """Objections (异议): file, answer, deadlines, the 30-day limit and its extension, statements and their
    withdrawal (docs/lifecycle.md)."""


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
@click.option("--overdue", is_flag=True,
              help="only cases whose source missed its deadline or that are open past their 30-day limit")
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
        emit_json({"cases": [_case_json(c, today) for c in cases]})
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
        today = desk.objections.today()
    if as_json:
        emit_json({"case": _case_json(case, today), "events": [dict(e) for e in events]})
        return
    click.echo(_case_line(case, today))
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


@objection.command("withdraw-statement")
@click.argument("case_id")
@click.option("--by", "by", required=True, help="the applicant (its USCC or ID number)")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def objection_withdraw_statement(ctx: click.Context, case_id: str, by: str, as_json: bool) -> None:
    """Withdraw the applicant's own 申请人存疑 statement (seed 001 附件2 七); the log keeps it."""
    with open_node(ctx) as node:
        case = _desk(node).objections.withdraw_statement(case_id, by=by)
    if as_json:
        emit_json(case.as_dict())
    else:
        click.echo(f"{case.case_id}: statement withdrawn")


@objection.command("extend")
@click.argument("case_id")
@click.option("--working-days", "working_days", type=int, required=True,
              help="working days added to the case's limit (at most 15 for a case, in all)")
@click.option("--approval", required=True, callback=not_blank,
              help="the reference of the credit authority's approval (kept in the case and the audit log)")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def objection_extend(ctx: click.Context, case_id: str, working_days: int, approval: str, as_json: bool) -> None:
    """Extend the 30-day limit of an open objection, as approved (seed 001 附件2 三)."""
    with open_node(ctx) as node:
        case = _desk(node).objections.extend(case_id, working_days=working_days, approval=approval)
    if as_json:
        emit_json(case.as_dict())
    else:
        click.echo(f"{case.case_id}: to be done by {case.limit_due} (extended {case.extended_days} working days)")


@objection.command("tick")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def objection_tick(ctx: click.Context, as_json: bool) -> None:
    """Close cases whose answer arrived; withdraw records whose source missed its deadline; flag cases
    past their limit."""
    with open_node(ctx) as node:
        report = _desk(node).objections.tick()
    if as_json:
        emit_json(report.as_dict())
    else:
        click.echo(f"{len(report.answered)} answered, {len(report.overdue)} overdue, "
                   f"{len(report.past_limit)} past their limit")


# --- platform checks -----------------------------------------------------------------------------
@cli.group()
def check() -> None:
    """Platform checks (信息自查, seed 003 篇2 第三十三条): cases kept, answered and listed as objections.

    'conflicts check' opens one for each side of a conflict between two sources.
    """


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
