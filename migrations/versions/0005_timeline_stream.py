"""The timeline as a stream: each entry knows the transaction that wrote it, and a commit
that adds entries notifies listeners.

`events.tx` (`pg_current_xact_id()`) lets readers take entries in `(tx, id)` order and only
once every older transaction has ended, so a reader that resumes after entry N misses
nothing, even when entries commit out of id order. The statement trigger sends one
`NOTIFY swarm_events, '<session id>'` per session a statement added entries to; PostgreSQL
delivers it at commit, to every orchestrator replica.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOTIFY_FUNCTION = """
CREATE FUNCTION swarm_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('swarm_events', s.session_id::text)
    FROM (SELECT DISTINCT session_id FROM new_rows) AS s;
    RETURN NULL;
END
$$
"""

NOTIFY_TRIGGER = """
CREATE TRIGGER events_notify AFTER INSERT ON events
REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION swarm_events_notify()
"""


def upgrade() -> None:
    op.execute("ALTER TABLE events ADD COLUMN tx xid8 NOT NULL DEFAULT pg_current_xact_id()")
    op.create_index("ix_events_session_id_tx_id", "events", ["session_id", "tx", "id"])
    op.execute(NOTIFY_FUNCTION)
    op.execute(NOTIFY_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER events_notify ON events")
    op.execute("DROP FUNCTION swarm_events_notify()")
    op.drop_index("ix_events_session_id_tx_id", table_name="events")
    op.drop_column("events", "tx")
