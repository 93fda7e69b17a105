"""Git automation: integration head, merge queue, conflicts, gate results, checkpoints.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MERGE_STATES = ("pending", "merged", "empty", "conflict", "resolved", "rolled_back", "abandoned")


def upgrade() -> None:
    op.execute(sa.schema.CreateSequence(sa.Sequence("tasks_merge_seq")))
    op.add_column("sessions", sa.Column("integration_head", sa.String(length=64), nullable=True))
    op.execute("UPDATE sessions SET integration_head = base_commit")
    op.add_column("tasks", sa.Column("merge_status", sa.String(length=16), nullable=True))
    op.add_column("tasks", sa.Column("merge_seq", sa.BigInteger(), nullable=True))
    op.add_column("tasks", sa.Column("merge_commit", sa.String(length=64), nullable=True))
    op.add_column(
        "tasks",
        sa.Column("conflict_files", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    op.add_column(
        "tasks", sa.Column("overlaps", postgresql.JSONB(astext_type=sa.Text()), nullable=True)
    )
    op.add_column("tasks", sa.Column("feedback", sa.Text(), nullable=True))
    op.add_column("tasks", sa.Column("resolves_task_id", sa.UUID(), nullable=True))
    op.create_foreign_key(
        op.f("fk_tasks_resolves_task_id_tasks"),
        "tasks",
        "tasks",
        ["resolves_task_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_check_constraint(
        op.f("ck_tasks_merge_status"),
        "tasks",
        "merge_status IS NULL OR merge_status IN ("
        + ", ".join(f"'{m}'" for m in MERGE_STATES)
        + ")",
    )
    op.create_index(
        "ix_tasks_merge_queue",
        "tasks",
        ["session_id", "merge_seq"],
        unique=False,
        postgresql_where=sa.text("merge_status = 'pending'"),
    )
    # Succeeded tasks of existing sessions were never merged: their work stays on their
    # branches, and their dependents already ran.
    op.execute("UPDATE tasks SET merge_status = 'empty' WHERE status = 'succeeded'")
    op.add_column(
        "attempts", sa.Column("gates", postgresql.JSONB(astext_type=sa.Text()), nullable=True)
    )
    op.create_table(
        "checkpoints",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.UUID(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("commit", sa.String(length=64), nullable=False),
        sa.Column("target_branch", sa.Text(), nullable=True),
        sa.Column("tag", sa.Text(), nullable=True),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("gates", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("pushed", sa.Boolean(), nullable=True),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'passed', 'failed')",
            name=op.f("ck_checkpoints_status"),
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_checkpoints_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkpoints")),
        sa.UniqueConstraint("session_id", "number", name="uq_checkpoints_session_number"),
    )
    op.create_index(
        "ix_checkpoints_open",
        "checkpoints",
        ["id"],
        unique=False,
        postgresql_where=sa.text("status IN ('pending', 'running')"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_checkpoints_open",
        table_name="checkpoints",
        postgresql_where=sa.text("status IN ('pending', 'running')"),
    )
    op.drop_table("checkpoints")
    op.drop_column("attempts", "gates")
    op.drop_index(
        "ix_tasks_merge_queue",
        table_name="tasks",
        postgresql_where=sa.text("merge_status = 'pending'"),
    )
    op.drop_constraint(op.f("ck_tasks_merge_status"), "tasks", type_="check")
    op.drop_constraint(op.f("fk_tasks_resolves_task_id_tasks"), "tasks", type_="foreignkey")
    for column in (
        "resolves_task_id",
        "feedback",
        "overlaps",
        "conflict_files",
        "merge_commit",
        "merge_seq",
        "merge_status",
    ):
        op.drop_column("tasks", column)
    op.drop_column("sessions", "integration_head")
    op.execute(sa.schema.DropSequence(sa.Sequence("tasks_merge_seq")))
