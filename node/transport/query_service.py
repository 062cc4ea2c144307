"""The ``Query`` service: ``Lookup`` (one subject's records) and ``VerifyList`` (核查 against lists).

Each call: who is calling (certificate, or the caller a federation node speaks for, with a signed
delegation) → abuse guard (block list, rate) → sharing switch → access policy (``node.access``) →
one indexed read of the subject's current records → what the caller may see, masked
(``node.disclosure``) → the query log entry, committed before the answer leaves
(``node.querylog``). Records were verified on the way in, so the read path checks no signatures.
Refusals by role, purpose, delegation or authorisation code are logged too; refusals by the block
list, the rate limit and the sharing switch are not (they would let a flood fill the log).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn, TypeAlias

import grpc

from node import access
from node.abuse import Guard, RateLimitedError, SharingSwitch, address_of
from node.authz import Authorizations, code_id
from node.catalog import Catalog
from node.config import AccessConfig
from node.disclosure import Disclosure
from node.errors import NodeError, NotAuthorizedError, UnknownItemError, UsageError
from node.fanout import SIGNING_CERT_METADATA, Fanout, merge_views, verify_delegation
from node.nodeid import Identity
from node.query import mistyped_code, normalized_subject
from node.querylog import QueryRecorder
from node.records import pb, rpc
from node.store import QueryLogEntry, Store
from node.transport.peers import CallerCache, abort_with, abort_with_async, vetted_caller
from node.transport.registration import register
from node.transport.threaded import CallCopy
from node.truststore import TrustStore

__all__ = ["MAX_VERIFY", "SERVICE_NAME", "QueryService", "build_query_service"]

log = logging.getLogger(__name__)

VERIFY_CODES_PER_TOKEN: Final = 100

SERVICE_NAME: Final = pb.DESCRIPTOR.services_by_name["Query"].full_name

MAX_VERIFY: Final = 10_000  # subject codes per VerifyList call
_FANOUT_MARGIN_S: Final = 0.05  # leave time to merge and answer within the caller's own deadline

_AioContext: TypeAlias = grpc.aio.ServicerContext[pb.LookupRequest, pb.LookupResponse]
# Lookup's work is the same on the loop and in a thread; it only reads from the context.
_AnyContext: TypeAlias = grpc.ServicerContext | _AioContext | CallCopy


@dataclass(frozen=True)
class _Asker:
    """The caller as the policy sees it, plus what the log needs to say about the call."""

    caller: access.Caller
    detail: dict[str, object] = field(default_factory=dict)


class QueryService(rpc.QueryServicer):  # type: ignore[misc]
    def __init__(self, *, node_id: str, catalog: Catalog, store: Store, trust: TrustStore,
                 settings: AccessConfig, guard: Guard, sharing: SharingSwitch, authz: Authorizations,
                 recorder: QueryRecorder, fanout: Fanout | None = None, delegators: Collection[str] = (),
                 today: Callable[[], dt.date] = access.today_in_china, callers: CallerCache | None = None,
                 uscc_allowlist: Collection[str] = ()) -> None:
        self._node_id = node_id
        self._catalog = catalog
        self._store = store
        self._trust = trust
        self._settings = settings
        self._disclosure = Disclosure(store.engine, catalog, node_id, access.Policy(disputed=settings.disputed))
        self._guard = guard
        self._sharing = sharing
        self._authz = authz
        self._recorder = recorder
        self._fanout = fanout
        self._delegators = frozenset(delegators)
        self._today = today
        self._callers = callers or CallerCache()
        self._allowlist = frozenset(uscc_allowlist)
        self._list_items = tuple(code for code, item in catalog.items.items() if item.is_list)

    @property
    def name(self) -> str:
        return "query-service"

    def register(self, server: grpc.aio.Server) -> None:
        register(rpc.add_QueryServicer_to_server, self, SERVICE_NAME, server)

    def start(self) -> None:
        """Nothing to start: channels to peer regions open on first use."""

    def stop(self) -> None:
        if self._fanout is not None:
            self._fanout.close()
        self._disclosure.close()

    def sharing_suspended(self) -> bool:
        """For ``Admin.Status``: the switch as this server sees it."""
        return self._sharing.suspended()

    # --- Lookup ------------------------------------------------------------------------------------
    async def Lookup(self, request: pb.LookupRequest, context: _AioContext) -> pb.LookupResponse:
        """Answered on the server's event loop, unless it asks other regions.

        A local lookup reads the store and, for a caller that is not public, queues its query
        log entry (``QueryRecorder.record_async``); neither holds up the loop, so the call runs
        inline without a hand-off to a thread. A fan-out waits for other regions for up to its
        deadline, so it runs in the loop's default executor (a thread).
        """
        try:
            if self._fans_out(request):
                loop = asyncio.get_running_loop()
                # The thread reads a copy of the call: the live one is freed if the caller gives up.
                return await loop.run_in_executor(None, self._lookup_in_thread, request, CallCopy(context))
            entries: list[QueryLogEntry] = []
            try:
                answer = self._lookup(request, context, entries.append)
            finally:  # refusals are logged too, and the log comes before the answer leaves
                if entries:
                    await self._recorder.record_async(*entries)
            return answer
        except NodeError as exc:
            await abort_with_async(context, exc, _status(exc))

    def _fans_out(self, request: pb.LookupRequest) -> bool:
        return self._fanout is not None and bool(self._fanout.peers) and not request.local_only

    def _lookup_in_thread(self, request: pb.LookupRequest, context: _AnyContext) -> pb.LookupResponse:
        with self._recorder.expecting():
            return self._lookup(request, context, self._recorder.record)

    def _lookup(self, request: pb.LookupRequest, context: _AnyContext,
                record: Callable[[QueryLogEntry], None]) -> pb.LookupResponse:
        who, address = self._gate(context)
        subject = _subject(request.subject_code)
        items = self._known_items(request.items)
        asker = self._asker(request, context, who, address, subject, "lookup", record)
        log = _LogLine(self._node_id, asker, subject, items, op="lookup")
        collect = None
        fanout = self._fanout if self._fans_out(request) else None
        if fanout is not None:
            collect = fanout.start(request, Identity(asker.caller.node_id, asker.caller.role),
                                   asker.caller.purpose, self._fanout_timeout(context))
        answer = pb.LookupResponse(subject_code=subject)
        rows = self._disclosure.current(subject, items)
        mistyped = None if rows else mistyped_code(subject, field="subject_code", allowlist=self._allowlist)
        if mistyped and items and self._disclosure.current(subject):
            mistyped = None  # held, of items not asked for: a subject without those records, not a typo
        if collect is None:
            if mistyped:
                raise mistyped  # held codes are answered whatever they are: a passport may be 18 characters
            count = self._disclosure.add_views(answer.records, rows, asker.caller, self._today())
        else:
            today = self._today()
            local = [v for v in (self._disclosure.view(r, asker.caller, today) for r in rows) if v is not None]
            answered = collect()
            # A region may hold a code this node would call mistyped (an early USCC on its own
            # allow-list): the code is refused only when no region answered a record for it.
            if mistyped and not answered.records:
                raise mistyped
            unavailable = sorted(set(answered.unavailable))
            merged = merge_views(local, answered.records, held={r.record_id: r.revision for r in rows})
            answer.records.extend(merged)
            answer.partial, count = bool(unavailable), len(merged)
            answer.unavailable_regions.extend(unavailable)
            log.detail.update(regions=[p.id for p in self._fanout.peers] if self._fanout else [],
                              unavailable=unavailable)
        _log(log.entry(count), record)
        return answer

    def _fanout_timeout(self, context: _AnyContext) -> float:
        timeout = self._settings.fanout_deadline_s
        remaining = context.time_remaining()
        if remaining is not None:
            timeout = min(timeout, max(0.0, remaining - _FANOUT_MARGIN_S))
        return timeout

    # --- VerifyList --------------------------------------------------------------------------------
    def VerifyList(self, request: pb.VerifyListRequest,
                   context: grpc.ServicerContext) -> pb.VerifyListResponse:
        try:
            return self._verify_list(request, context)
        except NodeError as exc:
            _abort(context, exc)

    def _verify_list(self, request: pb.VerifyListRequest, context: grpc.ServicerContext) -> pb.VerifyListResponse:
        # The request is checked before it is charged: a list refused for its size or a bad code
        # must get that answer whatever the caller's bucket holds, and cost it nothing.
        if len(request.subject_codes) > 2 * MAX_VERIFY:  # not even worth normalising
            raise UsageError(f"at most {MAX_VERIFY} subject codes per call; split the list", field="subject_codes")
        first_at: dict[str, str] = {}  # each code, and where it first stands in the request
        for i, x in enumerate(request.subject_codes):
            if x.strip():
                first_at.setdefault(normalized_subject(x, field=f"subject_codes[{i}]"), f"subject_codes[{i}]")
        codes = list(first_at)
        if len(codes) > MAX_VERIFY:
            raise UsageError(f"at most {MAX_VERIFY} subject codes per call; split the list", field="subject_codes")
        # A mistyped code would read as a subject on no list: refused, unless a record holds it.
        mistyped = [(code, error) for code, where in first_at.items()
                    if (error := mistyped_code(code, field=where, allowlist=self._allowlist))]
        # One token per VERIFY_CODES_PER_TOKEN subjects: checking 10,000 subjects is no single call's
        # worth of disclosure, and bulk scraping must meet the rate limit like lookups do.
        who, address = self._gate(context, cost=1 + len(codes) // VERIFY_CODES_PER_TOKEN)
        lists = self._known_items(request.items) or self._list_items
        not_lists = [i for i in lists if not self._catalog.item(i).is_list]
        if not_lists:
            raise UsageError(f"not list items: {', '.join(not_lists)}", field="items")
        lookup = pb.LookupRequest(context=request.context)
        asker = self._asker(lookup, context, who, address, "", "verify_list", self._recorder.record)
        log = _LogLine(self._node_id, asker, codes[0] if len(codes) == 1 else "", lists, op="verify_list")
        log.detail["subjects"] = codes
        today = self._today()
        hits = []
        for code, error in mistyped:  # rare: a read each
            if not self._disclosure.current(code, ()):
                raise error
        for row in self._disclosure.current_lists(codes, lists):
            view = self._disclosure.view(row, asker.caller, today)
            if view is not None:
                # With its status and marks: a revoked, repaired or disputed listing is no plain hit.
                hits.append(pb.ListHit(subject_code=view.subject_code, item=row.item, record_id=row.record_id,
                                       listed_on=row.decision_date, measures=list(view.measures),
                                       subject_name=view.subject_name, status=view.status, marks=list(view.marks)))
        _log(log.entry(len(hits)), self._recorder.record)
        return pb.VerifyListResponse(hits=hits, checked=len(codes), unchecked=[c for c in codes if len(c) != 18])

    # --- common ------------------------------------------------------------------------------------
    def _gate(self, context: _AnyContext, cost: int = 1) -> tuple[Identity, str]:
        """Certificate → block list and rate → sharing switch: refusals that are not logged."""
        who = vetted_caller(context, self._trust, cache=self._callers)
        address = address_of(context.peer())
        if who.role != "node":  # a node speaks for others: limited per original caller (_asker)
            self._guard.admit(address, who.node_id, cost=cost)
        self._sharing.check()
        return who, address

    def _asker(self, request: pb.LookupRequest, context: _AnyContext, who: Identity, address: str,
               subject: str, op: str, record: Callable[[QueryLogEntry], None]) -> _Asker:
        """Resolve delegation and the authorisation code, and apply the role rules (logged if refused)."""
        ctx = request.context
        detail: dict[str, object] = {"address": address}
        delegated = bool(ctx.on_behalf_of or ctx.delegation_signature)
        caller = access.Caller(who.node_id, who.role, access.stated_purpose(ctx.purpose))
        try:
            if delegated:
                cert = _metadata(context, SIGNING_CERT_METADATA)
                effective = verify_delegation(request, who, cert, self._trust, allowed_nodes=self._delegators,
                                              max_age_s=self._settings.delegation_max_age_s)
                detail["delegating_node"] = who.node_id
                caller = access.Caller(effective.node_id, effective.role, caller.purpose)
            access.admit(caller)
            if caller.role == "agency" and ctx.authorization_code and subject:
                detail["authz"] = code_id(ctx.authorization_code)
                caller = self._with_authorization(caller, ctx.authorization_code, subject, delegated, detail)
                self._within_authorization(caller, request.items, detail)
        except NotAuthorizedError as exc:
            detail["refused"] = exc.code
            if delegated:  # a security event whatever the role: public callers' lookups are not logged
                log.warning("lookup.delegation_refused", extra={
                    "peer": who.node_id, "role": who.role, "address": address, "code": exc.code,
                    "reason": exc.message, "on_behalf_of": ctx.on_behalf_of[:100]})
            line = _LogLine(self._node_id, _Asker(caller, detail), subject, tuple(request.items), op=op)
            _log(line.entry(0), record)
            raise
        if delegated:
            # Each original caller has its own bucket here, and the delegating node's address is
            # never blocked for what all its users do together.
            self._guard.admit(address, f"{caller.node_id} via {who.node_id}", block=False)
        return _Asker(caller, detail)

    def _with_authorization(self, caller: access.Caller, code: str, subject: str, delegated: bool,
                            detail: dict[str, object]) -> access.Caller:
        try:
            _id, items = self._authz.resolve(code, subject, caller.node_id)
        except NotAuthorizedError as exc:
            if delegated and exc.code == "E_AUTHZ_UNKNOWN":
                # Codes are issued by one node; a region that does not hold it answers class A only.
                detail["authz_result"] = exc.code
                return caller
            raise
        detail["authz_result"] = "valid"
        return access.Caller(caller.node_id, caller.role, caller.purpose, items)

    def _within_authorization(self, caller: access.Caller, items: Iterable[str], detail: dict[str, object]) -> None:
        """Refuse a code used for class-B items it does not name (E_AUTHZ_SCOPE), as one used for
        another subject is: the subject authorised those items only (seed 001 附件1 五(四)), and an
        answer without them would read as a subject without such records."""
        if detail.get("authz_result") != "valid":
            return  # no code, or one this region does not hold (class A only)
        uncovered = sorted({i.strip() for i in items} - caller.authorized_items - {""})
        uncovered = [i for i in uncovered if self._catalog.item(i).disclosure_class == "B"]
        if uncovered:
            raise NotAuthorizedError(f"authorisation {detail.get('authz', '')} does not cover {', '.join(uncovered)}",
                                     code="E_AUTHZ_SCOPE", field="authorization_code")

    def _known_items(self, items: Iterable[str]) -> tuple[str, ...]:
        out = tuple(dict.fromkeys(i.strip() for i in items if i.strip()))
        for code in out:
            try:
                self._catalog.item(code)
            except UnknownItemError as exc:  # its message names the catalogue's items; the field is the request's
                raise UnknownItemError(exc.message, field="items") from None
        return out



@dataclass
class _LogLine:
    node_id: str
    asker: _Asker
    subject: str
    items: Sequence[str]
    op: str
    detail: dict[str, object] = field(init=False)

    def __post_init__(self) -> None:
        self.detail = {"op": self.op, "region": self.node_id, **self.asker.detail}

    def entry(self, count: int) -> QueryLogEntry | None:
        """The query log entry, or None for a public caller (class A needs no log, DESIGN §4)."""
        caller = self.asker.caller
        if caller.role == "public":
            return None
        return QueryLogEntry(caller=caller.node_id, role=caller.role, purpose=caller.purpose,
                             subject=self.subject, items=list(self.items), result_count=count,
                             detail=self.detail)


def _log(entry: QueryLogEntry | None, record: Callable[[QueryLogEntry], None]) -> None:
    if entry is not None:
        record(entry)


def _abort(context: grpc.ServicerContext, exc: NodeError) -> NoReturn:
    abort_with(context, exc, _status(exc))


def _status(exc: NodeError) -> grpc.StatusCode | None:
    # Rate limits have their own gRPC status, so generic clients back off instead of giving up.
    return grpc.StatusCode.RESOURCE_EXHAUSTED if isinstance(exc, RateLimitedError) else None


def _subject(code: str) -> str:
    return normalized_subject(code, field="subject_code")


def _metadata(context: _AnyContext, key: str) -> bytes | None:
    for k, v in context.invocation_metadata() or ():
        if k == key:
            value: Any = v
            return value if isinstance(value, bytes) else None
    return None


def build_query_service(node: Any, *, callers: CallerCache | None = None,
                        channel_factory: Callable[[str], grpc.Channel] | None = None) -> QueryService:
    """The Query service of ``node`` (a ``node.app.Node``), wired from its configuration."""
    from node.transport.grpc_client import open_channel

    cfg = node.config
    store: Store = node.store
    by_target = {p.target: p for p in cfg.peers}
    factory = channel_factory or (lambda target: open_channel(target, node.identity,
                                                              server_name=by_target[target].server_name or None,
                                                              node_id=by_target[target].id))
    fanout = Fanout(cfg.id, node.identity.signing_key, node.identity.signing_cert_der, cfg.peers,
                    factory) if cfg.peers else None
    delegators = {p.id for p in cfg.peers} | ({cfg.parent.id} if cfg.parent else set())
    return QueryService(
        node_id=cfg.id, catalog=node.catalog, store=store, trust=node.trust, settings=cfg.access,
        guard=Guard(store, cfg.abuse), sharing=SharingSwitch(store, cache_s=cfg.abuse.cache_s),
        authz=Authorizations(store), recorder=QueryRecorder(store.queries), fanout=fanout,
        delegators=delegators, callers=callers, uscc_allowlist=cfg.validation.uscc_allowlist)
