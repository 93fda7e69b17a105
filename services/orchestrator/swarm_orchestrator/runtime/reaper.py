"""The reaper: runs again the work of workers that vanished, and what Redis forgot.

On every pass (one replica at a time, under an advisory lock):

1. If Redis lost its data (the `epoch` key is gone: a restart without persistence,
   `FLUSHALL`), every queued or running attempt is declared lost and its task queued anew,
   so the messages and leases Redis lost are made again. Consumer groups are re-created by
   whoever next uses them.
2. The system mode is re-published to Redis from PostgreSQL (unless a newer one is there).
3. Every queued or running attempt whose lease expired (`swarm_common.leases`: claimed,
   not done, lease gone) is declared lost: its worker died or was cut off for a whole lease
   and has stopped its agent on its own. A cancel request goes out for the old attempt in
   case its worker still runs it, and the task gets a new attempt (a new fencing token), up
   to `RetryPolicy.max_lost` lost attempts; then it fails.

A running attempt with no claim at all is lost too (its claim vanished with Redis's data).
An attempt that is claimed and done is left alone: its result event is in the stream.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common import leases
from swarm_common.leases import LeaseState
from swarm_common.messages import utcnow
from swarm_common.states import AttemptStatus, TaskStatus
from swarm_common.streams import Keys
from swarm_common.system import publish_mode
from swarm_orchestrator.db import outbox, timeline
from swarm_orchestrator.db.advisory import try_xact_lock
from swarm_orchestrator.db.models import Attempt, Task
from swarm_orchestrator.graph import scheduler
from swarm_orchestrator.graph.reports import RetryPolicy
from swarm_orchestrator.runtime import system_mode

__all__ = ["Reaper", "declare_lost"]

log = logging.getLogger(__name__)

IN_FLIGHT = (TaskStatus.QUEUED, TaskStatus.RUNNING)


@dataclass
class Reaper:
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: Redis
    keys: Keys
    policy: RetryPolicy
    on_transport_lost: Callable[[], None] = lambda: None
    """Called after Redis lost its data (the relay forgets which groups it made)."""
    batch: int = 1000

    async def reap_once(self) -> int:
        """One pass; returns how many attempts were declared lost."""
        async with self.sessionmaker() as guard, guard.begin():
            if not await try_xact_lock(guard, f"reaper:{self.keys.prefix}"):
                return 0
            lost = 0
            if not await self.redis.exists(self.keys.epoch):
                lost += await self._recover_transport()
            state = await system_mode.get_state(guard)
            await publish_mode(self.redis, self.keys, state, unless_newer=True)
            lost += await self._reap_expired()
            return lost

    async def _in_flight(self) -> AsyncIterator[list[tuple[uuid.UUID, int, str]]]:
        """Queued and running tasks with their current attempt, in pages of `batch` (by
        task id, so that tasks queued again meanwhile are not seen twice)."""
        after: uuid.UUID | None = None
        while True:
            async with self.sessionmaker() as db:
                stmt = (
                    select(Task.id, Task.attempt, Task.status)
                    .where(Task.status.in_(IN_FLIGHT))
                    .order_by(Task.id)
                    .limit(self.batch)
                )
                if after is not None:
                    stmt = stmt.where(Task.id > after)
                page = [(r.id, r.attempt, r.status) for r in await db.execute(stmt)]
            if not page:
                return
            yield page
            if len(page) < self.batch:
                return
            after = page[-1][0]

    async def _reap_expired(self) -> int:
        lost = 0
        async for flights in self._in_flight():
            found = await leases.inspect(self.redis, self.keys, [(t, a) for t, a, _ in flights])
            for (task_id, number, status), lease in zip(flights, found, strict=True):
                if lease.state == LeaseState.EXPIRED:
                    reason = f"lease expired: worker {lease.worker} went silent"
                elif lease.state == LeaseState.UNCLAIMED and status == TaskStatus.RUNNING:
                    reason = "its claim vanished from Redis"
                else:
                    continue
                lost += await self._lose(task_id, number, reason, lease.worker)
        return lost

    async def _lose(self, task_id: uuid.UUID, number: int, reason: str, worker: str | None) -> int:
        async with self.sessionmaker() as db, db.begin():
            done = await declare_lost(
                db,
                task_id=task_id,
                attempt=number,
                reason=reason,
                keys=self.keys,
                policy=self.policy,
                worker=worker,
            )
        return int(done)

    async def _recover_transport(self) -> int:
        """Redis lost its data: run again everything that was in flight (each attempt once:
        `declare_lost` ignores an attempt that is no longer current), then mark Redis as
        known again."""
        log.warning("Redis lost its data; queueing again what was in flight")
        snapshot = [flight async for page in self._in_flight() for flight in page]
        lost = 0
        for task_id, number, _ in snapshot:
            lost += await self._lose(
                task_id, number, "Redis lost its data (restart without persistence or flush)", None
            )
        self.on_transport_lost()
        await self.redis.set(self.keys.epoch, utcnow().isoformat(), nx=True)
        if lost:
            log.warning("in-flight attempts queued again", extra={"count": lost})
        return lost


async def declare_lost(
    db: AsyncSession,
    *,
    task_id: uuid.UUID,
    attempt: int,
    reason: str,
    keys: Keys,
    policy: RetryPolicy,
    worker: str | None = None,
) -> bool:
    """Mark `attempt` of a task lost and give the task a new attempt (or fail it after
    `policy.max_lost` lost attempts), in the caller's transaction. False when the attempt is
    no longer the task's current, active one (its result arrived meanwhile, say)."""
    session_id = await db.scalar(select(Task.session_id).where(Task.id == task_id))
    if session_id is None:
        return False
    session = await scheduler.lock_session(db, session_id)
    task = await db.scalar(
        select(Task)
        .where(Task.id == task_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if session is None or task is None or task.attempt != attempt or task.status not in IN_FLIGHT:
        return False
    row = await db.scalar(
        select(Attempt)
        .where(Attempt.task_id == task_id, Attempt.number == attempt)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    now = utcnow()
    if row is not None:
        row.status = AttemptStatus.LOST
        row.reason = reason
        row.finished_at = now
        row.worker = row.worker or worker
    # If its worker still runs it after all, it stops: a stale attempt's events are ignored.
    outbox.add_cancel(db, keys=keys, task_id=task_id, attempt=attempt, reason="lost")
    await db.flush()
    lost = int(
        await db.scalar(
            select(func.count()).where(
                Attempt.task_id == task_id, Attempt.status == AttemptStatus.LOST
            )
        )
        or 0
    )
    will_retry = lost <= policy.max_lost
    task.updated_at = now
    task.reason = f"attempt {attempt} lost: {reason}"
    timeline.record(
        db,
        session_id=session.id,
        task_id=task.id,
        attempt=attempt,
        type="attempt.lost",
        data={"reason": reason, "worker": worker, "lost": lost, "will_retry": will_retry},
    )
    log.warning(
        "attempt lost",
        extra={
            "task_id": str(task_id),
            "task_key": task.key,
            "attempt": attempt,
            "reason": reason,
            "will_retry": will_retry,
        },
    )
    if will_retry:
        task.status = TaskStatus.PENDING
        task.retry_at = None
        await db.flush()
        await scheduler.queue_ready(db, session=session, keys=keys, only=[task.id])
    else:
        task.status = TaskStatus.FAILED
        task.finished_at = now
        task.reason = f"lost {lost} times; last: {reason}"
        await db.flush()
        await scheduler.refresh_blocked(db, session_id=session.id)
    await scheduler.update_progress(db, session=session)
    return True
