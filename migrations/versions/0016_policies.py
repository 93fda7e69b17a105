"""Policies and dry runs: why a task waits for approval, and what a dry run would have merged.

`tasks.approval_reason` says which session policies a task's work crosses (it waits in
`awaiting_approval` until a person approves it; `tasks.approved_commit` is the commit they
approved, not checked again); `tasks.would_merge` is a dry run's report of what the task
would have merged, and its merge status `dry_run`; `sessions.dry_run_head` is the head of
the branch a dry run merges into instead of the integration branch.

Revision ID: 0016
Revises: 0015
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_MERGE_STATES = (
    "pending",
    "merged",
    "empty",
    "conflict",
    "resolved",
    "rolled_back",
    "abandoned",
)


def _merge_states(*extra: str) -> str:
    return (
        "merge_status IS NULL OR merge_status IN ("
        + ", ".join(f"'{m}'" for m in (*_MERGE_STATES, *extra))
        + ")"
    )


def upgrade() -> None:
    op.add_column("tasks", sa.Column("approval_reason", sa.Text(), nullable=True))
    op.add_column("tasks", sa.Column("approved_commit", sa.String(length=64), nullable=True))
    op.add_column(
        "tasks", sa.Column("would_merge", postgresql.JSONB(astext_type=sa.Text()), nullable=True)
    )
    op.add_column("sessions", sa.Column("dry_run_head", sa.String(length=64), nullable=True))
    op.drop_constraint(op.f("ck_tasks_merge_status"), "tasks", type_="check")
    op.create_check_constraint(op.f("ck_tasks_merge_status"), "tasks", _merge_states("dry_run"))


def downgrade() -> None:
    # A dry run's tasks merged nothing: to the older schema they changed nothing to merge.
    op.execute("UPDATE tasks SET merge_status = 'empty' WHERE merge_status = 'dry_run'")
    op.drop_constraint(op.f("ck_tasks_merge_status"), "tasks", type_="check")
    op.create_check_constraint(op.f("ck_tasks_merge_status"), "tasks", _merge_states())
    op.drop_column("sessions", "dry_run_head")
    op.drop_column("tasks", "would_merge")
    op.drop_column("tasks", "approved_commit")
    op.drop_column("tasks", "approval_reason")
