"""API tokens with roles, and sessions scoped to a tenant.

Tokens are stored as SHA-256 digests of the token (random, 256 bits, so no slow hash is
needed); the token itself is shown once, when it is created. `sessions.tenant` is NULL for
sessions of tokens without a tenant; idempotency keys are unique per tenant.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("tenant", sa.String(length=100), nullable=True),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=200), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "role IN ('viewer', 'operator', 'admin')", name=op.f("ck_api_tokens_role")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("digest", name=op.f("uq_api_tokens_digest")),
    )
    op.create_index(
        "uq_api_tokens_active_name",
        "api_tokens",
        [sa.text("coalesce(tenant, '')"), "name"],
        unique=True,
        postgresql_where=sa.text("revoked_at IS NULL"),
    )
    op.add_column("sessions", sa.Column("tenant", sa.String(length=100), nullable=True))
    op.drop_constraint(op.f("uq_sessions_idempotency_key"), "sessions", type_="unique")
    op.create_index(
        "uq_sessions_tenant_idempotency_key",
        "sessions",
        [sa.text("coalesce(tenant, '')"), "idempotency_key"],
        unique=True,
    )
    op.create_index("ix_sessions_tenant_created_at", "sessions", ["tenant", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_sessions_tenant_created_at", table_name="sessions")
    op.drop_index("uq_sessions_tenant_idempotency_key", table_name="sessions")
    op.create_unique_constraint(
        op.f("uq_sessions_idempotency_key"), "sessions", ["idempotency_key"]
    )
    op.drop_column("sessions", "tenant")
    op.drop_index("uq_api_tokens_active_name", table_name="api_tokens")
    op.drop_table("api_tokens")
