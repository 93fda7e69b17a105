"""Reviews with verdicts, comments on tasks, and best-of-N races: a task may wait in
`reviewing` while a reviewer's read-only run (a task of kind `review`) judges its attempt;
verdicts (of reviewers and verifiers) and people's comments are kept per task; a task sent
back resumes from its own last commit; a task `racing` waits for its contenders (tasks of
kind `race`).

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUSES = (
    "pending",
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
    "blocked",
    "awaiting_approval",
)


def _statuses(*extra: str) -> str:
    return "status IN (" + ", ".join(f"'{s}'" for s in (*_STATUSES, *extra)) + ")"


def upgrade() -> None:
    op.drop_constraint(op.f("ck_tasks_status"), "tasks", type_="check")
    op.create_check_constraint(op.f("ck_tasks_status"), "tasks", _statuses("reviewing", "racing"))
    # 0007 named it through the naming convention twice; it takes the model's name now.
    op.drop_constraint(op.f("ck_tasks_ck_tasks_kind"), "tasks", type_="check")
    op.create_check_constraint(
        op.f("ck_tasks_kind"), "tasks", "kind IN ('work', 'plan', 'review', 'race')"
    )
    op.add_column("tasks", sa.Column("reviews_task_id", sa.UUID(), nullable=True))
    op.create_foreign_key(
        op.f("fk_tasks_reviews_task_id_tasks"),
        "tasks",
        "tasks",
        ["reviews_task_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_index(
        "ix_tasks_reviews_task_id",
        "tasks",
        ["reviews_task_id"],
        unique=False,
        postgresql_where=sa.text("reviews_task_id IS NOT NULL"),
    )
    op.add_column("tasks", sa.Column("races_task_id", sa.UUID(), nullable=True))
    op.create_foreign_key(
        op.f("fk_tasks_races_task_id_tasks"),
        "tasks",
        "tasks",
        ["races_task_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_index(
        "ix_tasks_races_task_id",
        "tasks",
        ["races_task_id"],
        unique=False,
        postgresql_where=sa.text("races_task_id IS NOT NULL"),
    )
    op.add_column(
        "tasks",
        sa.Column("review_round", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column("tasks", sa.Column("resume_commit", sa.String(length=64), nullable=True))
    op.create_table(
        "task_reviews",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.UUID(), nullable=False),
        sa.Column("task_id", sa.UUID(), nullable=False),
        sa.Column("review_task_id", sa.UUID(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("commit", sa.String(length=64), nullable=True),
        sa.Column("agent", sa.String(length=32), nullable=False),
        sa.Column("persona", sa.String(length=64), nullable=True),
        sa.Column("verdict", sa.String(length=8), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("critical_issues", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("recommendations", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("verdict IN ('PASS', 'FAIL')", name=op.f("ck_task_reviews_verdict")),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_task_reviews_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["tasks.id"],
            name=op.f("fk_task_reviews_task_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["review_task_id"],
            ["tasks.id"],
            name=op.f("fk_task_reviews_review_task_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_reviews")),
        sa.UniqueConstraint("review_task_id", "attempt", name="uq_task_reviews_review_task_id"),
    )
    op.create_index("ix_task_reviews_task_id_id", "task_reviews", ["task_id", "id"], unique=False)
    op.create_table(
        "task_comments",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.UUID(), nullable=False),
        sa.Column("task_id", sa.UUID(), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("request_changes", sa.Boolean(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_task_comments_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["tasks.id"],
            name=op.f("fk_task_comments_task_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_comments")),
    )
    op.create_index("ix_task_comments_task_id_id", "task_comments", ["task_id", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_task_comments_task_id_id", table_name="task_comments")
    op.drop_table("task_comments")
    op.drop_index("ix_task_reviews_task_id_id", table_name="task_reviews")
    op.drop_table("task_reviews")
    op.drop_column("tasks", "resume_commit")
    op.drop_column("tasks", "review_round")
    op.drop_index("ix_tasks_races_task_id", table_name="tasks")
    op.drop_constraint(op.f("fk_tasks_races_task_id_tasks"), "tasks", type_="foreignkey")
    op.drop_column("tasks", "races_task_id")
    op.drop_index("ix_tasks_reviews_task_id", table_name="tasks")
    op.drop_constraint(op.f("fk_tasks_reviews_task_id_tasks"), "tasks", type_="foreignkey")
    op.drop_column("tasks", "reviews_task_id")
    op.execute("DELETE FROM tasks WHERE kind IN ('review', 'race')")
    op.drop_constraint(op.f("ck_tasks_kind"), "tasks", type_="check")
    op.create_check_constraint(op.f("ck_tasks_ck_tasks_kind"), "tasks", "kind IN ('work', 'plan')")
    op.execute(
        "UPDATE tasks SET status = 'failed', reason = 'review or race dropped' "
        "WHERE status IN ('reviewing', 'racing')"
    )
    op.drop_constraint(op.f("ck_tasks_status"), "tasks", type_="check")
    op.create_check_constraint(op.f("ck_tasks_status"), "tasks", _statuses())
