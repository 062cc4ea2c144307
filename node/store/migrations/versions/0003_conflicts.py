"""Conflicts between sources: the fact index and the conflicts raised from it (node/conflicts.py).

``facts`` notes, per source-independent fact key (item + natural key) and source unit, which
record reported it and the substance compared; ``conflicts`` holds each disagreement between two
units until the platform resolves it (or the sources agree again).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "facts",
        sa.Column("fact_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("source_unit", sa.String(64), nullable=False),
        sa.Column("item", sa.String(64), nullable=False),
        sa.Column("fact_key", sa.String(255), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("substance", sa.Text(), nullable=False),
        sa.Column("seen_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("fact_hash", "source_unit", name="pk_facts"),
    )
    op.create_table(
        "conflicts",
        sa.Column("id", _AutoId, autoincrement=True, nullable=False),
        sa.Column("item", sa.String(64), nullable=False),
        sa.Column("fact_key", sa.String(255), nullable=False),
        sa.Column("fact_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("record_a", sa.String(64), nullable=False),
        sa.Column("source_unit_a", sa.String(64), nullable=False),
        sa.Column("revision_a", sa.Integer(), nullable=False),
        sa.Column("record_b", sa.String(64), nullable=False),
        sa.Column("source_unit_b", sa.String(64), nullable=False),
        sa.Column("revision_b", sa.Integer(), nullable=False),
        sa.Column("differences", sa.Text(), nullable=False),
        sa.Column("detected_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("kept_record_id", sa.String(64), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("resolved_by", sa.String(128), nullable=True),
        sa.Column("resolved_at_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_conflicts"),
        sa.CheckConstraint("state IN ('open', 'resolved', 'agreed')", name="ck_conflicts_state"),
    )
    op.create_index("ix_conflicts_fact_hash", "conflicts", ["fact_hash"])
    op.create_index("ix_conflicts_state_id", "conflicts", ["state", "id"])


def downgrade() -> None:
    op.drop_table("conflicts")
    op.drop_table("facts")
