"""Adapters that announce what they serve (models, CLI version, capabilities, how busy they
are, mirrored from their liveness keys), and sessions the system suspends while an agent
kind their tasks need has no live adapter (the reason, and the kinds it waits for).

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSONB = postgresql.JSONB(astext_type=sa.Text())


def upgrade() -> None:
    op.add_column("workers", sa.Column("busy", sa.Integer(), server_default="0", nullable=False))
    op.add_column(
        "workers",
        sa.Column("models", _JSONB, server_default=sa.text("'[]'::jsonb"), nullable=False),
    )
    op.add_column("workers", sa.Column("cli_version", sa.String(length=200), nullable=True))
    op.add_column(
        "workers",
        sa.Column("capabilities", _JSONB, server_default=sa.text("'[]'::jsonb"), nullable=False),
    )
    op.add_column("sessions", sa.Column("suspended_reason", sa.Text(), nullable=True))
    op.add_column("sessions", sa.Column("suspended_kinds", _JSONB, nullable=True))
    op.create_index(
        "ix_tasks_in_flight_agent",
        "tasks",
        ["agent"],
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_in_flight_agent", table_name="tasks")
    op.drop_column("sessions", "suspended_kinds")
    op.drop_column("sessions", "suspended_reason")
    op.drop_column("workers", "capabilities")
    op.drop_column("workers", "cli_version")
    op.drop_column("workers", "models")
    op.drop_column("workers", "busy")
