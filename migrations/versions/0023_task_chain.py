"""`tasks.chain` and `outbox.chain`: the longest chain of tasks from a task to one nothing
depends on, so that of two ready tasks of one priority the longer chain goes out first
(`runtime.dispatch`); `ix_outbox_held` orders by it after priority. Tasks and messages made
before count as chains of one and zero: they keep going out by age.

Revision ID: 0023
Revises: 0022
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_HELD = sa.text("sent_at IS NULL AND task_id IS NOT NULL")


def upgrade() -> None:
    op.add_column("tasks", sa.Column("chain", sa.Integer(), server_default="1", nullable=False))
    op.add_column("outbox", sa.Column("chain", sa.Integer(), server_default="0", nullable=False))
    op.drop_index("ix_outbox_held", table_name="outbox")
    op.create_index(
        "ix_outbox_held",
        "outbox",
        ["target", "session_id", sa.text("priority DESC"), sa.text("chain DESC"), "id"],
        postgresql_where=_HELD,
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_held", table_name="outbox")
    op.create_index(
        "ix_outbox_held",
        "outbox",
        ["target", "session_id", sa.text("priority DESC"), "id"],
        postgresql_where=_HELD,
    )
    op.drop_column("outbox", "chain")
    op.drop_column("tasks", "chain")
