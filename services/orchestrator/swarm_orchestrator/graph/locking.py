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

A transaction that applies many reports at once (`graph.reports.apply_events`) locks them
all up front with `lock_reports`: their sessions in id order, then their tasks, then their
current attempts, three statements in all. For the rest of that transaction `lock_session`,
`lock_task` and `lock_attempt` answer those rows from what it holds, without asking the
database again: a lock lasts until the transaction ends, and every change to the rows made
since went through these same objects. Two transactions that lock many sessions this way
take them in the same order, so they cannot deadlock either.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common.states import SessionStatus
from swarm_orchestrator.db.bulk import any_of
from swarm_orchestrator.db.models import Attempt, Session, Task
from swarm_orchestrator.errors import Conflict, NotFound

__all__ = [
    "CLOSED_SESSION_STATES",
    "LockedTask",
    "lock_attempt",
    "forget_locks",
    "lock_open_session",
    "lock_reports",
    "lock_session",
    "lock_task",
    "lock_tasks",
    "require_open",
]

MAX_DEPTH = 3
"""How many tasks up a chain of served tasks goes (a review run of a contender: two)."""
_SERVES = (Task.reviews_task_id, Task.races_task_id)
"""The columns naming the task a task serves (`_above`)."""

CLOSED_SESSION_STATES = frozenset({SessionStatus.CANCELLED, SessionStatus.FINALIZED})
"""Sessions that take no control action and no new task."""


@dataclass
class LockedTask:
    session: Session
    task: Task


@dataclass
class _Held:
    """The rows `lock_reports` locked for the rest of its transaction."""

    sessions: dict[uuid.UUID, Session] = field(default_factory=dict)
    tasks: dict[uuid.UUID, Task] = field(default_factory=dict)
    attempts: dict[tuple[uuid.UUID, int], Attempt] = field(default_factory=dict)


_HELD = "locking.held"


def _held(db: AsyncSession) -> _Held | None:
    held: _Held | None = db.info.get(_HELD)
    return held


async def lock_reports(db: AsyncSession, task_ids: Collection[uuid.UUID]) -> None:
    """Lock the sessions, tasks and current attempts of `task_ids` for the rest of the
    transaction, in the lock order, and answer later locks of them from memory. A task that
    serves another (a review run, a contender) is left to `lock_task`, which locks the one
    it serves first. The caller's session must end with the transaction (`forget_locks`)."""
    if not task_ids:
        return
    rows = (
        await db.execute(
            select(Task.id, Task.session_id).where(
                any_of(Task.id, set(task_ids)),
                Task.reviews_task_id.is_(None),
                Task.races_task_id.is_(None),
            )
        )
    ).all()
    if not rows:
        return
    held = db.info.setdefault(_HELD, _Held())
    sessions = await db.scalars(
        select(Session)
        .where(any_of(Session.id, {r.session_id for r in rows}))
        .order_by(Session.id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    held.sessions.update({s.id: s for s in sessions})
    tasks = await db.scalars(
        select(Task)
        .where(any_of(Task.id, (r.id for r in rows)))
        .order_by(Task.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    locked = [t for t in tasks if t.session_id in held.sessions]
    held.tasks.update({t.id: t for t in locked})
    attempts = await db.scalars(  # the current ones: probes of (task_id, number) a task
        select(Attempt)
        .join(Task, and_(Task.id == Attempt.task_id, Task.attempt == Attempt.number))
        .where(any_of(Task.id, (t.id for t in locked)))
        .order_by(Attempt.id)
        .with_for_update(of=Attempt)
        .execution_options(populate_existing=True)
    )
    held.attempts.update({(a.task_id, a.number): a for a in attempts})


def forget_locks(db: AsyncSession) -> None:
    """The transaction ended: what `lock_reports` held is no longer locked."""
    db.info.pop(_HELD, None)


async def lock_session(db: AsyncSession, session_id: uuid.UUID) -> Session | None:
    """Lock one session's row for the rest of the transaction (`key_share`, so inserting
    tasks that reference it is not blocked)."""
    held = _held(db)
    if held is not None and session_id in held.sessions:
        return held.sessions[session_id]
    return await db.scalar(
        select(Session)
        .where(Session.id == session_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )


async def lock_task(db: AsyncSession, task_id: uuid.UUID) -> LockedTask | None:
    """Lock a task's session, then the task (a review run: the task it reviews first);
    None when there is no such task."""
    held = _held(db)
    if held is not None and task_id in held.tasks:
        mine = held.tasks[task_id]
        return LockedTask(session=held.sessions[mine.session_id], task=mine)
    found = (await db.execute(select(Task.session_id, *_SERVES).where(Task.id == task_id))).first()
    if found is None:
        return None
    session = await lock_session(db, found.session_id)
    for above in await _above(db, _served(found)):  # the task it serves, its own, first
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


def _served(row: Any) -> uuid.UUID | None:
    """The task a row of `_SERVES` serves: the one a review run judges, or a contender
    races for."""
    served: uuid.UUID | None = row.reviews_task_id or row.races_task_id
    return served


async def _above(db: AsyncSession, served: uuid.UUID | None) -> list[uuid.UUID]:
    """`served` (the task a task serves) and the tasks it serves in turn, the outermost
    first (a review run of a contender serves both)."""
    chain: list[uuid.UUID] = []
    while served is not None:
        chain.insert(0, served)
        if len(chain) >= MAX_DEPTH:
            break
        row = (await db.execute(select(*_SERVES).where(Task.id == served))).first()
        served = _served(row) if row is not None else None
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
    held = _held(db)
    if held is not None and (task.id, number or task.attempt) in held.attempts:
        return held.attempts[(task.id, number or task.attempt)]
    return await db.scalar(
        select(Attempt)
        .where(Attempt.task_id == task.id, Attempt.number == (number or task.attempt))
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def lock_open_session(db: AsyncSession, session_id: uuid.UUID) -> Session:
    """Lock a session that is neither cancelled nor finalized; `NotFound` or `Conflict`
    (`session_closed`) otherwise."""
    return require_open(await lock_session(db, session_id), session_id)


def require_open(session: Session | None, session_id: uuid.UUID) -> Session:
    """`session`, a locked row of `session_id`, when it is neither cancelled nor finalized;
    `NotFound` or `Conflict` (`session_closed`) otherwise."""
    if session is None:
        raise NotFound(f"session {session_id} not found", code="session_not_found")
    if session.status in CLOSED_SESSION_STATES:
        raise Conflict(f"session is {session.status}", code="session_closed")
    return session
