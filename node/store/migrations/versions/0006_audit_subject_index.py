"""Index ``audit_log.subject``: a notice is looked up by its id before it is kept again.

A child re-publishing one refused record kept one more notice row per copy at the parent, and
its source scanned the whole audit log for each notice it was handed (docs/federation.md).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_audit_log_subject", "audit_log", ["subject"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_subject", table_name="audit_log")
