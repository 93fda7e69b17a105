"""The session timeline: one row per transition or control action, in order.

Every state change of a task writes an entry here in the same transaction, so the timeline
is a complete, replayable history (and later the source of the SSE stream).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import exists, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_orchestrator.db.models import Event

__all__ = ["page", "record", "record_many", "seen"]


def record(
    db: AsyncSession,
    *,
    session_id: uuid.UUID,
    type: str,
    task_id: uuid.UUID | None = None,
    attempt: int | None = None,
    data: dict[str, Any] | None = None,
    actor: str = "system",
    source_id: str | None = None,
) -> None:
    db.add(
        Event(
            session_id=session_id,
            task_id=task_id,
            attempt=attempt,
            type=type,
            actor=actor,
            data=data or {},
            source_id=source_id,
        )
    )


async def record_many(db: AsyncSession, rows: Iterable[dict[str, Any]]) -> None:
    """Bulk insert for large graphs; each row holds `session_id`, `type` and optionally
    `task_id`, `attempt`, `data`, `actor`."""
    values = [
        {"actor": "system", "data": {}, "task_id": None, "attempt": None, **row} for row in rows
    ]
    if values:
        await db.execute(insert(Event), values)


async def page(
    db: AsyncSession,
    *,
    session_id: uuid.UUID | None = None,
    task_id: uuid.UUID | None = None,
    after: int = 0,
    limit: int = 1000,
) -> Sequence[Event]:
    """Timeline entries of a session or a task with an id above `after`, in order."""
    stmt = select(Event).where(Event.id > after).order_by(Event.id).limit(limit)
    if session_id is not None:
        stmt = stmt.where(Event.session_id == session_id)
    if task_id is not None:
        stmt = stmt.where(Event.task_id == task_id)
    return (await db.scalars(stmt)).all()


async def seen(db: AsyncSession, source_id: str) -> bool:
    """Whether a message with this envelope id was already applied."""
    return bool(await db.scalar(select(exists().where(Event.source_id == source_id))))
