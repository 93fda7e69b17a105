"""A session's cancel that goes on in the background: `sessions.cancelling_by` names who
cancelled it while some of its tasks are still to be cancelled (`graph.cancelling`), and a
partial index finds those sessions.

Revision ID: 0019
Revises: 0018
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("sessions", sa.Column("cancelling_by", sa.String(length=200), nullable=True))
    op.create_index(
        "ix_sessions_cancelling",
        "sessions",
        ["id"],
        postgresql_where=sa.text("cancelling_by IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_sessions_cancelling",
        table_name="sessions",
        postgresql_where=sa.text("cancelling_by IS NOT NULL"),
    )
    op.drop_column("sessions", "cancelling_by")
