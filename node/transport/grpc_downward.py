"""A child's downward channel over grpc: pull from the parent's ``Federation.Pull`` (an extension).

The child dials, as it does to send records up, so a department's front machine (前置机) needs no
inbound port (docs/decisions/downward-channel.md). Each pull acknowledges the deliveries applied
since the last one, reports the catalogue release this node runs and its notice cursor (kept in
``meta``), and applies what comes back in order. A message this node will never accept (not
addressed to it, signature invalid, release not signed by its authority …) is kept in its inbound
dead letters and acknowledged; one that failed for a reason that may pass (the store was busy)
stops the round and is pulled again (the parent re-sends it when its lease runs out).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc

from node.backoff import Backoff
from node.errors import NodeError
from node.releases import version_key
from node.runtime import ThreadExtension
from node.transport.wire import fpb, frpc

if TYPE_CHECKING:
    from node.app import Node
    from node.downward import Downward

__all__ = ["NOTICE_CURSOR_KEY", "DownwardPuller"]

log = logging.getLogger(__name__)

NOTICE_CURSOR_KEY = "downward.notice_cursor"
IDLE_S = 1.0
TIMEOUT_S = 60.0


class DownwardPuller(ThreadExtension):
    name = "downward puller"

    def __init__(self, node: Node, downward: Downward, backoff: Backoff, *, idle_s: float = IDLE_S,
                 on_contact: Callable[[str], None] | None = None) -> None:
        self._node = node
        self._on_contact = on_contact or (lambda _node_id: None)
        self._downward = downward
        self._backoff = backoff
        self._idle_s = idle_s
        super().__init__()
        self._acked: list[int] = []
        # Until a response has been applied whole, what the parent leased us may be lost with us
        # (a crash) or half-applied: ask for it again at once rather than after its lease.
        self._resend = True
        # A release this node refused (not signed by its authority, or none configured): the
        # parent offers a release to every pull from a child running an older catalogue, so
        # without this each pull fetched and dead-lettered it again, hundreds a second.
        # Kept in memory: after a restart (with the configuration mended) it is offered again.
        self._refused_release = ""
        self.applied = 0
        self._channel: grpc.Channel | None = None

    def stop(self) -> None:
        # A Pull waits up to TIMEOUT_S for the parent: closing the channel cancels it at once, so
        # a hung parent does not hold the node's shutdown (messages not yet acknowledged come again).
        self._stop.set()
        channel = self._channel
        if channel is not None:
            channel.close()
        super().stop()

    def _run(self) -> None:
        from node.transport.grpc_client import error_from_rpc, open_channel

        parent = self._node.config.parent
        assert parent is not None
        failures = 0
        with open_channel(parent.target, self._node.identity, server_name=parent.server_name or None,
                          node_id=parent.id) as channel:
            self._channel = channel
            stub = frpc.FederationStub(channel)  # type: ignore[no-untyped-call]
            while not self._stop.is_set():
                try:
                    got = self.pull_once(stub, error_from_rpc)
                except NodeError as exc:
                    if self._stop.is_set():
                        return
                    failures += 1
                    log.warning("downward: pull from %s failed: %s", parent.id, exc)
                    self._stop.wait(self._backoff.delay(failures))
                    continue
                failures = 0
                self._on_contact(parent.id)
                if not got:
                    self._stop.wait(self._idle_s)

    def pull_once(self, stub: frpc.FederationStub, translate: object) -> int:
        """One pull: acknowledge, fetch, apply. Returns how many messages came."""
        meta = self._node.store.meta
        cursor = int(meta.get(NOTICE_CURSOR_KEY, "0") or 0)
        running = max((v for v in (self._node.catalog.version, self._downward.releases.current_version(),
                                   self._refused_release) if v), key=version_key, default="")
        request = fpb.PullRequest(acked=self._acked, catalog_version=running, notice_cursor=cursor, max_records=500,
                                  resend_unacked=self._resend)
        self._resend = True
        try:
            response: fpb.PullResponse = stub.Pull(request, timeout=TIMEOUT_S)
        except grpc.RpcError as exc:
            raise translate(exc) from None  # type: ignore[operator]
        self._acked = []
        sender = self._node.config.parent.id if self._node.config.parent else ""
        for message in response.messages:
            try:
                outcome = self._downward.apply(sender, message)
                log.info("downward: %s", outcome)
            except NodeError as exc:
                if exc.retryable:
                    raise  # not acknowledged: the parent sends it again
                log.warning("downward: refused a message from %s: %s", sender, exc)
                self._node.store.inbound.add(sender, exc.code, exc.message, message.SerializeToString())
                if message.HasField("catalog"):
                    self._refused_release = max((v for v in (self._refused_release, message.catalog.version) if v),
                                                key=version_key)
            self.applied += 1
            if message.delivery_id:
                self._acked.append(message.delivery_id)
        if response.notice_cursor != cursor:
            meta.put(NOTICE_CURSOR_KEY, str(response.notice_cursor))
        self._resend = False
        return len(response.messages)
