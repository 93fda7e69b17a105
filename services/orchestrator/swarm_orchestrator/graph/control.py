"""Control actions of people and tools: retry, cancel or approve a task; pause, resume or
cancel a session.

A task whose spec says `requires_approval` waits in `awaiting_approval` after its attempt
succeeded; approving it puts its work in the merge queue, cancelling it abandons the work. A
paused (`suspended`) session queues nothing new; what is queued or running finishes.

A succeeded task whose merge conflicted can be retried (a new attempt starts from the
integration head, told which files conflicted) or cancelled (its work is abandoned and its
dependents are blocked); once no conflict is left, a session awaiting review is active again.

Each takes the session lock (see `scheduler`), checks the current state, changes it, writes
the timeline entry with the actor and any cancel request to the outbox, and commits.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common.messages import utcnow
from swarm_common.states import TERMINAL_TASK_STATES, AttemptStatus, SessionStatus, TaskStatus
from swarm_common.streams import Keys
from swarm_orchestrator.db import outbox, timeline
from swarm_orchestrator.db.models import MERGE_SEQ, Attempt, Session, Task
from swarm_orchestrator.errors import Conflict, NotFound
from swarm_orchestrator.graph import scheduler
from swarm_orchestrator.graph.sessions import CLOSED_SESSION_STATES
from swarm_orchestrator.integration import merges

__all__ = [
    "approve_task",
    "cancel_session",
    "cancel_task",
    "pause_session",
    "resume_session",
    "retry_task",
]

log = logging.getLogger(__name__)

RETRYABLE = frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED})
CANCELLABLE = frozenset(
    {
        TaskStatus.PENDING,
        TaskStatus.QUEUED,
        TaskStatus.RUNNING,
        TaskStatus.BLOCKED,
        TaskStatus.AWAITING_APPROVAL,
    }
)

_UNBLOCK_SQL = text("""
WITH RECURSIVE down(id) AS (
    SELECT task_id FROM task_dependencies WHERE depends_on_id = :tid
  UNION
    SELECT d.task_id FROM task_dependencies d JOIN down ON d.depends_on_id = down.id
)
UPDATE tasks SET status = 'pending', reason = NULL, finished_at = NULL, updated_at = now()
WHERE id IN (SELECT id FROM down) AND status = 'blocked'
RETURNING id
""")


async def _lock(db: AsyncSession, task_id: uuid.UUID) -> tuple[Session, Task]:
    session_id = await db.scalar(select(Task.session_id).where(Task.id == task_id))
    if session_id is None:
        raise NotFound(f"task {task_id} not found", code="task_not_found")
    session = await scheduler.lock_session(db, session_id)
    task = await db.scalar(
        select(Task)
        .where(Task.id == task_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if session is None or task is None:
        raise NotFound(f"task {task_id} not found", code="task_not_found")
    return session, task


def _conflicted(task: Task) -> bool:
    return task.status == TaskStatus.SUCCEEDED and task.merge_status == "conflict"


async def retry_task(db: AsyncSession, *, task_id: uuid.UUID, keys: Keys, actor: str) -> Task:
    """Give a failed or cancelled task, or one whose merge conflicted, a new attempt, and
    unblock what waited on it."""
    session, task = await _lock(db, task_id)
    if session.status in CLOSED_SESSION_STATES:
        raise Conflict(f"session is {session.status}", code="session_closed")
    if _conflicted(task):
        files = ", ".join(task.conflict_files or [])
        task.feedback = (
            "Your previous attempt's work conflicted with the integration branch "
            f"(files: {files or 'unknown'}). This attempt starts from the current "
            "integration branch, which holds the other tasks' work: build on it."
        )
    elif task.status not in RETRYABLE:
        code = "task_blocked" if task.status == TaskStatus.BLOCKED else "task_not_retryable"
        raise Conflict(
            f"a {task.status} task cannot be retried",
            code=code,
            details={"status": task.status, "reason": task.reason},
        )
    previous = task.status
    task.status = TaskStatus.PENDING
    task.reason = None
    task.retry_at = None
    task.finished_at = None
    task.updated_at = utcnow()
    timeline.record(
        db,
        session_id=session.id,
        task_id=task.id,
        attempt=task.attempt,
        type="task.retried",
        actor=actor,
        data={"from": previous},
    )
    unblocked = (await db.execute(_UNBLOCK_SQL, {"tid": task.id})).scalars().all()
    await timeline.record_many(
        db,
        (
            {
                "session_id": session.id,
                "task_id": tid,
                "type": "task.unblocked",
                "actor": actor,
                "data": {"by": task.key},
            }
            for tid in unblocked
        ),
    )
    task.merge_status = None
    await db.flush()
    await scheduler.refresh_blocked(db, session_id=session.id)
    await merges.resume_if_clear(db, session=session, keys=keys, actor=actor)
    await scheduler.queue_ready(db, session=session, keys=keys, only=[task.id])
    await scheduler.update_progress(db, session=session)
    await db.commit()
    log.info("task retried", extra={"task_id": str(task.id), "actor": actor})
    return task


async def cancel_task(db: AsyncSession, *, task_id: uuid.UUID, keys: Keys, actor: str) -> Task:
    """Cancel a task that has not ended, or abandon the work of one whose merge conflicted;
    a running attempt is asked to stop."""
    session, task = await _lock(db, task_id)
    if not _conflicted(task) and task.status not in CANCELLABLE:
        raise Conflict(
            f"a {task.status} task cannot be cancelled",
            code="task_not_cancellable",
            details={"status": task.status},
        )
    await _cancel(db, session=session, task=task, keys=keys, actor=actor)
    await db.flush()
    await scheduler.refresh_blocked(db, session_id=session.id)
    await merges.resume_if_clear(db, session=session, keys=keys, actor=actor)
    await scheduler.update_progress(db, session=session)
    await db.commit()
    return task


async def _cancel(
    db: AsyncSession, *, session: Session, task: Task, keys: Keys, actor: str
) -> None:
    now = utcnow()
    reason = f"cancelled by {actor}"
    if task.status in (TaskStatus.QUEUED, TaskStatus.RUNNING):
        attempt = await db.scalar(
            select(Attempt)
            .where(Attempt.task_id == task.id, Attempt.number == task.attempt)
            .with_for_update()
        )
        if attempt is not None:
            attempt.status = AttemptStatus.CANCELLED
            attempt.reason = reason
            attempt.finished_at = now
        outbox.add_cancel(db, keys=keys, task_id=task.id, attempt=task.attempt, reason=reason)
    previous = task.status
    if task.merge_status in ("pending", "conflict"):
        task.merge_status = "abandoned"
    task.status = TaskStatus.CANCELLED
    task.reason = reason
    task.finished_at = now
    task.updated_at = now
    timeline.record(
        db,
        session_id=session.id,
        task_id=task.id,
        attempt=task.attempt or None,
        type="task.cancelled",
        actor=actor,
        data={"from": previous},
    )


async def cancel_session(
    db: AsyncSession, *, session_id: uuid.UUID, keys: Keys, actor: str
) -> Session:
    """Cancel every task that has not ended, then the session itself."""
    session = await scheduler.lock_session(db, session_id)
    if session is None:
        raise NotFound(f"session {session_id} not found", code="session_not_found")
    if session.status == SessionStatus.CANCELLED:
        return session
    if session.status in CLOSED_SESSION_STATES:
        raise Conflict(f"session is {session.status}", code="session_closed")
    tasks = (
        await db.scalars(
            select(Task)
            .where(
                Task.session_id == session_id,
                or_(
                    Task.status.not_in([s.value for s in TERMINAL_TASK_STATES]),
                    Task.merge_status.in_(["pending", "conflict"]),
                ),
            )
            .order_by(Task.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).all()
    for task in tasks:
        if task.status == TaskStatus.SUCCEEDED:  # its work stays on its branch, unmerged
            task.merge_status = "abandoned"
            task.updated_at = utcnow()
            continue
        await _cancel(db, session=session, task=task, keys=keys, actor=actor)
    session.status = SessionStatus.CANCELLED
    session.updated_at = utcnow()
    timeline.record(
        db,
        session_id=session_id,
        type="session.cancelled",
        actor=actor,
        data={"tasks_cancelled": len(tasks)},
    )
    await db.flush()
    await scheduler.update_progress(db, session=session)
    await db.commit()
    return session


async def approve_task(db: AsyncSession, *, task_id: uuid.UUID, actor: str) -> Task:
    """Accept the work of a task awaiting approval: it succeeds and joins the merge queue.
    Approving an approved task changes nothing."""
    session, task = await _lock(db, task_id)
    if task.status == TaskStatus.SUCCEEDED and task.spec.get("requires_approval"):
        return task  # approved already
    if task.status != TaskStatus.AWAITING_APPROVAL:
        raise Conflict(
            f"a {task.status} task is not awaiting approval",
            code="not_awaiting_approval",
            details={"status": task.status},
        )
    now = utcnow()
    task.status = TaskStatus.SUCCEEDED
    task.merge_status = "pending"
    task.merge_seq = await db.scalar(MERGE_SEQ.next_value())
    task.finished_at = now
    task.updated_at = now
    timeline.record(
        db,
        session_id=session.id,
        task_id=task.id,
        attempt=task.attempt,
        type="task.approved",
        actor=actor,
    )
    await db.flush()
    await scheduler.update_progress(db, session=session)
    await db.commit()
    log.info("task approved", extra={"task_id": str(task.id), "actor": actor})
    return task


async def _lock_open_session(db: AsyncSession, session_id: uuid.UUID) -> Session:
    session = await scheduler.lock_session(db, session_id)
    if session is None:
        raise NotFound(f"session {session_id} not found", code="session_not_found")
    if session.status in CLOSED_SESSION_STATES:
        raise Conflict(f"session is {session.status}", code="session_closed")
    return session


async def pause_session(db: AsyncSession, *, session_id: uuid.UUID, actor: str) -> Session:
    """Queue no new task of the session until it is resumed; queued and running attempts
    finish. Pausing a paused session changes nothing."""
    session = await _lock_open_session(db, session_id)
    if session.status == SessionStatus.SUSPENDED:
        return session
    previous = session.status
    session.status = SessionStatus.SUSPENDED
    session.updated_at = utcnow()
    timeline.record(
        db, session_id=session.id, type="session.paused", actor=actor, data={"from": previous}
    )
    await db.commit()
    log.info("session paused", extra={"session_id": str(session.id), "actor": actor})
    return session


async def resume_session(
    db: AsyncSession, *, session_id: uuid.UUID, keys: Keys, actor: str
) -> Session:
    """Let a paused session queue its ready tasks again (or wait for review, when a merge
    conflicted meanwhile). Resuming a session that is not paused changes nothing."""
    session = await _lock_open_session(db, session_id)
    if session.status != SessionStatus.SUSPENDED:
        return session
    conflicts = await db.scalar(
        select(func.count()).where(
            Task.session_id == session.id,
            Task.status == TaskStatus.SUCCEEDED,
            Task.merge_status == "conflict",
        )
    )
    session.status = SessionStatus.AWAITING_REVIEW if conflicts else SessionStatus.ACTIVE
    session.updated_at = utcnow()
    timeline.record(
        db,
        session_id=session.id,
        type="session.resumed",
        actor=actor,
        data={"to": session.status},
    )
    await scheduler.queue_ready(db, session=session, keys=keys)
    await db.commit()
    log.info("session resumed", extra={"session_id": str(session.id), "actor": actor})
    return session
