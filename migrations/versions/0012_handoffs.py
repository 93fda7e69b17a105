"""Handoffs, the session blackboard and delegated proposals: what a succeeded task hands on
(`tasks.handoff`), the facts of a session's blackboard with their history
(`blackboard_facts`), and the follow-up tasks handoffs propose (`task_proposals`).

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _now(name: str) -> sa.Column[sa.DateTime]:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    op.add_column(
        "tasks", sa.Column("handoff", postgresql.JSONB(astext_type=sa.Text()), nullable=True)
    )
    op.create_table(
        "blackboard_facts",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.UUID(), nullable=False),
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("value", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("task_id", sa.UUID(), nullable=True),
        _now("created_at"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_blackboard_facts_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["tasks.id"],
            name=op.f("fk_blackboard_facts_task_id_tasks"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_blackboard_facts")),
    )
    op.create_index(
        "ix_blackboard_facts_session_id_key_id",
        "blackboard_facts",
        ["session_id", "key", "id"],
    )
    op.create_table(
        "task_proposals",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.UUID(), nullable=False),
        sa.Column("task_id", sa.UUID(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("spec", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("created_task_id", sa.UUID(), nullable=True),
        _now("created_at"),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('proposed', 'accepted', 'refused')", name=op.f("ck_task_proposals_status")
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_task_proposals_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["tasks.id"],
            name=op.f("fk_task_proposals_task_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["created_task_id"],
            ["tasks.id"],
            name=op.f("fk_task_proposals_created_task_id_tasks"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_proposals")),
        sa.UniqueConstraint("task_id", "number", name="uq_task_proposals_task_number"),
    )
    op.create_index("ix_task_proposals_session_id_id", "task_proposals", ["session_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_task_proposals_session_id_id", table_name="task_proposals")
    op.drop_table("task_proposals")
    op.drop_index("ix_blackboard_facts_session_id_key_id", table_name="blackboard_facts")
    op.drop_table("blackboard_facts")
    op.drop_column("tasks", "handoff")
