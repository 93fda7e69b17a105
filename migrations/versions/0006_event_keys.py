"""Event keys: every attempt gets a secret key; its adapter proves its events with it.

An attempt made before this revision has no key, so events about it are dropped: drain the
system (`POST /v1/system/drain`) and let in-flight work finish before upgrading, or retry
such tasks afterwards.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("attempts", sa.Column("event_key", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("attempts", "event_key")
