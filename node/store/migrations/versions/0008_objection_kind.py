"""``objections.kind``: a case is a subject's objection (异议) or the platform's own check (信息自查).

A check (seed 003 篇2 第三十三条) is kept, logged and answered as an objection is; the kind tells
them apart. Its ``applicant`` is the platform node that opened it (``city:330100``: a platform id
is a level and a region code, well within the column).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("objections", sa.Column("kind", sa.String(16), nullable=False, server_default="objection"))


def downgrade() -> None:
    with op.batch_alter_table("objections") as batch:
        batch.drop_column("kind")
