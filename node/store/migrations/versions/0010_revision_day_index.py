"""Index ``record_revisions (item, decision_date)``: reconciliation's detail round reads a few days.

Each detail request (up to 50 differing (item, day) buckets) scanned the whole table, on the child
and twice on the parent, so a large store's request outlasted its deadline and reconciliation
never finished (docs/federation.md).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_record_revisions_item_decision_date", "record_revisions", ["item", "decision_date"])


def downgrade() -> None:
    op.drop_index("ix_record_revisions_item_decision_date", table_name="record_revisions")
