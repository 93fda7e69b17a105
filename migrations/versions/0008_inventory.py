"""Inventory: the projects (git repositories, folders with a build file) that scans of a
tenant's folders found, with their languages, build systems, sizes and recent commits.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inventory_projects",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=100), nullable=True),
        sa.Column("root", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("languages", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("build_systems", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("commits_30d", sa.Integer(), nullable=True),
        sa.Column("readme", sa.Text(), nullable=False),
        sa.Column("max_depth", sa.Integer(), nullable=False),
        sa.Column("scanned_by", sa.String(length=200), nullable=False),
        sa.Column(
            "scanned_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("kind IN ('git', 'build')", name=op.f("ck_inventory_projects_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inventory_projects")),
    )
    op.create_index(
        "uq_inventory_projects_tenant_path",
        "inventory_projects",
        [sa.text("coalesce(tenant, '')"), "path"],
        unique=True,
    )
    op.create_index(
        "ix_inventory_projects_tenant_scanned_at",
        "inventory_projects",
        ["tenant", "scanned_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_inventory_projects_tenant_scanned_at", table_name="inventory_projects")
    op.drop_index("uq_inventory_projects_tenant_path", table_name="inventory_projects")
    op.drop_table("inventory_projects")
