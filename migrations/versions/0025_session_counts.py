"""`sessions.task_count` and `sessions.edge_count`: how many tasks and dependency edges a
session holds, kept by the transaction that inserts them. A request adding tasks checked
them against the session's limits by counting the session's rows under its lock: about 4 ms
more a request at 10,000 tasks, and growing with them. Existing sessions are counted once here.

Revision ID: 0025
Revises: 0024
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for column in ("task_count", "edge_count"):
        op.add_column(
            "sessions", sa.Column(column, sa.Integer(), server_default="0", nullable=False)
        )
    op.execute("""
        UPDATE sessions s SET task_count = c.n
        FROM (SELECT session_id, count(*) AS n FROM tasks GROUP BY session_id) c
        WHERE c.session_id = s.id
    """)
    op.execute("""
        UPDATE sessions s SET edge_count = c.n
        FROM (
            SELECT t.session_id, count(*) AS n
            FROM task_dependencies d JOIN tasks t ON t.id = d.task_id
            GROUP BY t.session_id
        ) c
        WHERE c.session_id = s.id
    """)


def downgrade() -> None:
    op.drop_column("sessions", "edge_count")
    op.drop_column("sessions", "task_count")
