"""Lifecycle cases: objections (异议) with their append-only event log, and credit repair requests.

``objections`` holds each case's current state (one row per case, never deleted);
``objection_events`` every step, append-only, so the objection log is kept permanently
(seed 001 附件2 八(一)); ``repair_requests`` each 信用修复 request and its decision
(node/lifecycle/, docs/lifecycle.md). Records themselves change only by new revisions.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "objections",
        sa.Column("case_id", sa.String(96), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("item", sa.String(64), nullable=False),
        sa.Column("subject_code", sa.String(64), nullable=False),
        sa.Column("applicant", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("evidence_name", sa.String(255), nullable=False),
        sa.Column("evidence_digest", sa.LargeBinary(32), nullable=True),
        sa.Column("evidence", sa.LargeBinary(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(24), nullable=False),
        sa.Column("filed_on", sa.String(10), nullable=False),
        sa.Column("source_due", sa.String(10), nullable=False),
        sa.Column("result_due", sa.String(10), nullable=False),
        sa.Column("closed_on", sa.String(10), nullable=False),
        sa.Column("withdrawn_revision", sa.Integer(), nullable=False),
        sa.Column("answer_revision", sa.Integer(), nullable=False),
        sa.Column("statement", sa.Text(), nullable=False),
        sa.Column("statement_until", sa.String(10), nullable=False),
        sa.Column("filed_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("case_id", name="pk_objections"),
        sa.CheckConstraint("state IN ('awaiting_source', 'overdue', 'closed')", name="ck_objections_state"),
    )
    op.create_index("ix_objections_record_id", "objections", ["record_id"])
    op.create_index("ix_objections_state_source_due", "objections", ["state", "source_due"])
    op.create_table(
        "objection_events",
        sa.Column("id", _AutoId, autoincrement=True, nullable=False),
        sa.Column("case_id", sa.String(96), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_objection_events"),
    )
    op.create_index("ix_objection_events_case_id_id", "objection_events", ["case_id", "id"])
    op.create_table(
        "repair_requests",
        sa.Column("case_id", sa.String(96), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("item", sa.String(64), nullable=False),
        sa.Column("subject_code", sa.String(64), nullable=False),
        sa.Column("applicant", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("decision_reason", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.String(128), nullable=False),
        sa.Column("repaired_revision", sa.Integer(), nullable=False),
        sa.Column("requested_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("decided_at_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("case_id", name="pk_repair_requests"),
        sa.CheckConstraint("state IN ('requested', 'approved', 'rejected')", name="ck_repair_requests_state"),
    )
    op.create_index("ix_repair_requests_record_id", "repair_requests", ["record_id"])
    op.create_index("ix_repair_requests_state", "repair_requests", ["state"])


def downgrade() -> None:
    op.drop_table("repair_requests")
    op.drop_table("objection_events")
    op.drop_table("objections")
