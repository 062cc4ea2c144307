"""``refusal_tallies``: the refusal counts of the units below, sent up with reconciliation.

Refused rows stay at the node that refused them; a child's reconciliation request carries their
counts per (origin, source unit, item, day), which the parent keeps here for ``report sources``
(node/tallies.py).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "refusal_tallies",
        sa.Column("origin", sa.String(128), nullable=False),
        sa.Column("source_unit", sa.String(64), nullable=False),
        sa.Column("item", sa.String(64), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("refused", sa.Integer(), nullable=False),
        sa.Column("received_from", sa.String(128), nullable=False),
        sa.Column("received_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("origin", "source_unit", "item", "day", name="pk_refusal_tallies"),
    )
    op.create_index("ix_refusal_tallies_received_from", "refusal_tallies", ["received_from"])


def downgrade() -> None:
    op.drop_table("refusal_tallies")
