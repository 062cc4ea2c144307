"""Access control state: authorisation codes (授权查询) and the address block list.

``authorizations`` holds a digest of each code (the code itself is shown once, to the subject),
the subject, the grantee's node id, the items, and when it was issued, expires and was revoked.
``blocks`` is the IP block list of abnormal access (seed 004 第十九条): rows are lifted, never
deleted, so the history of blocks stays. The sharing switch lives in ``meta``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "authorizations",
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("grantee", sa.String(128), nullable=False),
        sa.Column("items", sa.Text(), nullable=False),
        sa.Column("issued_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("code", name="pk_authorizations"),
    )
    op.create_index("ix_authorizations_subject", "authorizations", ["subject"])
    op.create_index("ix_authorizations_grantee", "authorizations", ["grantee"])

    op.create_table(
        "blocks",
        sa.Column("id", _AutoId, autoincrement=True, nullable=False),
        sa.Column("address", sa.String(255), nullable=False),
        sa.Column("caller", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("since_ms", sa.BigInteger(), nullable=False),
        sa.Column("lifted_at_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_blocks"),
    )
    op.create_index("ix_blocks_address_lifted_at_ms", "blocks", ["address", "lifted_at_ms"])


def downgrade() -> None:
    op.drop_table("blocks")
    op.drop_table("authorizations")
