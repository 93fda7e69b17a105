"""Personas: a tenant's catalogue of who its logical agents are (role, skills, preferred
agent kinds, working style, commit identity), written by hand or generated from a seed.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLES = ("pm", "backend", "frontend", "rust", "devops", "qa", "security", "design", "data", "docs")


def upgrade() -> None:
    roles = ", ".join(f"'{r}'" for r in ROLES)
    op.create_table(
        "personas",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=100), nullable=True),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("skills", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("agents", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("style", sa.Text(), nullable=False),
        sa.Column("author_name", sa.String(length=100), nullable=False),
        sa.Column("author_email", sa.String(length=254), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(f"role IN ({roles})", name=op.f("ck_personas_role")),
        sa.CheckConstraint("source IN ('manual', 'generated')", name=op.f("ck_personas_source")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_personas")),
    )
    op.create_index(
        "uq_personas_tenant_name",
        "personas",
        [sa.text("coalesce(tenant, '')"), "name"],
        unique=True,
    )
    op.create_index("ix_personas_tenant_role", "personas", ["tenant", "role"])


def downgrade() -> None:
    op.drop_index("ix_personas_tenant_role", table_name="personas")
    op.drop_index("uq_personas_tenant_name", table_name="personas")
    op.drop_table("personas")
