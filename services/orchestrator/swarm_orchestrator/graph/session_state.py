"""The owner of a session's state: the only code that changes a session's `status` or
marks it finished.

Each change is checked against `swarm_common.states.SESSION_TRANSITIONS` before anything is
stored and writes its timeline entry in the caller's transaction, which holds the session's
lock (`graph.locking`).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common.messages import utcnow
from swarm_common.states import (
    SESSION_TRANSITIONS,
    TERMINAL_TASK_STATES,
    MergeStatus,
    SessionStatus,
    TaskStatus,
    check_transition,
)
from swarm_orchestrator.db import timeline
from swarm_orchestrator.db.models import Session, Task

__all__ = [
    "activate",
    "await_review",
    "cancel",
    "create",
    "finish_or_reopen",
    "pause",
    "resume",
    "resume_after_review",
]


def _move(
    db: AsyncSession,
    session: Session,
    to: SessionStatus,
    event: str,
    *,
    actor: str = "system",
    data: dict[str, Any] | None = None,
) -> None:
    check_transition(SESSION_TRANSITIONS, session.status, to, what=f"session {session.id}")
    session.status = to
    session.updated_at = utcnow()
    timeline.record(db, session_id=session.id, type=event, actor=actor, data=data)


async def create(
    db: AsyncSession, *, has_tasks: bool, actor: str, data: dict[str, Any], **columns: Any
) -> Session:
    """A new session, `active` when it comes with tasks and `draft` until it has some."""
    session = Session(status=SessionStatus.ACTIVE if has_tasks else SessionStatus.DRAFT, **columns)
    db.add(session)
    await db.flush()  # the timeline entry refers to it
    timeline.record(db, session_id=session.id, type="session.created", actor=actor, data=data)
    return session


def activate(db: AsyncSession, session: Session, *, actor: str) -> None:
    """The session got new tasks: a draft becomes active (and the session is updated)."""
    if session.status == SessionStatus.DRAFT:
        _move(db, session, SessionStatus.ACTIVE, "session.activated", actor=actor)
    session.updated_at = utcnow()


def await_review(db: AsyncSession, session: Session, *, data: dict[str, Any]) -> None:
    """A merge conflicted and a person decides: nothing new is queued meanwhile."""
    if session.status == SessionStatus.ACTIVE:
        _move(db, session, SessionStatus.AWAITING_REVIEW, "session.awaiting_review", data=data)


async def resume_after_review(db: AsyncSession, session: Session, *, actor: str) -> bool:
    """awaiting_review → active once no conflict is left; True when it changed."""
    if session.status != SessionStatus.AWAITING_REVIEW or await _conflicts(db, session.id):
        return False
    _move(db, session, SessionStatus.ACTIVE, "session.resumed", actor=actor)
    return True


def pause(db: AsyncSession, session: Session, *, actor: str) -> None:
    """Queue nothing new until resumed; pausing a paused session changes nothing."""
    if session.status != SessionStatus.SUSPENDED:
        previous = session.status
        _move(
            db,
            session,
            SessionStatus.SUSPENDED,
            "session.paused",
            actor=actor,
            data={"from": previous},
        )


async def resume(db: AsyncSession, session: Session, *, actor: str) -> bool:
    """A paused session runs again (or waits for review, when a merge conflicted
    meanwhile); True when it changed."""
    if session.status != SessionStatus.SUSPENDED:
        return False
    to = SessionStatus.AWAITING_REVIEW if await _conflicts(db, session.id) else SessionStatus.ACTIVE
    _move(db, session, to, "session.resumed", actor=actor, data={"to": to})
    return True


def cancel(db: AsyncSession, session: Session, *, actor: str, tasks_cancelled: int) -> None:
    _move(
        db,
        session,
        SessionStatus.CANCELLED,
        "session.cancelled",
        actor=actor,
        data={"tasks_cancelled": tasks_cancelled},
    )


async def finish_or_reopen(db: AsyncSession, session: Session) -> None:
    """Mark the session finished when its last task ended and every succeeded one is merged,
    and unfinished again when a task is retried."""
    waiting = (MergeStatus.PENDING, MergeStatus.CONFLICT)
    rows = (
        await db.execute(
            select(Task.status, func.count(), func.count().filter(Task.merge_status.in_(waiting)))
            .where(Task.session_id == session.id)
            .group_by(Task.status)
        )
    ).all()
    counts = {status: n for status, n, _ in rows}
    unmerged = sum(n for status, _, n in rows if status == TaskStatus.SUCCEEDED)
    open_tasks = sum(n for s, n in counts.items() if s not in TERMINAL_TASK_STATES) + unmerged
    now = utcnow()
    if open_tasks == 0 and counts and session.finished_at is None:
        session.finished_at = now
        session.updated_at = now
        timeline.record(db, session_id=session.id, type="session.finished", data={"counts": counts})
    elif open_tasks and session.finished_at is not None:
        session.finished_at = None
        session.updated_at = now


async def _conflicts(db: AsyncSession, session_id: uuid.UUID) -> int:
    return int(
        await db.scalar(
            select(func.count()).where(
                Task.session_id == session_id,
                Task.status == TaskStatus.SUCCEEDED,
                Task.merge_status == MergeStatus.CONFLICT,
            )
        )
        or 0
    )
