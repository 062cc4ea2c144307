"""Initial schema of the local store: records, heads, outbox, dead letters, rejections, logs.

A frozen snapshot, deliberately not generated from ``node.store.tables`` at run time: once
released, what this migration creates must never change. ``tests/store/test_migrations.py``
checks that it matches the tables module.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _chained(name: str, *columns: sa.Column) -> None:
    op.create_table(
        name,
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        *columns,
        sa.Column("prev_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=f"pk_{name}"),
    )


def upgrade() -> None:
    op.create_table(
        "record_revisions",
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("item", sa.String(64), nullable=False),
        sa.Column("subject_code", sa.String(64), nullable=False),
        sa.Column("subject_kind", sa.String(32), nullable=False),
        sa.Column("source_unit", sa.String(64), nullable=False),
        sa.Column("origin_node", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("decision_date", sa.String(10), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("body_digest", sa.LargeBinary(32), nullable=False),
        sa.Column("content_digest", sa.LargeBinary(32), nullable=False),
        sa.Column("signed", sa.LargeBinary(), nullable=False),
        sa.Column("received_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("received_from", sa.String(128), nullable=False),
        sa.Column("catalog_version", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("record_id", "revision", name="pk_record_revisions"),
    )
    op.create_index("ix_record_revisions_subject_code", "record_revisions", ["subject_code"])

    op.create_table(
        "record_heads",
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("item", sa.String(64), nullable=False),
        sa.Column("subject_code", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source_unit", sa.String(64), nullable=False),
        sa.Column("decision_date", sa.String(10), nullable=False),
        sa.Column("body_digest", sa.LargeBinary(32), nullable=False),
        sa.Column("content_digest", sa.LargeBinary(32), nullable=False),
        sa.Column("received_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("record_id", name="pk_record_heads"),
    )
    op.create_index("ix_record_heads_subject_code", "record_heads", ["subject_code"])
    op.create_index("ix_record_heads_item_decision_date", "record_heads", ["item", "decision_date"])

    op.create_table(
        "outbox",
        sa.Column("id", _AutoId, autoincrement=True, nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("destination", sa.String(128), nullable=False),
        sa.Column("rule_id", sa.String(64), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.CheckConstraint("state IN ('pending', 'done', 'dead')", name="ck_outbox_state"),
    )
    op.create_index("ix_outbox_destination_state_id", "outbox", ["destination", "state", "id"])

    op.create_table(
        "dead_letters",
        sa.Column("id", _AutoId, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("destination_or_sender", sa.String(128), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("replayed_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("outbox_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_dead_letters"),
        sa.CheckConstraint("kind IN ('outbox', 'inbound')", name="ck_dead_letters_kind"),
    )
    op.create_index("ix_dead_letters_kind_id", "dead_letters", ["kind", "id"])

    op.create_table(
        "rejections",
        sa.Column("id", _AutoId, autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.String(64), nullable=False),
        sa.Column("source", sa.String(255), nullable=False),
        sa.Column("source_unit", sa.String(64), nullable=False),
        sa.Column("item", sa.String(64), nullable=False),
        sa.Column("row", sa.BigInteger(), nullable=False),
        sa.Column("record_key", sa.String(255), nullable=False),
        sa.Column("field", sa.String(64), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("closed_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("closed_by_record_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_rejections"),
    )
    op.create_index(
        "ix_rejections_item_source_unit_record_key", "rejections", ["item", "source_unit", "record_key"]
    )
    op.create_index("ix_rejections_source_unit_closed_at_ms", "rejections", ["source_unit", "closed_at_ms"])

    _chained(
        "audit_log",
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
    )
    _chained(
        "query_log",
        sa.Column("caller", sa.String(128), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("items", sa.Text(), nullable=False),
        sa.Column("result_count", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
    )

    op.create_table(
        "certificates",
        sa.Column("key_id", sa.LargeBinary(32), nullable=False),
        sa.Column("node_id", sa.String(128), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("added_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", name="pk_certificates"),
    )
    op.create_index("ix_certificates_node_id", "certificates", ["node_id"])

    op.create_table(
        "meta",
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_meta"),
    )


def downgrade() -> None:
    for table in ("meta", "certificates", "query_log", "audit_log", "rejections", "dead_letters",
                  "outbox", "record_heads", "record_revisions"):
        op.drop_table(table)
