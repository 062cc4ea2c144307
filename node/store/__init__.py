"""The node's local store: SQLAlchemy 2 Core over SQLite (embedded) or PostgreSQL (production).

``Store(engine)`` bundles the parts a node uses; each part is also usable on its own::

    engine = open_engine("sqlite:///var/node.db")
    migrate(engine)
    store = Store(engine)
    result = store.records.append(rows, outbox=entries, audit=[event])
"""

from __future__ import annotations

from sqlalchemy import Engine

from node.store.audit import AuditEvent, AuditLog, HashChainLog, IntegrityProblem, QueryLog, QueryLogEntry
from node.store.certificates import Certificates
from node.store.deadletters import DeadLetter, InboundDeadLetters
from node.store.engine import migrate, open_engine
from node.store.meta import Meta
from node.store.outbox import Outbox, OutboxItem
from node.store.records import AppendResult, Head, OutboxEntry, RecordRow, RecordStore
from node.store.rejections import Rejection, RejectionKey, RejectionRow, RejectionStore

__all__ = [
    "AppendResult",
    "AuditEvent",
    "AuditLog",
    "Certificates",
    "DeadLetter",
    "HashChainLog",
    "Head",
    "InboundDeadLetters",
    "IntegrityProblem",
    "Meta",
    "Outbox",
    "OutboxEntry",
    "OutboxItem",
    "QueryLog",
    "QueryLogEntry",
    "RecordRow",
    "RecordStore",
    "Rejection",
    "RejectionKey",
    "RejectionRow",
    "RejectionStore",
    "Store",
    "migrate",
    "open_engine",
]


class Store:
    """One engine, every part of the store. ``close()`` releases the engine's connections."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.records = RecordStore(engine)
        self.outbox = Outbox(engine)
        self.audit = AuditLog(engine)
        self.queries = QueryLog(engine)
        self.rejections = RejectionStore(engine)
        self.inbound = InboundDeadLetters(engine)
        self.meta = Meta(engine)
        self.certificates = Certificates(engine)

    @classmethod
    def open(cls, url: str, *, migrate_schema: bool = True) -> Store:
        """Open ``url`` and (by default) bring its schema up to date."""
        engine = open_engine(url)
        if migrate_schema:
            migrate(engine)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
