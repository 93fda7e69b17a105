"""The one lock order of the task graph: session → task(s) → attempt.

Every transaction that changes a task first locks its session's row, then the task rows it
changes (several in id order; a task that serves another after that one: a reviewer's run
after the task it reviews, which its verdict changes, and a contender after the task it
races for, which it may win), then the attempt. Two orchestrators finishing two parents of
the same child at once therefore serialise on the session, and the child is queued exactly
once; no two writers can take the same rows in opposite orders and deadlock. Every writer
(reports, control actions, the reaper, merges, rollback, the scheduler) locks through here.

Rows are read with `populate_existing`, so what the caller sees is what the lock protects,
not an older copy from the session's identity map.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common.states import SessionStatus
from swarm_orchestrator.db.models import Attempt, Session, Task
from swarm_orchestrator.errors import Conflict, NotFound

__all__ = [
    "CLOSED_SESSION_STATES",
    "LockedTask",
    "lock_attempt",
    "lock_open_session",
    "lock_session",
    "lock_task",
    "lock_tasks",
]

MAX_DEPTH = 3
"""How many tasks up a chain of served tasks goes (a review run of a contender: two)."""

CLOSED_SESSION_STATES = frozenset({SessionStatus.CANCELLED, SessionStatus.FINALIZED})
"""Sessions that take no control action and no new task."""


@dataclass
class LockedTask:
    session: Session
    task: Task


async def lock_session(db: AsyncSession, session_id: uuid.UUID) -> Session | None:
    """Lock one session's row for the rest of the transaction (`key_share`, so inserting
    tasks that reference it is not blocked)."""
    return await db.scalar(
        select(Session)
        .where(Session.id == session_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )


async def lock_task(db: AsyncSession, task_id: uuid.UUID) -> LockedTask | None:
    """Lock a task's session, then the task (a review run: the task it reviews first);
    None when there is no such task."""
    session_id = await db.scalar(select(Task.session_id).where(Task.id == task_id))
    if session_id is None:
        return None
    session = await lock_session(db, session_id)
    for above in await _above(db, task_id):  # the task it serves, and that one's, first
        await db.scalar(
            select(Task)
            .where(Task.id == above)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    task = await db.scalar(
        select(Task)
        .where(Task.id == task_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if session is None or task is None:  # deleted meanwhile
        return None
    return LockedTask(session=session, task=task)


async def _above(db: AsyncSession, task_id: uuid.UUID) -> list[uuid.UUID]:
    """The tasks a task serves, the outermost first: the task a review run judges, and the
    task a contender races for (a review run of a contender: both)."""
    chain: list[uuid.UUID] = []
    current = task_id
    for _ in range(MAX_DEPTH):
        row = (
            await db.execute(
                select(Task.reviews_task_id, Task.races_task_id).where(Task.id == current)
            )
        ).first()
        above = row and (row.reviews_task_id or row.races_task_id)
        if not above:
            break
        chain.insert(0, above)
        current = above
    return chain


async def lock_tasks(
    db: AsyncSession,
    session: Session,
    *where: Any,
    ids: Collection[uuid.UUID] | None = None,
    order_by: Any = None,
    limit: int | None = None,
) -> list[Task]:
    """Lock the tasks of a session the caller has locked that match `where` (and `ids`),
    in id order unless `order_by` says otherwise."""
    stmt = select(Task).where(Task.session_id == session.id, *where)
    if ids is not None:
        if not ids:
            return []
        stmt = stmt.where(Task.id.in_(list(ids)))
    stmt = stmt.order_by(*(order_by if order_by is not None else (Task.id,)))
    if limit is not None:
        stmt = stmt.limit(limit)
    stmt = stmt.with_for_update(of=Task).execution_options(populate_existing=True)
    return list((await db.scalars(stmt)).all())


async def lock_attempt(db: AsyncSession, task: Task, number: int | None = None) -> Attempt | None:
    """Lock attempt `number` (the task's current one by default) of a locked task."""
    return await db.scalar(
        select(Attempt)
        .where(Attempt.task_id == task.id, Attempt.number == (number or task.attempt))
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def lock_open_session(db: AsyncSession, session_id: uuid.UUID) -> Session:
    """Lock a session that is neither cancelled nor finalized; `NotFound` or `Conflict`
    (`session_closed`) otherwise."""
    session = await lock_session(db, session_id)
    if session is None:
        raise NotFound(f"session {session_id} not found", code="session_not_found")
    if session.status in CLOSED_SESSION_STATES:
        raise Conflict(f"session is {session.status}", code="session_closed")
    return session
