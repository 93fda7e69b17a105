"""Prices and usage: the agent kind each attempt ran on (its task's may change later), the
model its CLI ran, and the cost the CLI itself claimed beside the one Swarm prices.

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("attempts", sa.Column("agent", sa.String(length=32), nullable=True))
    op.execute(
        "UPDATE attempts SET agent = tasks.agent FROM tasks WHERE tasks.id = attempts.task_id"
    )
    op.alter_column("attempts", "agent", existing_type=sa.String(length=32), nullable=False)
    op.add_column("attempts", sa.Column("model", sa.String(length=200), nullable=True))
    op.add_column(
        "attempts", sa.Column("reported_cost_usd", sa.Numeric(precision=12, scale=6), nullable=True)
    )
    # Until now `cost_usd` held what the CLI claimed (Claude's only); it stays as the best
    # figure known for those attempts, and is the claim too.
    op.execute("UPDATE attempts SET reported_cost_usd = cost_usd WHERE cost_usd IS NOT NULL")


def downgrade() -> None:
    op.drop_column("attempts", "reported_cost_usd")
    op.drop_column("attempts", "model")
    op.drop_column("attempts", "agent")
