"""Rollback of a session's integration branch to a passed checkpoint.

The branch is reset (compare-and-swap) to the checkpoint's commit; tasks whose merges that
undoes are marked `rolled_back` (and `merged` again when a later rollback brings their
merge commits back). Tasks in flight started from the old head: their attempts stop and
they run again from the checkpoint (`retry.Cause.ROLLED_BACK`), so their merges cannot
bring the undone work back. Every step is on the timeline with who asked.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common import git
from swarm_common.messages import utcnow
from swarm_common.states import AttemptStatus, MergeStatus, TaskStatus
from swarm_common.streams import Keys
from swarm_orchestrator.db import timeline
from swarm_orchestrator.db.models import Checkpoint, Session, Task
from swarm_orchestrator.errors import Conflict, NotFound
from swarm_orchestrator.graph import retry, scheduler, session_state, task_state
from swarm_orchestrator.graph.locking import lock_open_session, lock_tasks
from swarm_orchestrator.observability import metrics

__all__ = ["rollback"]

log = logging.getLogger(__name__)


async def rollback(
    db: AsyncSession,
    *,
    session_id: uuid.UUID,
    number: int | None,
    workspace: Path,
    keys: Keys,
    actor: str,
) -> tuple[Session, Checkpoint, list[str]]:
    """Reset the integration branch to a passed checkpoint (the newest if `number` is None);
    return the session, the checkpoint and the keys of tasks whose merges were undone.
    Tasks in flight (queued, running, or waiting to merge) started from the old head: their
    attempts are cancelled and they run again from the checkpoint, so their merges cannot
    bring the undone work back."""
    session = await lock_open_session(db, session_id)
    if (session.settings or {}).get("dry_run"):  # its checkpoints are of its dry-run branch
        raise Conflict("a dry run merges nothing: there is nothing to roll back", code="dry_run")
    checkpoint = await _passed(db, session_id, number)
    mirror = workspace / session.repo_path
    previous, undone, kept = await asyncio.to_thread(
        _reset,
        mirror,
        scheduler.integration_branch(session_id),
        checkpoint.commit,
        session.base_commit,
    )
    if kept:  # rolling forward again: work an earlier rollback undid is back
        await task_state.restore_merges(db, session_id=session_id, merge_commits=kept)
    rolled: list[str] = []
    if undone:
        undone_tasks = await lock_tasks(
            db,
            session,
            Task.merge_status.in_([MergeStatus.MERGED, MergeStatus.RESOLVED]),
            Task.merge_commit.in_(undone),
        )
        rolled = task_state.roll_back_merges(undone_tasks)
    session.integration_head = checkpoint.commit
    session.updated_at = utcnow()
    rerun = await _restart_in_flight(db, session=session, keys=keys, actor=actor)
    timeline.record(
        db,
        session_id=session_id,
        type="session.rolled_back",
        actor=actor,
        data={
            "checkpoint": checkpoint.number,
            "from": previous,
            "to": checkpoint.commit,
            "tasks": sorted(rolled),
            "restarted": rerun,
        },
    )
    metrics.rolled_back(db)
    await db.commit()
    log.info(
        "integration branch rolled back",
        extra={"session_id": str(session_id), "checkpoint": checkpoint.number},
    )
    return session, checkpoint, sorted(rolled)


async def _passed(db: AsyncSession, session_id: uuid.UUID, number: int | None) -> Checkpoint:
    """Checkpoint `number` of the session if it passed (the newest passed one for None)."""
    stmt = select(Checkpoint).where(
        Checkpoint.session_id == session_id, Checkpoint.status == "passed"
    )
    if number is not None:
        stmt = stmt.where(Checkpoint.number == number)
    checkpoint = await db.scalar(stmt.order_by(Checkpoint.number.desc()).limit(1))
    if checkpoint is None:
        raise NotFound(
            "no passed checkpoint" + (f" number {number}" if number is not None else ""),
            code="checkpoint_not_found",
        )
    return checkpoint


async def _restart_in_flight(
    db: AsyncSession, *, session: Session, keys: Keys, actor: str
) -> list[str]:
    """Tasks in flight (queued, running, or waiting to merge) started from a head that is
    gone: their attempts stop and they run again from the checkpoint."""
    tasks = await lock_tasks(
        db,
        session,
        or_(
            Task.status.in_(task_state.IN_FLIGHT),
            and_(Task.status == TaskStatus.SUCCEEDED, Task.merge_status == MergeStatus.PENDING),
        ),
    )
    reason = f"the integration branch was rolled back by {actor}"
    decision = retry.decide(retry.Cause.ROLLED_BACK)  # at once, from the checkpoint
    for task in tasks:
        if task.status in task_state.IN_FLIGHT:
            await task_state.stop_attempt(
                db, task, status=AttemptStatus.CANCELLED, reason=reason, keys=keys
            )
        task.feedback = (
            "The integration branch was rolled back while your previous attempt was under "
            "way; that work built on changes that are gone and was set aside. Do the task "
            "again on the branch as it is now."
        )
        task_state.reschedule(
            db,
            task,
            reason=task.reason,
            retry_at=decision.retry_at(utcnow()),
            entry=task_state.Entry("task.requeued", actor=actor, data={"reason": "rollback"}),
        )
    await db.flush()
    await scheduler.queue_ready(db, session=session, keys=keys, only=[t.id for t in tasks])
    await session_state.finish_or_reopen(db, session)
    return [t.key for t in tasks]


def _reset(mirror: Path, branch: str, commit: str, base: str) -> tuple[str, list[str], list[str]]:
    """Move `branch` to `commit`; return where it was, the merge commits it no longer holds
    and the merge commits it holds (since the session's base)."""
    ref = f"refs/heads/{branch}"
    with git.repo_lock(mirror):
        head = git.resolve_commit(mirror, ref)
        undone = git.git("rev-list", "--merges", f"{commit}..{head}", git_dir=mirror).stdout.split()
        kept = git.git("rev-list", "--merges", f"{base}..{commit}", git_dir=mirror).stdout.split()
        if head != commit:
            git.update_ref(mirror, ref, commit, old=head, reason="swarm: rollback")
    return head, undone, kept
