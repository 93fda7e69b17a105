"""Priorities that hold: task messages wait in PostgreSQL until their agent stream has a free slot.

A task message's outbox row names its task, attempt, session and priority: the relay holds
such rows and publishes them as slots free, by fair share and priority (`runtime.dispatch`),
and marks the ones out whose attempt has not started yet (`outstanding`). Every other row
goes out at once, in order (`ix_outbox_unsent` now covers only those). Running tasks are
counted per kind on every pass (`ix_tasks_running_agent`).

Revision ID: 0015
Revises: 0014
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("task_id", sa.UUID(), nullable=True))
    op.add_column("outbox", sa.Column("attempt", sa.Integer(), nullable=True))
    op.add_column("outbox", sa.Column("session_id", sa.UUID(), nullable=True))
    op.add_column("outbox", sa.Column("priority", sa.Integer(), nullable=True))
    op.add_column(
        "outbox",
        sa.Column("outstanding", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.drop_index(
        "ix_outbox_unsent", table_name="outbox", postgresql_where=sa.text("sent_at IS NULL")
    )
    op.create_index(
        "ix_outbox_unsent",
        "outbox",
        ["id"],
        postgresql_where=sa.text("sent_at IS NULL AND task_id IS NULL"),
    )
    op.create_index(
        "ix_outbox_held",
        "outbox",
        ["target", "session_id", sa.text("priority DESC"), "id"],
        postgresql_where=sa.text("sent_at IS NULL AND task_id IS NOT NULL"),
    )
    op.create_index(
        "ix_outbox_outstanding", "outbox", ["target"], postgresql_where=sa.text("outstanding")
    )
    op.create_index(
        "ix_tasks_running_agent", "tasks", ["agent"], postgresql_where=sa.text("status = 'running'")
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_running_agent", table_name="tasks")
    op.drop_index("ix_outbox_outstanding", table_name="outbox")
    op.drop_index("ix_outbox_held", table_name="outbox")
    op.drop_index("ix_outbox_unsent", table_name="outbox")
    op.create_index(
        "ix_outbox_unsent", "outbox", ["id"], postgresql_where=sa.text("sent_at IS NULL")
    )
    op.drop_column("outbox", "outstanding")
    op.drop_column("outbox", "priority")
    op.drop_column("outbox", "session_id")
    op.drop_column("outbox", "attempt")
    op.drop_column("outbox", "task_id")
