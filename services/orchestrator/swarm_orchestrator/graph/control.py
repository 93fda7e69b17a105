"""Control actions of people and tools: retry, cancel or approve a task; pause, resume,
cancel, finish or archive a session.

A task whose spec says `requires_approval` waits in `awaiting_approval` after its attempt
succeeded, and so does one whose work crosses its session's policy (`integration.policies`);
approving it puts its work in the merge queue, cancelling it abandons the work. A
paused (`suspended`) session queues nothing new; what is queued or running finishes.

A succeeded task whose merge conflicted can be retried (a new attempt starts from the
integration head, told which files conflicted) or cancelled (its work is abandoned and its
dependents are blocked); once no conflict is left, a session awaiting review is active again.

Cancelling a large session is answered at once and finished in the background
(`graph.cancelling`).

Each locks what it changes (`graph.locking`), checks that the action applies (a 404 or a
409 with a stable code when not), makes the change through the state's owner
(`task_state`, `session_state`), which writes the timeline entry with the actor and any
cancel request to the outbox, and commits.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common.messages import utcnow
from swarm_common.states import SessionStatus, TaskStatus
from swarm_common.streams import Keys
from swarm_orchestrator.db.models import Checkpoint, Session, Task
from swarm_orchestrator.errors import Conflict, NotFound
from swarm_orchestrator.graph import (
    budgets,
    cancelling,
    races,
    retry,
    reviews,
    scheduler,
    session_state,
    task_state,
)
from swarm_orchestrator.graph.locking import (
    CLOSED_SESSION_STATES,
    LockedTask,
    forget_locks,
    lock_open_session,
    lock_session,
    lock_task,
)

__all__ = [
    "approve_task",
    "archive_session",
    "cancel_session",
    "cancel_task",
    "finish_session",
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
        TaskStatus.REVIEWING,
        TaskStatus.RACING,
    }
)


async def _lock(db: AsyncSession, task_id: uuid.UUID) -> LockedTask:
    locked = await lock_task(db, task_id)
    if locked is None:
        raise NotFound(f"task {task_id} not found", code="task_not_found")
    return locked


def _conflict_feedback(task: Task) -> str:
    files = ", ".join(task.conflict_files or [])
    return (
        "Your previous attempt's work conflicted with the integration branch "
        f"(files: {files or 'unknown'}). This attempt starts from the current "
        "integration branch, which holds the other tasks' work: build on it."
    )


async def retry_task(db: AsyncSession, *, task_id: uuid.UUID, keys: Keys, actor: str) -> Task:
    """Give a failed or cancelled task, or one whose merge conflicted, a new attempt, and
    unblock what waited on it."""
    locked = await _lock(db, task_id)
    session, task = locked.session, locked.task
    if session.status in CLOSED_SESSION_STATES:
        raise Conflict(f"session is {session.status}", code="session_closed")
    if task_state.is_conflicted(task):
        task.feedback = _conflict_feedback(task)
    elif task.status not in RETRYABLE:
        code = "task_blocked" if task.status == TaskStatus.BLOCKED else "task_not_retryable"
        raise Conflict(
            f"a {task.status} task cannot be retried",
            code=code,
            details={"status": task.status, "reason": task.reason},
        )
    decision = retry.decide(retry.Cause.RETRIED)  # a person's retry runs at once
    task_state.retry(db, task, actor=actor, retry_at=decision.retry_at(utcnow()))
    await task_state.unblock_downstream(db, task, actor=actor)
    await task_state.block_downstream(db, session_id=session.id)
    await scheduler.resume_after_review(db, session=session, keys=keys, actor=actor)
    await scheduler.queue_ready(db, session=session, keys=keys, only=[task.id])
    await session_state.finish_or_reopen(db, session)
    await db.commit()
    log.info("task retried", extra={"task_id": str(task.id), "actor": actor})
    return task


async def cancel_task(db: AsyncSession, *, task_id: uuid.UUID, keys: Keys, actor: str) -> Task:
    """Cancel a task that has not ended, or abandon the work of one whose merge conflicted;
    a running attempt is asked to stop."""
    locked = await _lock(db, task_id)
    session, task = locked.session, locked.task
    if not task_state.is_conflicted(task) and task.status not in CANCELLABLE:
        raise Conflict(
            f"a {task.status} task cannot be cancelled",
            code="task_not_cancellable",
            details={"status": task.status},
        )
    was = task.status
    await task_state.cancel(db, task, keys=keys, actor=actor)
    if was == TaskStatus.REVIEWING:  # nobody waits for its verdict now
        await reviews.cancel_runs(db, session=session, task=task, keys=keys, actor=actor)
    if was == TaskStatus.RACING:  # nor for its contenders
        await races.cancel_contenders(db, session=session, task=task, keys=keys, actor=actor)
    await task_state.block_downstream(db, session_id=session.id)
    await scheduler.resume_after_review(db, session=session, keys=keys, actor=actor)
    await session_state.finish_or_reopen(db, session)
    await db.commit()
    return task


async def cancel_session(
    db: AsyncSession, *, session_id: uuid.UUID, keys: Keys, actor: str
) -> Session:
    """Cancel the session: at once every task that could still start or merge, and a few
    hundred more; the rest (tasks that can no longer start) in the background
    (`graph.cancelling`). Cancelling a cancelled session changes nothing."""
    session = await lock_session(db, session_id)
    if session is None:
        raise NotFound(f"session {session_id} not found", code="session_not_found")
    if session.status == SessionStatus.CANCELLED:
        return session
    if session.status in CLOSED_SESSION_STATES:
        raise Conflict(f"session is {session.status}", code="session_closed")
    try:
        done, left = await cancelling.cancel_at_once(db, session, keys=keys, actor=actor)
        session_state.cancel(db, session, actor=actor, tasks_cancelled=done, remaining=left)
        await db.flush()
        await session_state.finish_or_reopen(db, session)
        await db.commit()
    finally:
        forget_locks(db)
    log.info(
        "session cancelled",
        extra={"session_id": str(session.id), "actor": actor, "cancelled": done, "left": left},
    )
    return session


async def approve_task(db: AsyncSession, *, task_id: uuid.UUID, actor: str) -> Task:
    """Accept the work of a task awaiting approval: it succeeds and joins the merge queue.
    Approving an approved task changes nothing."""
    locked = await _lock(db, task_id)
    session, task = locked.session, locked.task
    if task.status == TaskStatus.SUCCEEDED and (
        task.spec.get("requires_approval") or task.approval_reason  # held by a policy
    ):
        return task  # approved already
    if task.status != TaskStatus.AWAITING_APPROVAL:
        raise Conflict(
            f"a {task.status} task is not awaiting approval",
            code="not_awaiting_approval",
            details={"status": task.status},
        )
    await task_state.approve(db, task, actor=actor)
    await db.flush()
    await session_state.finish_or_reopen(db, session)
    await db.commit()
    log.info("task approved", extra={"task_id": str(task.id), "actor": actor})
    return task


async def pause_session(db: AsyncSession, *, session_id: uuid.UUID, actor: str) -> Session:
    """Queue no new task of the session until it is resumed; queued and running attempts
    finish. Pausing a paused session changes nothing."""
    session = await lock_open_session(db, session_id)
    if session.status == SessionStatus.SUSPENDED and session.suspended_reason is None:
        return session  # a person's pause already (one the system made becomes one)
    session_state.pause(db, session, actor=actor)
    await db.commit()
    log.info("session paused", extra={"session_id": str(session.id), "actor": actor})
    return session


async def resume_session(
    db: AsyncSession, *, session_id: uuid.UUID, keys: Keys, actor: str
) -> Session:
    """Let a paused session queue its ready tasks again (or wait for review, when a merge
    conflicted meanwhile). Resuming a session that is not paused changes nothing; one whose
    budget (or its tenant's) is spent is 409 `budget_exhausted`: raise the budget instead."""
    session = await lock_open_session(db, session_id)
    if session.status == SessionStatus.SUSPENDED:
        await _refuse_when_spent(db, session)
    if not await session_state.resume(db, session, actor=actor):
        return session
    await scheduler.queue_ready(db, session=session, keys=keys)
    await db.commit()
    log.info("session resumed", extra={"session_id": str(session.id), "actor": actor})
    return session


async def _refuse_when_spent(db: AsyncSession, session: Session) -> None:
    spent = (await budgets.standing(db, session)).exhausted
    if spent:
        names = ", ".join(limit.name for limit in spent)
        raise Conflict(
            f"the budget is spent ({names}): raise it to resume the session",
            code="budget_exhausted",
            details={"limits": [limit.said() for limit in spent]},
        )


async def _lock_session(db: AsyncSession, session_id: uuid.UUID) -> Session:
    session = await lock_session(db, session_id)
    if session is None:
        raise NotFound(f"session {session_id} not found", code="session_not_found")
    return session


async def finish_session(
    db: AsyncSession, *, session_id: uuid.UUID, actor: str
) -> tuple[Session, Checkpoint | None]:
    """A person settles a session whose tasks have all ended, failures and all: it is
    `finalized`, at once or once the final checkpoint returned passes. Finishing a finalized
    session changes nothing."""
    session = await _lock_session(db, session_id)
    if session.status == SessionStatus.FINALIZED:
        return session, None
    if session.status == SessionStatus.CANCELLED:
        raise Conflict("a cancelled session cannot be finished", code="session_closed")
    graph = await session_state.tally(db, session.id)
    if not graph.total or graph.open:
        raise Conflict(
            f"{graph.open} of {graph.total} tasks have not ended (or wait to merge): wait for "
            "them or cancel them, then finish"
            if graph.total
            else "the session has no tasks to finish",
            code="session_not_settled",
            details={"open": graph.open, "counts": graph.counts},
        )
    await session_state.finish_or_reopen(db, session)  # finished, and settled if it was not
    checkpoint = await session_state.finish(db, session, actor=actor)
    await db.commit()
    log.info(
        "session finished",
        extra={"session_id": str(session.id), "actor": actor, "status": session.status},
    )
    return session, checkpoint


async def archive_session(
    db: AsyncSession, *, session_id: uuid.UUID, actor: str, archived: bool
) -> Session:
    """Hide a session from lists (it is kept in full), or list it again. Archiving an
    archived session changes nothing."""
    session = await _lock_session(db, session_id)
    if session_state.archive(db, session, actor=actor, archived=archived):
        await db.commit()
    return session
