"""Budgets: what a tenant may spend, and which budget warnings a session has had.

Revision ID: 0017
Revises: 0016
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _now(name: str) -> sa.Column[sa.DateTime]:
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "tenant_budgets",
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("usd", sa.Numeric(precision=12, scale=6), nullable=True),
        sa.Column("tokens", sa.BigInteger(), nullable=True),
        _now("updated_at"),
        sa.Column("updated_by", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("tenant", name=op.f("pk_tenant_budgets")),
    )
    op.create_table(
        "budget_warnings",
        sa.Column("session_id", sa.UUID(), nullable=False),
        sa.Column("limit", sa.String(length=100), nullable=False),
        _now("created_at"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_budget_warnings_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "limit", name=op.f("pk_budget_warnings")),
    )


def downgrade() -> None:
    op.drop_table("budget_warnings")
    op.drop_table("tenant_budgets")
