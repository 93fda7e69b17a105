"""Plans and sessions that finish: draft plans with numbered revisions and a planning
conversation; planner runs as tasks of kind `plan`; archived sessions; final checkpoints.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("sessions", sa.Column("review_reason", sa.Text(), nullable=True))
    op.add_column("sessions", sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("sessions", sa.Column("plan_status", sa.String(length=16), nullable=True))
    op.add_column("sessions", sa.Column("plan_revision", sa.Integer(), nullable=True))
    op.add_column("sessions", sa.Column("plan_error", sa.Text(), nullable=True))
    op.add_column(
        "sessions",
        sa.Column("auto_approve", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.create_check_constraint(
        "ck_sessions_plan_status",
        "sessions",
        "plan_status IS NULL OR plan_status IN ('planning', 'ready', 'failed', 'approved')",
    )
    op.add_column(
        "tasks", sa.Column("kind", sa.String(length=8), server_default="work", nullable=False)
    )
    op.create_check_constraint("ck_tasks_kind", "tasks", "kind IN ('work', 'plan')")
    op.add_column(
        "checkpoints",
        sa.Column("final", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.create_table(
        "plan_revisions",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.UUID(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("tasks", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name="fk_plan_revisions_session_id_sessions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_plan_revisions"),
        sa.UniqueConstraint("session_id", "number", name="uq_plan_revisions_number"),
    )
    op.create_table(
        "plan_messages",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.UUID(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name="fk_plan_messages_session_id_sessions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_plan_messages"),
    )
    op.create_index(
        "ix_plan_messages_session_id_id", "plan_messages", ["session_id", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_plan_messages_session_id_id", table_name="plan_messages")
    op.drop_table("plan_messages")
    op.drop_table("plan_revisions")
    op.drop_column("checkpoints", "final")
    op.drop_constraint("ck_tasks_kind", "tasks", type_="check")
    op.drop_column("tasks", "kind")
    op.drop_constraint("ck_sessions_plan_status", "sessions", type_="check")
    for column in (
        "auto_approve",
        "plan_error",
        "plan_revision",
        "plan_status",
        "archived_at",
        "review_reason",
    ):
        op.drop_column("sessions", column)
