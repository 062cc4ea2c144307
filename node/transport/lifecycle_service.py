"""The ``Lifecycle`` service: a subject's objections (异议) over gRPC, for a portal.

``FileObjection``, ``GetObjection``, ``AttachStatement`` and ``WithdrawStatement`` do what
``credit-node objection file``, ``objection show``, ``objection statement`` and
``objection withdraw-statement`` do, through the same
:class:`node.lifecycle.objection_service.ObjectionService` (docs/lifecycle.md).

Who may call is decided from the caller's certificate (``caller_identity``), never from the
request: a ``self`` certificate (``self:<subject code>``) acts for its own subject only; a
``gov`` certificate named in ``lifecycle.portals`` (a credit portal, which signs the subject in)
acts for the subject it names. Any other ``gov`` certificate, and every other role, is refused
(``E_NOT_AUTHORIZED``): an objection suspends a record, so not every government user may file one
in a subject's name. The subject acted for must be the record's
subject, else the record answers as one that does not exist (``NOT_FOUND``, ``E_NOT_FOUND``; at the
CLI ``E_OBJECTION_NOT_SUBJECT``); a case is read and given a statement only by its
applicant: to anyone else it answers as a case that does not exist (``NOT_FOUND``,
``E_OBJECTION_UNKNOWN``), so no one learns that another subject's record is held or disputed. The
caller's certificate id is kept in the case log (``via``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Final

import grpc

from node.access import self_subject
from node.errors import NodeError, NotAuthorizedError, NotFoundError, UsageError
from node.identifiers import normalize_text
from node.lifecycle import objections as sm
from node.lifecycle.case_limit import past_limit
from node.lifecycle.evidence import Evidence
from node.lifecycle.objection_service import ObjectionService, no_record
from node.nodeid import Identity
from node.records import pb, rpc
from node.transport.peers import CallerCache, abort_with, caller_identity, require_role
from node.transport.registration import register
from node.truststore import TrustStore

__all__ = ["FILING_ROLES", "SERVICE_NAME", "LifecycleService"]

SERVICE_NAME: Final = pb.DESCRIPTOR.services_by_name["Lifecycle"].full_name
FILING_ROLES: Final = frozenset({"self", "gov"})
_NOT_APPLICANT: Final = frozenset({"E_OBJECTION_NOT_SUBJECT", "E_STATEMENT_NOT_APPLICANT"})


class LifecycleService(rpc.LifecycleServicer):  # type: ignore[misc]
    def __init__(self, *, objections: ObjectionService, trust: TrustStore,
                 callers: CallerCache | None = None, portals: Collection[str] = ()) -> None:
        self._objections = objections
        self._trust = trust
        self._callers = callers or CallerCache()
        self._portals = frozenset(portals)

    @property
    def name(self) -> str:
        return "lifecycle-service"

    def register(self, server: grpc.aio.Server) -> None:
        register(rpc.add_LifecycleServicer_to_server, self, SERVICE_NAME, server)

    # --- the calls ----------------------------------------------------------------------------
    def FileObjection(self, request: pb.FileObjectionRequest, context: grpc.ServicerContext) -> pb.ObjectionCase:
        who = self._caller(context, "file an objection")
        try:
            subject = _acting_for(who, request.subject_code)
            record_id = request.record_id.strip()
            if not record_id:
                raise UsageError("give the record id the objection concerns", field="record_id")
            evidence = _evidence(request.evidence_name, request.evidence) if request.evidence else None
            try:
                case = self._objections.file(record_id, by=subject, reason=request.reason, evidence=evidence,
                                             via=who.node_id)
            except NotAuthorizedError as exc:
                if exc.code != "E_OBJECTION_NOT_SUBJECT":
                    raise
                # Another subject's record: answered as an unknown one, or an id computed from public
                # facts (item, unit, decision number, subject) would tell whether it is held here.
                raise no_record(record_id) from None
            return self._view(case)
        except NodeError as exc:
            abort_with(context, exc)

    def GetObjection(self, request: pb.GetObjectionRequest, context: grpc.ServicerContext) -> pb.ObjectionCase:
        who = self._caller(context, "read an objection")
        try:
            subject = _acting_for(who, request.subject_code)
            case_id = _case_id(request.case_id)
            with _only_own_cases(case_id, subject):
                case = self._objections.cases.get(case_id)
                _require_applicant(case, subject)
            return self._view(case, steps=True)
        except NodeError as exc:
            abort_with(context, exc)

    def AttachStatement(self, request: pb.AttachStatementRequest,
                        context: grpc.ServicerContext) -> pb.ObjectionCase:
        who = self._caller(context, "attach a statement to an objection")
        try:
            subject = _acting_for(who, request.subject_code)
            case_id = _case_id(request.case_id)
            with _only_own_cases(case_id, subject):
                case = self._objections.statement(case_id, by=subject, text=request.text, via=who.node_id)
            return self._view(case)
        except NodeError as exc:
            abort_with(context, exc)

    def WithdrawStatement(self, request: pb.WithdrawStatementRequest,
                          context: grpc.ServicerContext) -> pb.ObjectionCase:
        who = self._caller(context, "withdraw a statement")
        try:
            subject = _acting_for(who, request.subject_code)
            case_id = _case_id(request.case_id)
            with _only_own_cases(case_id, subject):
                case = self._objections.withdraw_statement(case_id, by=subject, via=who.node_id)
            return self._view(case)
        except NodeError as exc:
            abort_with(context, exc)

    # --- common -------------------------------------------------------------------------------
    def _caller(self, context: grpc.ServicerContext, what: str) -> Identity:
        who = caller_identity(context, self._trust, cache=self._callers)
        require_role(context, who, FILING_ROLES, what)
        if who.role == "gov" and who.node_id not in self._portals:
            abort_with(context, NotAuthorizedError(
                f"{who.node_id} is not a credit portal of this node (lifecycle.portals): only a subject, or a "
                f"portal acting for one, may {what}"))
        return who

    def _view(self, case: sm.Case, *, steps: bool = False) -> pb.ObjectionCase:
        out = pb.ObjectionCase(
            case_id=case.case_id, record_id=case.record_id, revision=case.revision, item=case.item,
            subject_code=case.subject_code, reason=case.reason, state=case.state, outcome=case.outcome,
            filed_on=case.filed_on, source_due=case.source_due, result_due=case.result_due,
            closed_on=case.closed_on, overdue=case.overdue_on(self._objections.today()),
            evidence_name=case.evidence_name, evidence_digest=case.evidence_digest or b"",
            statement=case.statement, statement_until=case.statement_until, limit_due=case.limit_due,
            extended_days=case.extended_days, past_limit=past_limit(case, self._objections.today()))
        if steps:
            out.steps.extend(pb.ObjectionStep(kind=str(e["kind"]), at_ms=int(e["at_ms"]), state=str(e["state"] or ""))
                             for e in self._objections.cases.events(case.case_id))
        return out


def _acting_for(who: Identity, requested: str) -> str:
    """The subject the caller acts for: a ``self`` certificate's own, or the one a ``gov`` portal names."""
    subject = normalize_text(requested).upper()
    if who.role == "self":
        own = self_subject(who.node_id)
        if subject and subject != own:
            raise NotAuthorizedError(f"{who.node_id} acts for its own subject only, not {subject}",
                                     code="E_OBJECTION_NOT_SUBJECT", field="subject_code")
        return own
    if not subject:
        raise UsageError("give the subject the portal acts for (its USCC or ID number)", field="subject_code")
    return subject


def _require_applicant(case: sm.Case, subject: str) -> None:
    if case.applicant != subject:
        raise NotAuthorizedError(f"case {case.case_id} was filed by another subject",
                                 code="E_OBJECTION_NOT_SUBJECT", field="subject_code")


@contextmanager
def _only_own_cases(case_id: str, subject: str) -> Iterator[None]:
    """Another subject's case answers exactly as a case that does not exist.

    Telling them apart would tell any subject, or the portal, that a record is under objection,
    which a record suspended while disputed otherwise hides from them.
    """
    try:
        yield
    except (NotFoundError, NotAuthorizedError) as exc:
        if isinstance(exc, NotAuthorizedError) and exc.code not in _NOT_APPLICANT:
            raise
        raise NotFoundError(f"no objection case {case_id} of subject {subject}", code="E_OBJECTION_UNKNOWN",
                            field="case_id") from None


def _case_id(text: str) -> str:
    case_id = text.strip()
    sm.parse_case_id(case_id)  # E_OBJECTION_UNKNOWN for what cannot be a case id
    return case_id


def _evidence(name: str, data: bytes) -> Evidence:
    """Only the last part of the name a client sends is kept (``evidence_name``: it names a file)."""
    return Evidence(name, bytes(data))
