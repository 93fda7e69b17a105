"""The reaper's indexes: its walk of the tasks in flight in id order
(`ix_tasks_in_flight_id`), and its probe of whether an attempt's message is still held in
the outbox (`ix_outbox_held_attempt`), so a pass over a graph of ten thousand queued tasks
reads only the attempts an adapter may hold.

Revision ID: 0021
Revises: 0020
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_tasks_in_flight_id",
        "tasks",
        ["id"],
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )
    op.create_index(
        "ix_outbox_held_attempt",
        "outbox",
        ["task_id", "attempt"],
        postgresql_where=sa.text("sent_at IS NULL AND task_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_held_attempt", table_name="outbox")
    op.drop_index("ix_tasks_in_flight_id", table_name="tasks")
