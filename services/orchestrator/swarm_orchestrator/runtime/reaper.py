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
   case its worker still runs it, and the task gets a new attempt (a new fencing token) as
   long as `retry.decide` says so (up to `RetryPolicy.max_lost` lost attempts); then it
   fails. An attempt whose worker was never heard from after it started (no heartbeat, no
   progress) failed to start instead (`retry.lost_as`): it fails with `startup_failed` and
   counts against the task's `max_attempts`, so a crash loop (an agent whose start kills
   its adapter) ends like any failure.

A running attempt with no claim at all is lost too (its claim vanished with Redis's data).
An attempt that is claimed and done is left alone: its result event is in the stream. So
is a `noop` task's: it takes no claim or lease (`swarm_adapter.noop`), its start and result
go out together, and an adapter that dies before acknowledging its message leaves it
pending in the stream for a peer to take over; only step 1 runs it again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy import exists, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common import leases
from swarm_common.leases import LeaseState
from swarm_common.messages import utcnow
from swarm_common.specs import NOOP_AGENT
from swarm_common.states import AttemptStatus, TaskStatus
from swarm_common.streams import Keys
from swarm_common.system import publish_mode
from swarm_orchestrator.db.advisory import try_xact_lock
from swarm_orchestrator.db.models import Attempt, Outbox, Session, Task
from swarm_orchestrator.graph import retry, scheduler, session_state, task_state
from swarm_orchestrator.graph.locking import lock_attempt, lock_task
from swarm_orchestrator.graph.retry import STARTUP_FAILED, Cause, RetryPolicy
from swarm_orchestrator.observability import metrics
from swarm_orchestrator.runtime import system_mode

__all__ = ["Reaper", "declare_lost"]

log = logging.getLogger(__name__)


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

    async def _in_flight(
        self, *, sent_only: bool = False
    ) -> AsyncIterator[list[tuple[uuid.UUID, int, str]]]:
        """Queued and running tasks with their current attempt, in pages of `batch` (by task
        id, so that tasks queued again meanwhile are not seen twice). `sent_only`: only those
        that may hold a lease: not the queued ones whose message is still held in the outbox,
        which went to no adapter (ten thousand queued tasks of a big graph cost index probes
        in PostgreSQL, not ten thousand rows here and as many lease reads a pass), nor `noop`
        tasks, which take none."""
        held = exists().where(
            Outbox.task_id == Task.id,
            Outbox.attempt == Task.attempt,
            Outbox.sent_at.is_(None),
            Outbox.task_id.is_not(None),
        )
        after: uuid.UUID | None = None
        while True:
            async with self.sessionmaker() as db:
                stmt = (
                    select(Task.id, Task.attempt, Task.status)
                    .where(
                        Task.status.in_(task_state.IN_FLIGHT),
                        or_(Task.status == TaskStatus.RUNNING, ~held) if sent_only else true(),
                        Task.agent != NOOP_AGENT if sent_only else true(),
                    )
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
        async for flights in self._in_flight(sent_only=True):
            found = await leases.inspect(self.redis, self.keys, [(t, a) for t, a, _ in flights])
            for (task_id, number, status), lease in zip(flights, found, strict=True):
                expired = lease.state == LeaseState.EXPIRED
                if expired:
                    reason = f"lease expired: worker {lease.worker} went silent"
                elif lease.state == LeaseState.UNCLAIMED and status == TaskStatus.RUNNING:
                    reason = "its claim vanished from Redis"
                else:
                    continue
                lost += await self._lose(
                    task_id, number, reason, lease.worker, lease_expired=expired
                )
        return lost

    async def _lose(
        self,
        task_id: uuid.UUID,
        number: int,
        reason: str,
        worker: str | None,
        *,
        lease_expired: bool = False,
    ) -> int:
        async with self.sessionmaker() as db, db.begin():
            done = await declare_lost(
                db,
                task_id=task_id,
                attempt=number,
                reason=reason,
                keys=self.keys,
                policy=self.policy,
                worker=worker,
                lease_expired=lease_expired,
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
    lease_expired: bool = False,
) -> bool:
    """Mark `attempt` of a task lost and give the task a new attempt (or fail it after
    `policy.max_lost` lost attempts), in the caller's transaction. With `lease_expired`
    (its worker's lease lapsed), an attempt never heard from after it started failed to
    start instead (`retry.lost_as`, see `_failed_start`). False when the attempt is no
    longer the task's current, active one (its result arrived meanwhile, say)."""
    locked = await lock_task(db, task_id)
    if locked is None:
        return False
    session, task = locked.session, locked.task
    if task.attempt != attempt or task.status not in task_state.IN_FLIGHT:
        return False
    current = await lock_attempt(db, task)
    if current is not None and lease_expired:
        cause = retry.lost_as(
            lease_expired=True, started_at=current.started_at, heartbeat_at=current.heartbeat_at
        )
        if cause == Cause.FAILED:
            await _failed_start(
                db, session, task, current, reason=reason, keys=keys, policy=policy, worker=worker
            )
            return True
    # If its worker still runs it after all, it stops: a stale attempt's events are ignored.
    await task_state.stop_attempt(
        db,
        task,
        status=AttemptStatus.LOST,
        reason=reason,
        cancel_reason="lost",
        keys=keys,
        worker=worker,
    )
    metrics.attempt_lost(db, agent=current.agent if current is not None else task.agent)
    await db.flush()
    counts = await task_state.attempt_counts(db, task)
    decision = retry.decide(Cause.LOST, counts=counts, policy=policy)
    log.warning(
        "attempt lost",
        extra={
            "session_id": str(session.id),
            "task_id": str(task_id),
            "task_key": task.key,
            "attempt": attempt,
            "reason": reason,
            "will_retry": decision.again,
        },
    )
    data = {"reason": reason, "worker": worker, "lost": counts.lost, "will_retry": decision.again}
    entry = task_state.Entry("attempt.lost", data=data)
    if decision.again:
        why = f"attempt {attempt} lost: {reason}"
        task_state.reschedule(
            db, task, reason=why, retry_at=decision.retry_at(utcnow()), entry=entry
        )
        await db.flush()
        await scheduler.queue_ready(db, session=session, keys=keys, only=[task.id])
    else:
        task_state.fail(db, task, reason=f"lost {counts.lost} times; last: {reason}", entry=entry)
        await task_state.block_downstream(db, session_id=session.id)
    await session_state.finish_or_reopen(db, session)
    return True


async def _failed_start(
    db: AsyncSession,
    session: Session,
    task: Task,
    attempt: Attempt,
    *,
    reason: str,
    keys: Keys,
    policy: RetryPolicy,
    worker: str | None,
) -> None:
    """The worker of `attempt` went silent before its first heartbeat: the attempt failed
    (`startup_failed`, counted against `max_attempts`), and the task runs again after a
    back-off or fails, as `retry.decide` says for any failure."""
    error = (
        f"{reason} before its first heartbeat: the worker died as it started the attempt "
        "(its agent's start may have killed it)"
    )
    await task_state.stop_attempt(
        db,
        task,
        status=AttemptStatus.FAILED,
        reason=STARTUP_FAILED,
        cancel_reason="lost",
        keys=keys,
        worker=worker,
    )
    attempt.error = error
    await db.flush()
    now = utcnow()
    decision = retry.decide(
        Cause.FAILED,
        reason=STARTUP_FAILED,
        counts=await task_state.attempt_counts(db, task),
        limits=task_state.limits(task),
        policy=policy,
        now=now,
    )
    log.warning(
        "attempt failed to start",
        extra={
            "session_id": str(session.id),
            "task_id": str(task.id),
            "task_key": task.key,
            "attempt": task.attempt,
            "worker": worker,
            "reason": reason,
            "will_retry": decision.again,
        },
    )
    again_at = decision.retry_at(now)
    data = {
        "reason": STARTUP_FAILED,
        "error": error,
        "worker": worker,
        "will_retry": decision.again,
        **({"retry_at": again_at.isoformat()} if again_at else {}),
    }
    failure = f"attempt {task.attempt} failed: {STARTUP_FAILED}"
    entry = task_state.Entry("task.failed", data=data)
    if decision.again:
        task_state.reschedule(db, task, reason=failure, retry_at=again_at, entry=entry)
        if again_at is None:  # at once: no retry time for the sweep to wait for
            await db.flush()
            await scheduler.queue_ready(db, session=session, keys=keys, only=[task.id])
    else:
        task_state.fail(db, task, reason=failure, entry=entry)
        await task_state.block_downstream(db, session_id=session.id)
    await session_state.finish_or_reopen(db, session)
