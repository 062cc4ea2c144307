"""``objections.limit_due``, ``objections.extended_days``: the limit of a whole objection case.

申请人提出异议申请的…30日内办理完毕 (seed 001 附件2 三), extended by at most 15 working days with
the credit authority's approval (node/lifecycle/case_limit.py). Cases already stored get '' and
0: the limit depends on the node's working-day calendar, which a migration does not read, so the
next ``objection tick`` gives each open objection its limit from its filing day (a ``limit`` step
in its log). Closed cases keep ''.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("objections", sa.Column("limit_due", sa.String(10), nullable=False, server_default=""))
    op.add_column("objections", sa.Column("extended_days", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("objections") as batch:
        batch.drop_column("extended_days")
        batch.drop_column("limit_due")
