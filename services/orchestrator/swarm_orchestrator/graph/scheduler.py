"""The scheduler: which tasks run next, and which can no longer run.

A task is queued when it is `pending`, its retry time (if any) has passed, its session is
`active` and every parent `succeeded` and is merged into the integration branch. Queueing a
task makes a new attempt starting from the integration head (so it builds on its parents'
work), writes the task message to the outbox, flags other dispatched tasks that expect to
touch the same files, and appends to the timeline, all in the caller's transaction.

Concurrency: every transaction that changes tasks of a session first takes that session's
row lock (`lock_session`). Two orchestrators finishing two parents of the same child at
once therefore see each other's commits, and the child is queued exactly once.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Collection, Sequence

from sqlalchemy import and_, exists, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from swarm_common.messages import TaskMessage, utcnow
from swarm_common.states import TERMINAL_TASK_STATES, AttemptStatus, SessionStatus, TaskStatus
from swarm_common.streams import Keys
from swarm_orchestrator.db import outbox, timeline
from swarm_orchestrator.db.models import Attempt, Session, Task, TaskDependency

__all__ = [
    "MERGED",
    "branch_name",
    "integration_branch",
    "lock_session",
    "queue_ready",
    "refresh_blocked",
    "retry_delay_s",
    "sweep",
    "update_progress",
]

log = logging.getLogger(__name__)


MERGED = ("merged", "empty", "resolved", "rolled_back")
"""Merge states in which a succeeded task's dependents may run."""


def branch_name(session_id: uuid.UUID, key: str) -> str:
    return f"swarm/{session_id}/task/{key}"


def integration_branch(session_id: uuid.UUID) -> str:
    return f"swarm/{session_id}/integration"


async def lock_session(db: AsyncSession, session_id: uuid.UUID) -> Session | None:
    """Lock one session's row for the rest of the transaction (see the module docstring)."""
    return await db.scalar(
        select(Session)
        .where(Session.id == session_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )


async def queue_ready(
    db: AsyncSession,
    *,
    session: Session,
    keys: Keys,
    only: Collection[uuid.UUID] | None = None,
) -> list[Task]:
    """Queue every ready task of `session` (or only those in `only`); the session must be
    locked by the caller."""
    if session.status != SessionStatus.ACTIVE:
        return []
    parent = aliased(Task)
    unfinished_parent = exists().where(
        TaskDependency.task_id == Task.id,
        TaskDependency.depends_on_id == parent.id,
        or_(
            parent.status != TaskStatus.SUCCEEDED,
            parent.merge_status.is_(None),
            parent.merge_status.not_in(MERGED),
        ),
    )
    stmt = (
        select(Task)
        .where(
            Task.session_id == session.id,
            Task.status == TaskStatus.PENDING,
            or_(Task.retry_at.is_(None), Task.retry_at <= func.now()),
            ~unfinished_parent,
        )
        .order_by(Task.priority.desc(), Task.created_at, Task.key)
        .with_for_update(of=Task)
        .execution_options(populate_existing=True)
    )
    if only is not None:
        if not only:
            return []
        stmt = stmt.where(Task.id.in_(list(only)))
    tasks = list((await db.scalars(stmt)).all())
    if not tasks:
        return []
    dispatched = await _dispatched_files(db, session.id)
    for task in tasks:
        base, merge_with = await _starting_point(db, task=task, session=session)
        _queue(db, task=task, session=session, keys=keys, base=base, merge_with=merge_with)
        _flag_overlaps(db, task=task, dispatched=dispatched)
    return tasks


async def _starting_point(
    db: AsyncSession, *, task: Task, session: Session
) -> tuple[str, str | None]:
    """The commit a task's worktree starts from, and for a conflict-resolution task the
    integration head to merge into it."""
    head = session.integration_head or session.base_commit
    if task.resolves_task_id is None:
        return head, None
    resolved = await db.get(Task, task.resolves_task_id)
    commit = (resolved.result or {}).get("commit") if resolved is not None else None
    return (commit, head) if commit else (head, None)


async def _dispatched_files(db: AsyncSession, session_id: uuid.UUID) -> dict[str, set[str]]:
    """Expected files of the session's tasks that are queued, running or not yet merged."""
    rows = await db.execute(
        select(Task.key, Task.spec["files"]).where(
            Task.session_id == session_id,
            or_(
                Task.status.in_([TaskStatus.QUEUED, TaskStatus.RUNNING]),
                and_(Task.status == TaskStatus.SUCCEEDED, Task.merge_status == "pending"),
            ),
        )
    )
    return {key: set(files) for key, files in rows.all() if files}


def _flag_overlaps(db: AsyncSession, *, task: Task, dispatched: dict[str, set[str]]) -> None:
    files = set(task.spec.get("files") or ())
    if not files:
        return
    overlaps = [
        {"task": key, "files": sorted(files & theirs)}
        for key, theirs in sorted(dispatched.items())
        if key != task.key and files & theirs
    ]
    dispatched[task.key] = files
    if not overlaps:
        return
    task.overlaps = overlaps
    timeline.record(
        db,
        session_id=task.session_id,
        task_id=task.id,
        attempt=task.attempt,
        type="task.overlap",
        data={"overlaps": overlaps},
    )
    log.warning(
        "task expects to touch files other dispatched tasks touch",
        extra={"task_key": task.key, "overlaps": [o["task"] for o in overlaps]},
    )


def _queue(
    db: AsyncSession,
    *,
    task: Task,
    session: Session,
    keys: Keys,
    base: str,
    merge_with: str | None,
) -> None:
    now = utcnow()
    task.attempt += 1
    task.status = TaskStatus.QUEUED
    task.queued_at = now
    task.updated_at = now
    task.retry_at = None
    task.base_commit = base
    task.merge_status = None
    task.merge_commit = None
    task.overlaps = None
    db.add(
        Attempt(
            task_id=task.id,
            number=task.attempt,
            status=AttemptStatus.QUEUED,
            base_commit=base,
        )
    )
    spec = task.spec
    message = TaskMessage(
        session_id=session.id,
        task_id=task.id,
        task_key=task.key,
        attempt=task.attempt,
        agent=task.agent,
        title=task.title,
        prompt=task.prompt,
        role=task.role,
        skills=spec.get("skills", []),
        acceptance=spec.get("acceptance", []),
        files=spec.get("files", []),
        gates=spec.get("gates"),
        context=session.goal,
        repo=session.repo_path,
        base_commit=base,
        merge_with=merge_with,
        conflict_files=list(task.conflict_files or ()) if merge_with else [],
        feedback=task.feedback,
        branch=branch_name(session.id, task.key),
        timeout_s=task.timeout_s,
        model=spec.get("model"),
        max_turns=spec.get("max_turns"),
        allowed_tools=spec.get("allowed_tools"),
        output_schema=spec.get("output_schema"),
        settings=session.settings,
    )
    outbox.add_message(db, stream=keys.tasks(task.agent), message=message)
    timeline.record(
        db,
        session_id=session.id,
        task_id=task.id,
        attempt=task.attempt,
        type="task.queued",
        data={
            "base_commit": base,
            "agent": task.agent,
            **({"merge_with": merge_with} if merge_with else {}),
        },
    )
    log.info(
        "task queued",
        extra={"task_id": str(task.id), "task_key": task.key, "attempt": task.attempt},
    )


_BLOCK_SQL = text("""
WITH RECURSIVE bad(id, root) AS (
    SELECT id, key FROM tasks
    WHERE session_id = :sid AND status IN ('failed', 'cancelled')
  UNION
    SELECT d.task_id, bad.root FROM task_dependencies d JOIN bad ON d.depends_on_id = bad.id
)
UPDATE tasks AS t
SET status = 'blocked', reason = 'dependency ' || b.root || ' did not succeed',
    updated_at = now(), finished_at = now()
FROM (SELECT id, min(root) AS root FROM bad GROUP BY id) AS b
WHERE t.id = b.id AND t.status = 'pending'
RETURNING t.id, t.key, b.root
""")


async def refresh_blocked(db: AsyncSession, *, session_id: uuid.UUID) -> list[str]:
    """Block every pending task downstream of a failed or cancelled task; return their keys."""
    rows = (await db.execute(_BLOCK_SQL, {"sid": session_id})).all()
    await timeline.record_many(
        db,
        (
            {
                "session_id": session_id,
                "task_id": row.id,
                "type": "task.blocked",
                "data": {"blocked_by": row.root},
            }
            for row in rows
        ),
    )
    if rows:
        log.info("tasks blocked", extra={"session_id": str(session_id), "count": len(rows)})
    return [row.key for row in rows]


async def update_progress(db: AsyncSession, *, session: Session) -> None:
    """Mark the session finished when its last task ended and every succeeded one is merged
    (and unfinished again on a retry)."""
    rows = (
        await db.execute(
            select(
                Task.status,
                func.count(),
                func.count().filter(Task.merge_status.in_(["pending", "conflict"])),
            )
            .where(Task.session_id == session.id)
            .group_by(Task.status)
        )
    ).all()
    counts = {status: n for status, n, _ in rows}
    unmerged = sum(waiting for status, _, waiting in rows if status == TaskStatus.SUCCEEDED)
    open_tasks = sum(n for s, n in counts.items() if s not in TERMINAL_TASK_STATES) + unmerged
    now = utcnow()
    if open_tasks == 0 and counts and session.finished_at is None:
        session.finished_at = now
        session.updated_at = now
        timeline.record(db, session_id=session.id, type="session.finished", data={"counts": counts})
    elif open_tasks and session.finished_at is not None:
        session.finished_at = None
        session.updated_at = now


def retry_delay_s(failures: int, *, base_s: float, cap_s: float) -> float:
    """Exponential backoff with full jitter: up to base·2^(failures-1), at most `cap_s`."""
    ceiling = min(cap_s, base_s * 2 ** max(0, failures - 1))
    return random.uniform(ceiling / 2, ceiling)


async def sweep(sessionmaker: async_sessionmaker[AsyncSession], *, keys: Keys) -> int:
    """Queue whatever became ready without an event to trigger it (retry times passing, a
    missed wake-up); return how many tasks were queued."""
    async with sessionmaker() as db:
        session_ids: Sequence[uuid.UUID] = (
            await db.scalars(
                select(Task.session_id)
                .distinct()
                .join(
                    Session,
                    and_(Session.id == Task.session_id, Session.status == SessionStatus.ACTIVE),
                )
                .where(
                    Task.status == TaskStatus.PENDING,
                    or_(Task.retry_at.is_(None), Task.retry_at <= func.now()),
                )
            )
        ).all()
    queued = 0
    for session_id in session_ids:
        async with sessionmaker() as db, db.begin():
            session = await lock_session(db, session_id)
            if session is not None:
                queued += len(await queue_ready(db, session=session, keys=keys))
    return queued
