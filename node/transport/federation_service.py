"""``Federation``: what a parent serves its children over gRPC (protos/federation.proto).

- ``Pull``: the child asks for what is addressed to it (the grpc transport's downward channel; the
  child always dials, docs/decisions/downward-channel.md). The parent first marks done the
  deliveries the child acknowledges (only that child's own), then leases up to ``max_records``
  due deliveries to it, signs them on with its HOP (rule ``down-to-source``) and sends each as a
  ``DownMessage`` carrying its delivery id; a delivery the child never acknowledges comes back when
  its lease runs out. It adds the current catalogue release if the child runs an older one, and
  the notices kept for the child after the child's cursor.
- ``Reconcile``: the parent's side of reconciliation (``node.reconciliation.answer``).

Only the parent's registered children may call (role ``node``, id in ``children``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc

from node.errors import NodeError, NotAuthorizedError, UsageError
from node.forwarding import HopSigner
from node.releases import version_key
from node.transport.peers import CallerCache, abort_with, caller_identity
from node.transport.registration import register
from node.transport.wire import fpb, frpc, submit_request

if TYPE_CHECKING:
    from node.app import Node
    from node.downward import Downward

__all__ = ["SERVICE_NAME", "FederationService"]

log = logging.getLogger(__name__)

SERVICE_NAME = "credit.v1.Federation"
MAX_PULL = 500
LEASE_MS = 60_000
_MAX_ID = 2**63 - 1


class FederationService(frpc.FederationServicer):  # type: ignore[misc]
    def __init__(self, node: Node, downward: Downward, callers: CallerCache | None = None,
                 on_contact: Callable[[str], None] | None = None) -> None:
        self._node = node
        self._on_contact = on_contact or (lambda _node_id: None)
        self._downward = downward
        self._children = {c.id for c in node.config.children}
        self._callers = callers or CallerCache()
        self._hops = HopSigner(node.signer, node.trust)

    def register(self, server: grpc.aio.Server) -> None:
        register(frpc.add_FederationServicer_to_server, self, SERVICE_NAME, server)

    def _child(self, context: grpc.ServicerContext) -> str:
        who = caller_identity(context, self._node.trust, cache=self._callers)
        if who.role != "node" or who.node_id not in self._children:
            abort_with(context, NotAuthorizedError(f"{who.node_id} is not a child of {self._node.config.id}",
                                                   code="E_SENDER_NOT_CHILD"))
        self._on_contact(who.node_id)
        return who.node_id

    def Pull(self, request: fpb.PullRequest, context: grpc.ServicerContext) -> fpb.PullResponse:
        child = self._child(context)
        try:
            return self._pull(child, request)
        except NodeError as exc:
            log.warning("federation.pull_failed", extra={"peer": child, "code": exc.code, "reason": exc.message})
            abort_with(context, exc)

    def _pull(self, child: str, request: fpb.PullRequest) -> fpb.PullResponse:
        # Ids and cursors are the store's signed 64-bit integers; a larger uint64 is no id we gave.
        if request.notice_cursor > _MAX_ID or any(d > _MAX_ID for d in request.acked):
            raise UsageError(f"acked ids and notice_cursor are at most {_MAX_ID}", field="acked")
        store = self._node.store
        now = time.time_ns() // 1_000_000
        if request.acked or request.resend_unacked:
            from node.store.deliveries import Deliveries

            deliveries = Deliveries(store.engine)
            if request.acked:
                deliveries.done_for(child, list(request.acked))
            if request.resend_unacked:
                deliveries.release(child, now)
        response = fpb.PullResponse(notice_cursor=request.notice_cursor)
        limit = min(request.max_records or MAX_PULL, MAX_PULL)
        items = store.outbox.claim(child, limit, now, lease_ms=LEASE_MS)
        if items:
            payload, certificates = self._hops.prepare(items)
            for item, record in zip(items, payload, strict=True):
                response.messages.append(fpb.DownMessage(records=submit_request([record], certificates),
                                                         delivery_id=item.id))
        release = self._downward.releases.current_release()
        if release is not None and version_key(release.version) > version_key(request.catalog_version or "0"):
            response.messages.append(fpb.DownMessage(catalog=release))
        notices, cursor = self._downward.notices_for(child, request.notice_cursor)
        response.messages.extend(fpb.DownMessage(notice=n) for n in notices)
        response.notice_cursor = cursor
        return response

    def Reconcile(self, request: fpb.ReconcileRequest, context: grpc.ServicerContext) -> fpb.ReconcileResponse:
        from node.reconciliation import answer

        child = self._child(context)
        try:
            return answer(self._node, child, request)
        except NodeError as exc:
            abort_with(context, exc)
