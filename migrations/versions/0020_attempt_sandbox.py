"""What an attempt's sandbox did: `attempts.sandbox` (mode, connections its proxy allowed
and refused, the first hosts refused), as its adapter reported it.

Revision ID: 0020
Revises: 0019
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("attempts", sa.Column("sandbox", postgresql.JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("attempts", "sandbox")
