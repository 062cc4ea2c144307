"""When did we last hear from each configured peer (parent, children, peers, sources)?

``Admin.Status`` reports it. Every exchange calls :meth:`PeerContacts.seen`: the servicers for
their callers, the forwarder after each batch its parent took, the AMQP consumers for each
message's sender, the downward puller after each pull and the federation service for each child
that pulls; times live in memory for the running node and are written to
``store.meta`` at most every ``persist_every_ms`` per peer (and on :meth:`flush`), so a restart
still knows the last contact without putting a write on every call of the hot path. Callers that
are not configured (a government system, an agency) are not tracked: their number is unbounded
and the query log already records them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from node.config import NodeConfig
from node.errors import StoreError
from node.store import Meta

__all__ = ["Contact", "PeerContacts", "relations_of"]

log = logging.getLogger(__name__)

META_PREFIX = "peer.last_contact."


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def relations_of(config: NodeConfig) -> dict[str, str]:
    """Every configured counterpart of this node and how it relates to it."""
    out: dict[str, str] = {}
    for source in config.sources:
        out[source.id] = "source"
    for peer in config.peers:
        out[peer.id] = "peer"
    for child in config.children:
        out[child.id] = "child"
    if config.parent is not None:
        out[config.parent.id] = "parent"
    return out


@dataclass(frozen=True)
class Contact:
    node_id: str
    relation: str
    last_contact_ms: int  # 0 = never


class PeerContacts:
    def __init__(self, meta: Meta, relations: Mapping[str, str], *, persist_every_ms: int = 30_000,
                 clock: Callable[[], int] = _now_ms) -> None:
        self._meta = meta
        self._relations = dict(relations)
        self._every = persist_every_ms
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, int] = {}
        self._persisted: dict[str, int] = {}
        for node_id in self._relations:
            try:
                value = meta.get(META_PREFIX + node_id)
            except StoreError as exc:
                log.warning("contacts.load_failed", extra={"peer": node_id, "code": exc.code})
                continue
            if value and value.isdigit():
                self._last[node_id] = self._persisted[node_id] = int(value)

    # As a runtime extension: nothing to start; on stop, keep the latest times across the restart.
    name = "peer-contacts"

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.flush()

    def seen(self, node_id: str, at_ms: int | None = None) -> None:
        """Note a contact with ``node_id`` (ignored when it is not a configured counterpart)."""
        if node_id not in self._relations:
            return
        now = self._clock() if at_ms is None else at_ms
        with self._lock:
            if now <= self._last.get(node_id, 0):
                return
            self._last[node_id] = now
            due = now - self._persisted.get(node_id, 0) >= self._every
            if due:
                self._persisted[node_id] = now
        if due:
            self._persist(node_id, now)

    def snapshot(self) -> list[Contact]:
        with self._lock:
            last = dict(self._last)
        return [Contact(node_id, relation, last.get(node_id, 0))
                for node_id, relation in sorted(self._relations.items(), key=lambda kv: (kv[1], kv[0]))]

    def flush(self) -> None:
        """Write every contact newer than its stored value (on stop)."""
        with self._lock:
            pending = {k: v for k, v in self._last.items() if v > self._persisted.get(k, 0)}
            self._persisted.update(pending)
        for node_id, at in pending.items():
            self._persist(node_id, at)

    def _persist(self, node_id: str, at_ms: int) -> None:
        try:
            self._meta.put(META_PREFIX + node_id, str(at_ms))
        except StoreError as exc:  # losing a last-contact time is not worth failing a call over
            log.warning("contacts.persist_failed", extra={"peer": node_id, "code": exc.code})
