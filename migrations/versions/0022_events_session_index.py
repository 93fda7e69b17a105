"""Drop `ix_events_session_id_id`: every read of a session's timeline goes by
`(session_id, tx, id)` (`swarm_orchestrator.db.timeline`), whose index also serves a
session's deletion, so the other one was only written, once more for each of the several
entries a task makes.

Revision ID: 0022
Revises: 0021
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_events_session_id_id", table_name="events")


def downgrade() -> None:
    op.create_index("ix_events_session_id_id", "events", ["session_id", "id"])
