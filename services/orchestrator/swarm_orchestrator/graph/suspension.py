"""What a gap in the fleet does to sessions: a kind with no live adapter is never silent.

On every pass of the registry (`runtime.registry`), with the fleet as `graph.fleet` sees
it:

- **Rerouting.** An `auto` task queued on a kind that has had no live adapter for the grace
  period (and was queued before it) goes elsewhere: its attempt is cancelled (a cancel
  request goes out, in case an adapter of the kind comes back to it) and it is queued again,
  which routes it anew (`graph.routing`; with no kind to take it, it waits pending).
- **Failover.** A task with `fallback` kinds does not wait for its kind: queued (not yet
  started) on a kind gone for the grace period, or queued or waiting for a retry on a kind
  paused for its provider's limits (`graph.pauses`), it moves to its next live kind that
  is not paused (`graph.failover`; its queued attempt is cancelled, and it is queued anew),
  so its session is not suspended for it; a session the system suspended resumes once its
  tasks moved. With no kind to move to, it waits as before.
- **Suspension.** An active session with queued tasks that name a kind with no live adapter
  for the grace period (counted from the newest of: the kind's last sighting, the oldest
  such task's queueing, the session's last change) is `suspended` with the reason (`no live
  claude adapter since 2026-12-03 18:20:03 UTC`; `session_state.suspend_for_fleet`).
- **Resumption.** A session the system suspended resumes by itself (→ active, its ready
  tasks queued) once every kind it waited for has a live adapter, or none of its queued
  tasks needs one any more. A person's pause never resumes here.

Each session is changed in a transaction of its own, under its lock.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common.messages import utcnow
from swarm_common.specs import AUTO_AGENT
from swarm_common.states import AttemptStatus, SessionStatus, TaskStatus
from swarm_common.streams import Keys
from swarm_orchestrator.db.models import Session, Task
from swarm_orchestrator.graph import failover, fleet, routing, scheduler, session_state, task_state
from swarm_orchestrator.graph.fleet import KindState
from swarm_orchestrator.graph.locking import lock_session, lock_task

__all__ = ["Outcome", "check", "missing_reason"]

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    suspended: int = 0
    resumed: int = 0
    rerouted: int = 0
    failed_over: int = 0

    def __bool__(self) -> bool:
        return bool(self.suspended or self.resumed or self.rerouted or self.failed_over)


def missing_reason(states: list[KindState]) -> str:
    """`no live claude adapter since 2026-12-03 18:20:03 UTC` (one clause a kind)."""
    return "; ".join(f"no live {s.kind} adapter {s.missing_since()}" for s in states)


async def check(
    sessionmaker: async_sessionmaker[AsyncSession], *, keys: Keys, grace_s: float
) -> Outcome:
    """One pass: reroute, suspend and resume as the fleet stands now."""
    async with sessionmaker() as db:
        kinds = await fleet.kinds(db)
    now = utcnow()
    dead = sorted(k for k, s in kinds.items() if not s.live)
    outcome = Outcome()
    outcome.rerouted = await _reroute(sessionmaker, keys=keys, kinds=kinds, grace_s=grace_s)
    outcome.failed_over = await _fail_over(sessionmaker, keys=keys, kinds=kinds, grace_s=grace_s)
    active, suspended = await _waiting(sessionmaker, dead)
    for session_id, (updated_at, waiting) in active.items():
        overdue = sorted(
            k
            for k, since in waiting.items()
            if _overdue(kinds[k].last_seen_at, since, updated_at, now, grace_s)
        )
        if overdue and await _suspend(sessionmaker, session_id, overdue, kinds):
            outcome.suspended += 1
    for session_id, (waited_for, missing) in suspended.items():
        still = sorted(set(waited_for) & missing)
        if not still and await _resume(sessionmaker, session_id, waited_for, keys):
            outcome.resumed += 1
        elif still and still != sorted(waited_for):
            await _suspend(sessionmaker, session_id, still, kinds)
    return outcome


def _overdue(
    last_seen: datetime | None,
    queued_since: datetime,
    updated_at: datetime,
    now: datetime,
    grace_s: float,
) -> bool:
    start = max(t for t in (last_seen, queued_since, updated_at) if t is not None)
    return now - start > timedelta(seconds=grace_s)


_Suspended = tuple[list[str], set[str]]
"""A session the system suspended: the kinds it waits for, those its tasks still miss."""


async def _waiting(
    sessionmaker: async_sessionmaker[AsyncSession], dead: list[str]
) -> tuple[dict[uuid.UUID, tuple[datetime, dict[str, datetime]]], dict[uuid.UUID, _Suspended]]:
    """Active sessions whose queued tasks name (not `auto`: those are rerouted) a kind in
    `dead`, with the session's last change and since when the oldest of each kind waits;
    and every session the system suspended, with the kinds it waits for and those of `dead`
    its queued tasks still name."""
    named = (
        Task.status == TaskStatus.QUEUED,
        Task.agent.in_(dead),
        Task.spec["agent"].astext != AUTO_AGENT,
    )
    async with sessionmaker() as db:
        rows = (
            await db.execute(
                select(Task.session_id, Session.updated_at, Task.agent, func.min(Task.queued_at))
                .join(Session, Session.id == Task.session_id)
                .where(Session.status == SessionStatus.ACTIVE, *named)
                .group_by(Task.session_id, Session.updated_at, Task.agent)
            )
        ).all()
        held = (
            await db.execute(
                select(Session.id, Session.suspended_kinds).where(
                    Session.status == SessionStatus.SUSPENDED,
                    Session.suspended_kinds.is_not(None),
                )
            )
        ).all()
        still = (
            (
                await db.execute(
                    select(Task.session_id, Task.agent)
                    .where(Task.session_id.in_([h.id for h in held]), *named)
                    .distinct()
                )
            ).all()
            if held
            else []
        )
    active: dict[uuid.UUID, tuple[datetime, dict[str, datetime]]] = {}
    for session_id, updated_at, agent, queued_at in rows:
        active.setdefault(session_id, (updated_at, {}))[1][agent] = queued_at or utcnow()
    missing: dict[uuid.UUID, set[str]] = defaultdict(set)
    for session_id, agent in still:
        missing[session_id].add(agent)
    suspended = {h.id: (list(h.suspended_kinds), missing[h.id]) for h in held}
    return active, suspended


async def _suspend(
    sessionmaker: async_sessionmaker[AsyncSession],
    session_id: uuid.UUID,
    missing: list[str],
    kinds: dict[str, KindState],
) -> bool:
    reason = missing_reason([kinds[k] for k in missing])
    async with sessionmaker() as db, db.begin():
        session = await lock_session(db, session_id)
        if session is None:
            return False
        changed = session_state.suspend_for_fleet(db, session, kinds=missing, reason=reason)
    if changed:
        log.warning(
            "session suspended: agent kinds without a live adapter",
            extra={"session_id": str(session_id), "kinds": missing, "reason": reason},
        )
    return changed


async def _resume(
    sessionmaker: async_sessionmaker[AsyncSession],
    session_id: uuid.UUID,
    waited_for: list[str],
    keys: Keys,
) -> bool:
    why = f"a live adapter of {', '.join(waited_for)} is back (or no task needs one)"
    async with sessionmaker() as db, db.begin():
        session = await lock_session(db, session_id)
        if session is None or not await session_state.resume_for_fleet(db, session, why=why):
            return False
        await scheduler.queue_ready(db, session=session, keys=keys)
    log.warning(
        "session resumed: its agent kinds are back",
        extra={"session_id": str(session_id), "kinds": waited_for},
    )
    return True


async def _reroute(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    keys: Keys,
    kinds: dict[str, KindState],
    grace_s: float,
) -> int:
    """Queue again the `auto` tasks waiting on a kind that has been gone for the grace
    period; how many were."""
    now = utcnow()
    gone = _gone(kinds, grace_s)
    if not gone:
        return 0
    async with sessionmaker() as db:
        stuck = (
            await db.scalars(
                select(Task.id)
                .join(Session, Session.id == Task.session_id)
                .where(
                    Session.status == SessionStatus.ACTIVE,
                    Task.status == TaskStatus.QUEUED,
                    Task.spec["agent"].astext == AUTO_AGENT,
                    Task.agent.in_(gone),
                    Task.queued_at < now - timedelta(seconds=grace_s),
                )
                .limit(1000)
            )
        ).all()
    return await _one_by_one(
        sessionmaker, stuck, lambda db, task_id: _reroute_one(db, task_id, kinds, gone, keys)
    )


async def _one_by_one(
    sessionmaker: async_sessionmaker[AsyncSession],
    task_ids: Sequence[uuid.UUID],
    step: Callable[[AsyncSession, uuid.UUID], Awaitable[int]],
) -> int:
    """`step` for each task, each in a transaction of its own (it locks the task); the sum
    of what they return."""
    done = 0
    for task_id in task_ids:
        async with sessionmaker() as db, db.begin():
            done += await step(db, task_id)
    return done


async def _reroute_one(
    db: AsyncSession, task_id: uuid.UUID, kinds: dict[str, KindState], gone: list[str], keys: Keys
) -> int:
    locked = await lock_task(db, task_id)
    if locked is None:
        return 0
    session, task = locked.session, locked.task
    if task.status != TaskStatus.QUEUED or task.agent not in gone:
        return 0
    was = task.agent
    reason = f"{missing_reason([kinds[was]])}: routed again"
    await task_state.stop_attempt(
        db, task, status=AttemptStatus.CANCELLED, reason=reason, keys=keys
    )
    task_state.reschedule(
        db,
        task,
        reason=reason,
        retry_at=None,
        entry=task_state.Entry("task.rerouting", data={"from": was, "reason": reason}),
    )
    await db.flush()
    await scheduler.queue_ready(db, session=session, keys=keys, only=[task.id])
    log.warning(
        "queued task's agent kind is gone; routed again",
        extra={"task_id": str(task.id), "task_key": task.key, "from": was, "to": task.agent},
    )
    return 1


def _gone(kinds: dict[str, KindState], grace_s: float) -> list[str]:
    """Kinds with no live adapter for the grace period."""
    now = utcnow()
    return [
        k
        for k, s in kinds.items()
        if not s.live
        and (s.last_seen_at is None or now - s.last_seen_at > timedelta(seconds=grace_s))
    ]


async def _fail_over(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    keys: Keys,
    kinds: dict[str, KindState],
    grace_s: float,
) -> int:
    """Move tasks with fallbacks off kinds that cannot take them (see the module
    docstring); how many moved."""
    now = utcnow()
    gone = _gone(kinds, grace_s)
    paused = sorted(k for k, s in kinds.items() if s.paused)
    if not gone and not paused:
        return 0
    fallback = Task.spec["fallback"].astext != "[]"  # SQL NULL (none listed) is not
    stuck = or_(
        and_(
            fallback,
            Task.status == TaskStatus.QUEUED,
            Task.agent.in_(gone),
            Task.queued_at < now - timedelta(seconds=grace_s),
        ),
        and_(
            or_(fallback, Task.spec["agent"].astext == AUTO_AGENT),
            Task.agent.in_(paused),
            or_(
                Task.status == TaskStatus.QUEUED,
                and_(Task.status == TaskStatus.PENDING, Task.retry_at > now),
            ),
        ),
    )
    async with sessionmaker() as db:
        found = (
            await db.scalars(
                select(Task.id)
                .join(Session, Session.id == Task.session_id)
                .where(Session.status.in_([SessionStatus.ACTIVE, SessionStatus.SUSPENDED]), stuck)
                .limit(1000)
            )
        ).all()
    return await _one_by_one(
        sessionmaker, found, lambda db, task_id: _fail_over_one(db, task_id, kinds, gone, keys)
    )


async def _fail_over_one(
    db: AsyncSession, task_id: uuid.UUID, kinds: dict[str, KindState], gone: list[str], keys: Keys
) -> int:
    locked = await lock_task(db, task_id)
    if locked is None:
        return 0
    session, task = locked.session, locked.task
    by_system = session.status == SessionStatus.SUSPENDED and session.suspended_kinds
    if session.status != SessionStatus.ACTIVE and not by_system:
        return 0  # a person's pause: nothing moves under it
    state = kinds.get(task.agent)
    if task.status == TaskStatus.QUEUED and task.agent in gone:
        reason = failover.NO_LIVE_ADAPTER
    elif task.status in (TaskStatus.QUEUED, TaskStatus.PENDING) and state and state.paused:
        reason = failover.PAUSED
    else:
        return 0
    move = failover.decide(
        spec=task.spec or {},
        role=task.role,
        current=task.agent,
        reason=reason,
        kinds=kinds,
        now=utcnow(),
        max_wait_s=failover.max_wait_s(session),
        prices=routing.policy_of(db),
    )
    if move is None or move.to is None:
        return 0
    if task.status == TaskStatus.QUEUED:
        await task_state.stop_attempt(
            db,
            task,
            status=AttemptStatus.CANCELLED,
            reason=f"moved from {move.was} to {move.to}: {reason}",
            keys=keys,
        )
    failover.shift(db, task, move)
    await db.flush()
    await scheduler.queue_ready(db, session=session, keys=keys, only=[task.id], routed=[task.id])
    return 1
