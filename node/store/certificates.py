"""Signer certificates learned from peers (``SubmitRequest.certificates``), kept by key id.

The inbox adds every certificate it accepted into the trust store here too, so that chains
stored today still verify after a restart (``all()`` feeds them back into the trust store).
"""

from __future__ import annotations

import time

from cryptography import x509
from sqlalchemy import Engine, select

from node.store._sql import insert_for, translated, write_transaction
from node.store.tables import certificates
from node.truststore import identity_of

__all__ = ["Certificates"]


class Certificates:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(self, key_id: bytes, der: bytes) -> None:
        """Remember ``der`` under ``key_id`` (idempotent: a known key id is left as it is)."""
        node_id = identity_of(x509.load_der_x509_certificate(der)).node_id
        row = {"key_id": key_id, "node_id": node_id, "der": der, "added_at_ms": time.time_ns() // 1_000_000}
        with translated("storing a certificate"), write_transaction(self._engine) as conn:
            conn.execute(insert_for(conn, certificates).values(**row).on_conflict_do_nothing(
                index_elements=["key_id"]))

    def all(self) -> list[bytes]:
        """Every stored certificate (DER), oldest first."""
        c = certificates.c
        with translated("reading certificates"), self._engine.connect() as conn:
            return [bytes(der) for (der,) in conn.execute(select(c.der).order_by(c.added_at_ms, c.key_id))]
