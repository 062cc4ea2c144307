"""``Admin.Status`` (what this node is and holds) and ``Admin.Echo`` (the benchmarks' baseline).

Status is for operators and other nodes: callers with role ``node``, ``admin``, ``auditor`` or
``gov``. It reports counts, not records, so it discloses nothing a query would. Echo answers any
authenticated caller: it does exactly the per-call work every service does (identify the caller,
check revocation) and nothing else, which is what makes it a fair baseline for ``Lookup``.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc

from node.catalog import Catalog
from node.config import NodeConfig
from node.errors import NodeError
from node.records import pb, rpc
from node.store import Store
from node.transport.contacts import PeerContacts
from node.transport.peers import (
    CallerCache,
    abort_with,
    abort_with_async,
    caller_identity,
    require_role,
    vetted_caller,
)
from node.transport.registration import register
from node.truststore import TrustStore

__all__ = ["SERVICE_NAME", "STATUS_ROLES", "AdminService"]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Admin"].full_name
STATUS_ROLES = frozenset({"node", "admin", "auditor", "gov"})


class AdminService(rpc.AdminServicer):  # type: ignore[misc]
    def __init__(self, *, config: NodeConfig, catalog: Catalog, store: Store, trust: TrustStore,
                 contacts: PeerContacts, sharing_suspended: Callable[[], bool] = lambda: False,
                 callers: CallerCache | None = None) -> None:
        self._config = config
        self._catalog = catalog
        self._store = store
        self._trust = trust
        self._contacts = contacts
        self._sharing_suspended = sharing_suspended
        self._callers = callers or CallerCache()

    def register(self, server: grpc.aio.Server) -> None:
        # Echo is the benchmarks' baseline (and cannot fail): served bare, as it always was.
        register(rpc.add_AdminServicer_to_server, self, SERVICE_NAME, server, unwrapped=("Echo",))

    def Status(self, request: pb.StatusRequest, context: grpc.ServicerContext) -> pb.StatusResponse:
        who = caller_identity(context, self._trust, cache=self._callers)
        require_role(context, who, STATUS_ROLES, "read the node's status")
        self._contacts.seen(who.node_id)
        try:
            counts = self._store.records.counts()
            depth = self._store.outbox.depth()
            suspended = self._sharing_suspended()
        except NodeError as exc:
            abort_with(context, exc)
        return pb.StatusResponse(
            node_id=self._config.id, level=self._config.level, catalog_version=self._catalog.version,
            counts=[pb.ItemCount(item=item, records=n) for item, n in sorted(counts.items())],
            outbox_depth=depth,
            peers=[pb.PeerStatus(node_id=c.node_id, relation=c.relation, last_contact_ms=c.last_contact_ms)
                   for c in self._contacts.snapshot()],
            sharing_suspended=suspended,
        )

    async def Echo(self, request: pb.EchoRequest,
                   context: grpc.aio.ServicerContext[pb.EchoRequest, pb.EchoResponse]) -> pb.EchoResponse:
        # A coroutine, like a local public Lookup: the baseline pays what such a lookup pays.
        try:
            vetted_caller(context, self._trust, cache=self._callers)
        except NodeError as exc:
            await abort_with_async(context, exc)
        return pb.EchoResponse(payload=request.payload)
