"""Cancelling a session: what the answer does at once, and what the background finishes.

A session of ten thousand queued tasks is not cancelled in one transaction (each task's
change is checked, its attempt ended and its timeline entry written: about a minute here).
The answer instead (`graph.control.cancel_session`), in one transaction:

1. withholds the session's task messages still held in the outbox: they are marked sent
   without being published, as the dispatcher drops a message whose attempt is no longer
   queued (`runtime.dispatch`), so none of them reaches an adapter;
2. cancels at once every task that could still start or change: whatever is not
   `pending`, `blocked`, or `queued` with its message withheld (running tasks are asked to
   stop, work waiting to merge is abandoned);
3. cancels up to `IN_ANSWER` more, and makes the session `cancelled`. A session with more
   left says who cancelled it (`sessions.cancelling_by`, `session_state.cancel`).

What is left can neither start (the session queues nothing, its messages never go out) nor
merge, so it is cancelled at leisure: `cancel_pending` (a background loop, `runtime.
background`) cancels it `CHUNK` tasks a transaction, then writes `session.cancel_completed`
and settles the session. The marker is in the database, written with the answer, so an
orchestrator that dies midway leaves the rest to the next one; each chunk holds an advisory
lock of its session (`db.advisory`), so two replicas never work on one session at once
(the second skips it), and the session's row lock besides, so every chunk sees the tasks as
the previous one left them: a task is never cancelled twice.

Every change goes through its owner (`task_state.cancel`, `task_state.abandon_merge`,
`session_state`); progress shows in the session's counts (tasks not yet `cancelled`) and on
its timeline (`session.cancelled` with `remaining`, each task's `task.cancelled`, then
`session.cancel_completed`).
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import ColumnElement, false, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common.messages import utcnow
from swarm_common.states import TERMINAL_TASK_STATES, MergeStatus, TaskStatus
from swarm_common.streams import Keys
from swarm_orchestrator.db.advisory import try_xact_lock
from swarm_orchestrator.db.models import Outbox, Session, Task
from swarm_orchestrator.graph import session_state, task_state
from swarm_orchestrator.graph.locking import forget_locks, lock_reports, lock_session, lock_tasks

__all__ = [
    "CHUNK",
    "IN_ANSWER",
    "cancel_at_once",
    "cancel_chunk",
    "cancel_pending",
    "cancel_step",
    "open_tasks",
]

log = logging.getLogger(__name__)

IN_ANSWER = 200
"""Tasks the answer cancels besides those that must go at once: a small session is
cancelled in full before the answer."""
CHUNK = 500
"""Tasks one background transaction cancels (a fraction of a second of the session's
lock)."""

INERT = (TaskStatus.PENDING, TaskStatus.BLOCKED)
"""States from which a task of a cancelled session never moves by itself (it queues
nothing)."""


def open_tasks() -> ColumnElement[bool]:
    """Tasks a cancel ends: those that have not ended, and succeeded ones whose work waits
    to merge (or conflicted)."""
    return or_(
        Task.status.not_in([s.value for s in TERMINAL_TASK_STATES]),
        Task.merge_status.in_([MergeStatus.PENDING, MergeStatus.CONFLICT]),
    )


async def cancel_at_once(
    db: AsyncSession, session: Session, *, keys: Keys, actor: str
) -> tuple[int, int]:
    """Steps 1 to 3 of the module's docstring for a session the caller has locked (it then
    moves the session and commits); return how many tasks were cancelled and how many are
    left."""
    withheld = await _withhold_messages(db, session.id)
    queued = await db.execute(
        select(Task.id, Task.attempt).where(
            Task.session_id == session.id, Task.status == TaskStatus.QUEUED
        )
    )
    # Those whose current attempt's message is out: an adapter may start them.
    live = [task_id for task_id, attempt in queued if (task_id, attempt) not in withheld]
    moving = await lock_tasks(
        db,
        session,
        open_tasks(),
        or_(
            Task.status.not_in([*INERT, TaskStatus.QUEUED]),
            Task.id.in_(live) if live else false(),
        ),
    )
    await _cancel(db, moving, keys=keys, actor=actor, withheld=False)
    done = len(moving) + await cancel_chunk(db, session, keys=keys, actor=actor, limit=IN_ANSWER)
    left = await _count_open(db, session.id)
    return done, left


async def _withhold_messages(db: AsyncSession, session_id: uuid.UUID) -> set[tuple[uuid.UUID, int]]:
    """Mark the session's held task messages sent without publishing them; return their
    tasks and attempts. A message the relay is publishing right now is locked by it: this
    waits for it, then leaves it (it went out), so its task is cancelled at once."""
    rows = await db.execute(
        update(Outbox)
        .where(
            Outbox.session_id == session_id,
            Outbox.sent_at.is_(None),
            Outbox.task_id.is_not(None),
        )
        .values(sent_at=utcnow())
        .returning(Outbox.task_id, Outbox.attempt)
    )
    return {(task_id, attempt) for task_id, attempt in rows if task_id and attempt is not None}


async def _count_open(db: AsyncSession, session_id: uuid.UUID) -> int:
    await db.flush()
    count = await db.scalar(select(func.count()).where(Task.session_id == session_id, open_tasks()))
    return int(count or 0)


async def cancel_chunk(
    db: AsyncSession, session: Session, *, keys: Keys, actor: str, limit: int
) -> int:
    """Cancel up to `limit` open tasks of a session the caller has locked, in id order,
    after steps 1 and 2 (every task still queued has its message withheld: no adapter is
    asked to stop it); return how many."""
    tasks = await lock_tasks(db, session, open_tasks(), limit=limit)
    await _cancel(db, tasks, keys=keys, actor=actor, withheld=True)
    return len(tasks)


async def _cancel(
    db: AsyncSession, tasks: list[Task], *, keys: Keys, actor: str, withheld: bool
) -> None:
    """Cancel locked tasks through their owner (`withheld`: the queued ones' messages never
    went out). Their current attempts are locked first, in one statement (`lock_reports`),
    so that ending each in-flight one asks the database nothing more: the changes go out
    together when the transaction flushes."""
    await lock_reports(db, [task.id for task in tasks])
    for task in tasks:
        if task.status == TaskStatus.SUCCEEDED:  # its work stays on its branch, unmerged
            task_state.abandon_merge(task)
        else:
            await task_state.cancel(db, task, keys=keys, actor=actor, unsent=withheld)


async def cancel_pending(
    sessionmaker: async_sessionmaker[AsyncSession], *, keys: Keys, chunk: int = CHUNK
) -> int:
    """One chunk of every session whose cancel goes on in the background; return how many
    tasks were cancelled (0: nothing left to do now)."""
    async with sessionmaker() as db:
        session_ids = (
            await db.scalars(
                select(Session.id).where(Session.cancelling_by.is_not(None)).order_by(Session.id)
            )
        ).all()
    done = 0
    for session_id in session_ids:
        done += await cancel_step(sessionmaker, session_id, keys=keys, chunk=chunk)
    return done


async def cancel_step(
    sessionmaker: async_sessionmaker[AsyncSession],
    session_id: uuid.UUID,
    *,
    keys: Keys,
    chunk: int = CHUNK,
) -> int:
    """Cancel the next `chunk` tasks of one session in one transaction, and complete its
    cancel when none is left; return how many were cancelled. Another replica at work on
    the session makes this a no-op (0)."""
    async with sessionmaker() as db:
        try:
            async with db.begin():
                return await _step(db, session_id, keys=keys, chunk=chunk)
        finally:
            forget_locks(db)


async def _step(db: AsyncSession, session_id: uuid.UUID, *, keys: Keys, chunk: int) -> int:
    if not await try_xact_lock(db, f"cancel:{session_id}"):
        return 0
    session = await lock_session(db, session_id)
    if session is None or session.cancelling_by is None:
        return 0  # completed meanwhile
    actor = session.cancelling_by
    done = await cancel_chunk(db, session, keys=keys, actor=actor, limit=chunk)
    if done < chunk:
        await db.flush()
        graph = await session_state.tally(db, session.id)
        session_state.cancel_completed(
            db, session, tasks_cancelled=graph.counts.get(TaskStatus.CANCELLED, 0)
        )
        await session_state.finish_or_reopen(db, session)
    log.info(
        "session cancel went on",
        extra={"session_id": str(session_id), "cancelled": done, "actor": actor},
    )
    return done
