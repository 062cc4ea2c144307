"""``conflicts.state`` may be ``revoked``: closed because one side's record was revoked or deleted.

Only one report then stands, so nothing is inconsistent any more (seed 003 篇1 第十二条), but the
conflict did not close because the sources agreed, nor by an operator's decision: the state says
which.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = "state IN ('open', 'resolved', 'agreed')"
_NEW = "state IN ('open', 'resolved', 'agreed', 'revoked')"


def _replace_check(condition: str, *, made_by_0001: bool) -> None:
    # SQLite cannot alter a constraint: batch mode copies the table with the new one. The check
    # 0001 made went through the naming convention twice (ck_conflicts_ck_conflicts_state): a plain
    # name finds it, op.f() the one this revision makes, and downgrade puts 0001's back.
    with op.batch_alter_table("conflicts", recreate="auto") as batch:
        if made_by_0001:
            batch.drop_constraint("ck_conflicts_state", type_="check")
            batch.create_check_constraint(op.f("ck_conflicts_state"), condition)
        else:
            batch.drop_constraint(op.f("ck_conflicts_state"), type_="check")
            batch.create_check_constraint("ck_conflicts_state", condition)


def upgrade() -> None:
    _replace_check(_NEW, made_by_0001=True)


def downgrade() -> None:
    op.execute("UPDATE conflicts SET state = 'agreed' WHERE state = 'revoked'")
    _replace_check(_OLD, made_by_0001=False)
