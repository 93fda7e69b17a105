"""What each adapter event does to the database.

`apply_event` runs inside the caller's transaction. Task events take the session lock, then
the task's row lock, and are applied only when they belong to the task's current attempt
(the fencing token) and have not been applied before (the envelope id is stored as the
timeline entry's `source_id`). Anything else is answered with an outcome, not an error, so
the consumer acknowledges it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common.gates import GateResult, feedback
from swarm_common.messages import (
    TaskCancelled,
    TaskEvent,
    TaskFailed,
    TaskHeartbeat,
    TaskProgress,
    TaskStarted,
    TaskSucceeded,
    WorkerOffline,
    WorkerOnline,
    utcnow,
)
from swarm_common.states import AttemptStatus, TaskStatus
from swarm_common.streams import Envelope, Keys
from swarm_common.text import clean, has_nul
from swarm_orchestrator.db import timeline
from swarm_orchestrator.db.models import MERGE_SEQ, Attempt, Session, Task, Worker
from swarm_orchestrator.graph import scheduler

__all__ = ["Outcome", "RetryPolicy", "UnknownTask", "apply_event"]

log = logging.getLogger(__name__)

MAX_TAIL_CHARS = 16 * 1024
ACTIVE = (TaskStatus.QUEUED, TaskStatus.RUNNING)
FINAL_REASONS = frozenset({"dead_lettered", "workspace_escape", "invalid_task"})
"""Failure reasons never retried: the message itself is the problem, or the agent wrote
outside its worktree (it would again; a person looks first and retries by hand)."""


class Outcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    STALE = "stale"
    IGNORED = "ignored"


class UnknownTask(LookupError):
    """An event names a task (or a task/session pair) the database does not hold."""


@dataclass(frozen=True)
class RetryPolicy:
    backoff_base_s: float = 5.0
    backoff_cap_s: float = 300.0
    max_rate_limited: int = 10
    """Rate-limited attempts of one task before it fails."""
    rate_limit_cap_s: float = 3600.0
    """Longest wait for a reported rate-limit reset."""
    max_lost: int = 5
    """Lost attempts of one task (its worker died or was cut off) before it fails; they do
    not count against `max_attempts`."""


@dataclass
class _Ctx:
    db: AsyncSession
    envelope: Envelope
    session: Session
    task: Task
    attempt: Attempt
    keys: Keys
    policy: RetryPolicy

    def record(self, type: str, data: dict[str, Any]) -> None:
        timeline.record(
            self.db,
            session_id=self.session.id,
            task_id=self.task.id,
            attempt=self.task.attempt,
            type=type,
            source_id=self.envelope.id,
            actor=f"worker:{_worker(self.envelope)}",
            data=data,
        )


def _worker(envelope: Envelope) -> str:
    return str(getattr(envelope.message, "worker", ""))


async def apply_event(
    db: AsyncSession, envelope: Envelope, *, keys: Keys, policy: RetryPolicy = RetryPolicy()
) -> Outcome:
    dumped = envelope.message.model_dump()
    if has_nul(dumped):  # agents print anything; PostgreSQL stores no NUL
        envelope = replace(envelope, message=type(envelope.message).model_validate(clean(dumped)))
    message = envelope.message
    if isinstance(message, WorkerOnline):
        await _worker_online(db, message)
        return Outcome.APPLIED
    if isinstance(message, WorkerOffline):
        await db.execute(
            update(Worker)
            .where(Worker.name == message.worker)
            .values(status="offline", last_seen_at=message.at)
        )
        return Outcome.APPLIED
    if isinstance(message, TaskHeartbeat):
        return await _heartbeat(db, message)
    if isinstance(message, TaskEvent):
        return await _task_event(db, envelope, message, keys=keys, policy=policy)
    log.warning("event type has no handler", extra={"type": envelope.type})
    return Outcome.IGNORED


async def _worker_online(db: AsyncSession, message: WorkerOnline) -> None:
    values = {
        "agent": message.agent,
        "host": message.host,
        "pid": message.pid,
        "concurrency": message.concurrency,
        "status": "online",
        "started_at": message.at,
        "last_seen_at": message.at,
    }
    await db.execute(
        insert(Worker)
        .values(name=message.worker, **values)
        .on_conflict_do_update(index_elements=[Worker.name], set_=values)
    )


async def _heartbeat(db: AsyncSession, message: TaskHeartbeat) -> Outcome:
    result = await db.execute(
        update(Attempt)
        .where(
            Attempt.task_id == message.task_id,
            Attempt.number == message.attempt,
            Attempt.status.in_([AttemptStatus.QUEUED, AttemptStatus.RUNNING]),
        )
        .values(heartbeat_at=message.at)
    )
    await db.execute(
        update(Worker).where(Worker.name == message.worker).values(last_seen_at=func.now())
    )
    return Outcome.APPLIED if result.rowcount else Outcome.STALE  # type: ignore[attr-defined]


async def _task_event(
    db: AsyncSession, envelope: Envelope, message: TaskEvent, *, keys: Keys, policy: RetryPolicy
) -> Outcome:
    session_id = await db.scalar(select(Task.session_id).where(Task.id == message.task_id))
    if session_id is None or session_id != message.session_id:
        raise UnknownTask(f"no task {message.task_id} in session {message.session_id}")
    session = await scheduler.lock_session(db, session_id)
    task = await db.scalar(
        select(Task)
        .where(Task.id == message.task_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert session is not None and task is not None  # rows are never deleted under a lock
    if await timeline.seen(db, envelope.id):
        return Outcome.DUPLICATE
    if message.attempt != task.attempt:
        log.info(
            "stale event ignored",
            extra={
                "task_id": str(task.id),
                "type": envelope.type,
                "attempt": message.attempt,
                "current_attempt": task.attempt,
            },
        )
        return Outcome.STALE
    attempt = await db.scalar(
        select(Attempt)
        .where(Attempt.task_id == task.id, Attempt.number == task.attempt)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if attempt is None:
        raise UnknownTask(f"task {task.id} has no attempt {task.attempt}")
    handler = _HANDLERS.get(type(message))
    if handler is None:
        return Outcome.IGNORED
    ctx = _Ctx(
        db=db,
        envelope=envelope,
        session=session,
        task=task,
        attempt=attempt,
        keys=keys,
        policy=policy,
    )
    return await handler(ctx)


async def _on_started(ctx: _Ctx) -> Outcome:
    message = ctx.envelope.message
    assert isinstance(message, TaskStarted)
    if ctx.task.status != TaskStatus.QUEUED:
        return Outcome.IGNORED
    ctx.task.status = TaskStatus.RUNNING
    ctx.task.started_at = message.at
    ctx.task.updated_at = utcnow()
    ctx.attempt.status = AttemptStatus.RUNNING
    ctx.attempt.worker = message.worker
    ctx.attempt.started_at = message.at
    ctx.attempt.heartbeat_at = message.at
    ctx.record(
        "task.started",
        {
            "worker": message.worker,
            "branch": message.branch,
            "base_commit": message.base_commit,
            "at": message.at.isoformat(),
        },
    )
    return Outcome.APPLIED


async def _on_progress(ctx: _Ctx) -> Outcome:
    message = ctx.envelope.message
    assert isinstance(message, TaskProgress)
    if ctx.task.status not in ACTIVE:
        return Outcome.IGNORED
    ctx.attempt.heartbeat_at = message.at
    ctx.record(
        "task.progress",
        {
            "kind": message.kind,
            "text": message.text[:4000],
            **({"data": message.data} if message.data else {}),
        },
    )
    return Outcome.APPLIED


def _finish_attempt(ctx: _Ctx, status: AttemptStatus) -> dict[str, Any]:
    message = ctx.envelope.message
    assert isinstance(message, TaskSucceeded | TaskFailed | TaskCancelled)
    attempt = ctx.attempt
    attempt.status = status
    attempt.worker = attempt.worker or message.worker
    attempt.finished_at = message.at
    attempt.exit_code = message.exit_code
    attempt.commit = message.commit
    attempt.changed_files = list(message.changed_files)
    attempt.output_tail = message.output_tail[-MAX_TAIL_CHARS:]
    attempt.usage = dict(message.usage) or None
    attempt.cost_usd = Decimal(str(message.cost_usd)) if message.cost_usd is not None else None
    attempt.transcript_path = message.transcript_path
    attempt.gates = list(message.gates) or None
    data: dict[str, Any] = {
        "worker": message.worker,
        "exit_code": message.exit_code,
        "commit": message.commit,
        "changed_files": list(message.changed_files)[:200],
        "duration_s": message.duration_s,
        "at": message.at.isoformat(),
    }
    if message.usage:
        data["usage"] = dict(message.usage)
    if message.cost_usd is not None:
        data["cost_usd"] = message.cost_usd
    if message.gates:
        data["gates"] = [
            {k: g.get(k) for k in ("name", "status", "exit_code", "duration_s", "source")}
            for g in message.gates
        ]
    return data


async def _on_succeeded(ctx: _Ctx) -> Outcome:
    """The attempt's work joins the merge queue (in the order tasks finish), or waits for a
    person's approval first when the task asks for one; its dependents are queued once it is
    merged (see `merges`)."""
    if ctx.task.status not in ACTIVE:
        return Outcome.IGNORED
    data = _finish_attempt(ctx, AttemptStatus.SUCCEEDED)
    task = ctx.task
    task.reason = None
    task.feedback = None
    task.result = {k: data[k] for k in ("commit", "changed_files", "exit_code", "duration_s")}
    task.updated_at = utcnow()
    if task.spec.get("requires_approval"):  # merged once a person approves (see `control`)
        task.status = TaskStatus.AWAITING_APPROVAL
        ctx.record("task.awaiting_approval", data)
    else:
        task.status = TaskStatus.SUCCEEDED
        task.merge_status = "pending"
        task.merge_seq = await ctx.db.scalar(MERGE_SEQ.next_value())
        task.finished_at = task.updated_at
        ctx.record("task.succeeded", data)
    await ctx.db.flush()
    await scheduler.update_progress(ctx.db, session=ctx.session)
    return Outcome.APPLIED


async def _on_failed(ctx: _Ctx) -> Outcome:
    """A failed attempt is retried with backoff until the task's `max_attempts` failures (a
    failed quality gate only when the task says `retry_on_gate_failure`; the gates' output
    then goes into the next prompt; a dead-lettered message never). A rate-limited one is
    not the task's fault: it is
    retried when the provider's limit resets (or with backoff), up to
    `policy.max_rate_limited` times, and does not count as a failure."""
    message = ctx.envelope.message
    assert isinstance(message, TaskFailed)
    if ctx.task.status not in ACTIVE:
        return Outcome.IGNORED
    limited = message.reason == "rate_limited"
    data = _finish_attempt(ctx, AttemptStatus.RATE_LIMITED if limited else AttemptStatus.FAILED)
    ctx.attempt.reason = message.reason
    ctx.attempt.error = message.error[:MAX_TAIL_CHARS]
    gate_failure = message.reason == "gate_failed"
    if gate_failure:
        ctx.task.feedback = _gate_feedback(message.gates) or None
    await ctx.db.flush()
    counts = await _attempt_counts(ctx)
    task = ctx.task
    now = utcnow()
    task.updated_at = now
    task.reason = f"attempt {task.attempt} failed: {message.reason}"
    if limited:
        tries = counts.get(AttemptStatus.RATE_LIMITED, 0)
        will_retry = tries <= ctx.policy.max_rate_limited
        delay = _until_reset(message.retry_at, now, ctx.policy) or scheduler.retry_delay_s(
            tries, base_s=ctx.policy.backoff_base_s, cap_s=ctx.policy.backoff_cap_s
        )
    else:
        tries = counts.get(AttemptStatus.FAILED, 0)
        will_retry = (
            tries < task.max_attempts
            and message.reason not in FINAL_REASONS
            and (not gate_failure or bool(task.spec.get("retry_on_gate_failure")))
        )
        delay = scheduler.retry_delay_s(
            tries, base_s=ctx.policy.backoff_base_s, cap_s=ctx.policy.backoff_cap_s
        )
    if will_retry:
        task.status = TaskStatus.PENDING
        task.retry_at = now + timedelta(seconds=delay)
        data["retry_at"] = task.retry_at.isoformat()
    else:
        task.status = TaskStatus.FAILED
        task.finished_at = now
    ctx.record(
        "task.failed",
        {**data, "reason": message.reason, "error": message.error[:2000], "will_retry": will_retry},
    )
    await ctx.db.flush()
    if not will_retry:
        await scheduler.refresh_blocked(ctx.db, session_id=ctx.session.id)
    await scheduler.update_progress(ctx.db, session=ctx.session)
    return Outcome.APPLIED


def _gate_feedback(gates: list[dict[str, Any]]) -> str:
    results = []
    for gate in gates:
        try:
            results.append(GateResult.model_validate(gate))
        except ValueError:
            continue  # a newer adapter's shape: the timeline still has it
    return feedback(results)


async def _attempt_counts(ctx: _Ctx) -> dict[str, int]:
    rows = await ctx.db.execute(
        select(Attempt.status, func.count())
        .where(Attempt.task_id == ctx.task.id)
        .group_by(Attempt.status)
    )
    return {str(status): int(n) for status, n in rows.all()}


def _until_reset(reset_at: datetime | None, now: datetime, policy: RetryPolicy) -> float | None:
    """Seconds until a provider's reported reset (a little after it), within bounds."""
    if reset_at is None:
        return None
    if reset_at.tzinfo is None:
        reset_at = reset_at.replace(tzinfo=UTC)
    return min(max((reset_at - now).total_seconds() + 1.0, 1.0), policy.rate_limit_cap_s)


async def _on_cancelled(ctx: _Ctx) -> Outcome:
    """An adapter gave the attempt up on its own (shutdown, drain): run it again. A cancel a
    person asked for has already made the task `cancelled`, so it lands in `IGNORED`."""
    message = ctx.envelope.message
    assert isinstance(message, TaskCancelled)
    if ctx.task.status not in ACTIVE:
        return Outcome.IGNORED
    data = _finish_attempt(ctx, AttemptStatus.CANCELLED)
    ctx.attempt.reason = message.reason
    task = ctx.task
    task.status = TaskStatus.PENDING
    task.reason = f"attempt {task.attempt} cancelled by its worker: {message.reason}"
    task.updated_at = utcnow()
    ctx.record("attempt.cancelled", {**data, "reason": message.reason, "will_retry": True})
    await ctx.db.flush()
    await scheduler.queue_ready(ctx.db, session=ctx.session, keys=ctx.keys, only=[task.id])
    return Outcome.APPLIED


_HANDLERS: dict[type, Callable[[_Ctx], Awaitable[Outcome]]] = {
    TaskStarted: _on_started,
    TaskProgress: _on_progress,
    TaskSucceeded: _on_succeeded,
    TaskFailed: _on_failed,
    TaskCancelled: _on_cancelled,
}
