"""Drop the subject index on ``record_revisions``: every subject lookup goes through the heads.

Lookups, list checks and disclosure read ``record_heads.subject_code`` and join the head
revision; nothing reads revisions by subject. The index was paid for on every stored revision:
its keys are spread all over the B-tree, so each batch rewrote most of its pages
(docs/decisions/import-prepare-commit-split.md).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_record_revisions_subject_code", table_name="record_revisions")


def downgrade() -> None:
    op.create_index("ix_record_revisions_subject_code", "record_revisions", ["subject_code"])
