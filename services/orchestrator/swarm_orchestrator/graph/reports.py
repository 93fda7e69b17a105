"""What each adapter report does to the database: workers coming and going, heartbeats,
and the start, progress and end of attempts.

`apply_event` runs inside the caller's transaction. Task reports lock session, task and
attempt (`graph.locking`) and are applied only when they belong to the task's current
attempt (the fencing token), have not been applied before (the envelope id is stored as
the timeline entry's `source_id`), and are proven to come from the adapter that holds the
attempt (`graph.provenance`: the proof made with the attempt's key, and the worker that
claimed it); heartbeats are checked the same way. Anything else is answered with an
outcome, not an error, so the consumer acknowledges it. What a report changes goes through
`task_state`; work that changed nothing is recorded merged at once, with no turn of the
merge queue (`merges.settle_unchanged`); whether a task runs again is `retry.decide`'s
answer; what an ended attempt cost, `pricing`'s (kept too from the late result of an
attempt stopped from here); what that spend does to a budget, `budgets.check`'s.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common.gates import GateResult, feedback
from swarm_common.messages import (
    Began,
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
from swarm_common.specs import NOOP_AGENT
from swarm_common.states import AttemptStatus, TaskStatus
from swarm_common.streams import Envelope, Keys
from swarm_common.text import clean
from swarm_common.verdicts import parse_verdict
from swarm_orchestrator.db import timeline
from swarm_orchestrator.db.models import Attempt, Session, Task, TaskDependency, Worker
from swarm_orchestrator.graph import (
    blackboard,
    budgets,
    failover,
    pricing,
    provenance,
    races,
    retry,
    reviews,
    scheduler,
    session_state,
    task_state,
)
from swarm_orchestrator.graph.locking import forget_locks, lock_attempt, lock_reports, lock_task
from swarm_orchestrator.graph.retry import Cause, RetryPolicy
from swarm_orchestrator.integration import merges
from swarm_orchestrator.observability import metrics
from swarm_orchestrator.planning import plans
from swarm_orchestrator.planning.plans import PlanLimits

__all__ = ["Outcome", "UnknownTask", "apply_event", "apply_events"]

log = logging.getLogger(__name__)

MAX_TAIL_CHARS = 16 * 1024
BEGAN_SUFFIX = ":began"
"""The timeline source of the start a result carries (`Began`): the result's envelope id and
this, so both entries are known as that report's."""
ACTIVE = task_state.IN_FLIGHT


class Outcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    STALE = "stale"
    IGNORED = "ignored"
    REJECTED = "rejected"
    """No valid proof of origin, or not the worker that claimed the attempt."""


class UnknownTask(LookupError):
    """An event names a task (or a task/session pair) the database does not hold."""


@dataclass
class _Ctx:
    db: AsyncSession
    envelope: Envelope
    session: Session
    task: Task
    attempt: Attempt
    keys: Keys
    policy: RetryPolicy
    plan_limits: PlanLimits

    @property
    def actor(self) -> str:
        return f"worker:{_worker(self.envelope)}"

    def record(self, type: str, data: dict[str, Any]) -> None:
        timeline.record(
            self.db,
            session_id=self.session.id,
            task_id=self.task.id,
            attempt=self.task.attempt,
            type=type,
            source_id=self.envelope.id,
            actor=self.actor,
            data=data,
        )


def _worker(envelope: Envelope) -> str:
    return str(getattr(envelope.message, "worker", ""))


async def apply_events(
    db: AsyncSession,
    envelopes: Sequence[Envelope],
    *,
    keys: Keys,
    policy: RetryPolicy | None = None,
    plan_limits: PlanLimits | None = None,
) -> list[Outcome]:
    """Apply reports in order, in the caller's transaction, and return what each did.

    Many at once cost little more than one: their rows are locked and their envelope ids
    looked up in a few statements up front (`locking.lock_reports`, `timeline.look_up`),
    their timeline entries written together (`timeline.batched`);
    what the common results change for a whole session is done once at the end, for every
    session they touched: the dependents of the `noop` tasks reached are queued, the session
    finished or reopened (`session_state.finish_or_reopen`), its budget checked
    (`budgets.check`). The caller's database session must end with the transaction."""
    if len(envelopes) > 1:
        reports = [e.message for e in envelopes if isinstance(e.message, TaskEvent)]
        await lock_reports(db, [m.task_id for m in reports])
        await timeline.look_up(db, [e.id for e in envelopes])
    later = _Later()
    db.info[_LATER] = later
    try:
        async with timeline.batched(db):  # their entries in one insert
            outcomes = [
                await apply_event(db, e, keys=keys, policy=policy, plan_limits=plan_limits)
                for e in envelopes
            ]
            del db.info[_LATER]
            await later.run(db, keys=keys)
    finally:
        db.info.pop(_LATER, None)
        forget_locks(db)
        timeline.forget(db)
    return outcomes


@dataclass
class _Later:
    """What `apply_events` does once per session at the end, not once per report."""

    sessions: dict[uuid.UUID, Session] = field(default_factory=dict)
    """Sessions to finish or reopen."""
    spent: dict[uuid.UUID, Session] = field(default_factory=dict)
    """Sessions whose budget to check (an attempt ended and was priced)."""
    reached: dict[uuid.UUID, list[uuid.UUID]] = field(default_factory=dict)
    """Tasks that succeeded with nothing to merge (`noop` tasks reached, work that changed
    nothing: `merges.settle_unchanged`), by session: their dependents are queued."""

    async def run(self, db: AsyncSession, *, keys: Keys) -> None:
        for session_id, reached in self.reached.items():
            children = (
                await db.scalars(
                    select(TaskDependency.task_id)
                    .where(TaskDependency.depends_on_id.in_(reached))
                    .distinct()
                )
            ).all()
            if children:
                session = self.sessions[session_id]
                await scheduler.queue_ready(db, session=session, keys=keys, only=children)
        for session in self.sessions.values():
            await session_state.finish_or_reopen(db, session)
        if self.spent:
            await db.flush()
        for session in self.spent.values():
            await budgets.check(db, session, keys=keys)  # what it cost may spend a budget


_LATER = "reports.later"


def _later(db: AsyncSession) -> _Later | None:
    later: _Later | None = db.info.get(_LATER)
    return later


async def _finish(ctx: _Ctx) -> None:
    """The session may have finished (or reopened): now, or once at the end of the batch."""
    later = _later(ctx.db)
    if later is not None:
        later.sessions[ctx.session.id] = ctx.session
        return
    await ctx.db.flush()
    await session_state.finish_or_reopen(ctx.db, ctx.session)


_NUL = "\\u0000"
"""A NUL character as JSON writes it (a report's JSON is quicker to scan than its fields)."""


async def apply_event(
    db: AsyncSession,
    envelope: Envelope,
    *,
    keys: Keys,
    policy: RetryPolicy | None = None,
    plan_limits: PlanLimits | None = None,
) -> Outcome:
    """Apply one report in the caller's transaction (in a batch, see `apply_events`)."""
    if _NUL in envelope.message.model_dump_json():  # agents print anything; PostgreSQL
        dumped = clean(envelope.message.model_dump())  # stores no NUL
        envelope = replace(envelope, message=type(envelope.message).model_validate(dumped))
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
        return await _heartbeat(db, envelope, message)
    if isinstance(message, TaskEvent):
        return await _task_event(
            db,
            envelope,
            message,
            keys=keys,
            policy=policy or RetryPolicy(),
            plan_limits=plan_limits or PlanLimits(),
        )
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
        "busy": 0,
        "models": list(message.models),
        "cli_version": message.cli_version,
        "capabilities": list(message.capabilities),
    }
    await db.execute(
        insert(Worker)
        .values(name=message.worker, **values)
        .on_conflict_do_update(index_elements=[Worker.name], set_=values)
    )


async def _heartbeat(db: AsyncSession, envelope: Envelope, message: TaskHeartbeat) -> Outcome:
    open_ = Attempt.status.in_([AttemptStatus.QUEUED, AttemptStatus.RUNNING])
    attempt = await db.scalar(
        select(Attempt).where(
            Attempt.task_id == message.task_id, Attempt.number == message.attempt, open_
        )
    )
    if attempt is None:
        return Outcome.STALE
    rejected = provenance.check(envelope, attempt)
    if rejected is not None:
        await provenance.reject(db, envelope, attempt=attempt, reason=rejected)
        return Outcome.REJECTED
    result = await db.execute(
        update(Attempt).where(Attempt.id == attempt.id, open_).values(heartbeat_at=message.at)
    )
    await db.execute(
        update(Worker).where(Worker.name == message.worker).values(last_seen_at=func.now())
    )
    return Outcome.APPLIED if result.rowcount else Outcome.STALE  # type: ignore[attr-defined]


async def _task_event(
    db: AsyncSession,
    envelope: Envelope,
    message: TaskEvent,
    *,
    keys: Keys,
    policy: RetryPolicy,
    plan_limits: PlanLimits,
) -> Outcome:
    locked = await lock_task(db, message.task_id)
    if locked is None or locked.session.id != message.session_id:
        raise UnknownTask(f"no task {message.task_id} in session {message.session_id}")
    task = locked.task
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
    attempt = await lock_attempt(db, task)
    if attempt is None:
        raise UnknownTask(f"task {task.id} has no attempt {task.attempt}")
    rejected = provenance.check(envelope, attempt)
    if rejected is not None:
        await provenance.reject(db, envelope, attempt=attempt, reason=rejected)
        return Outcome.REJECTED
    handler = _HANDLERS.get(type(message))
    if handler is None:
        return Outcome.IGNORED
    ctx = _Ctx(
        db=db,
        envelope=envelope,
        session=locked.session,
        task=task,
        attempt=attempt,
        keys=keys,
        policy=policy,
        plan_limits=plan_limits,
    )
    if isinstance(message, _RESULTS) and message.began and task.status == TaskStatus.QUEUED:
        _start(ctx, message.began, source=f"{envelope.id}{BEGAN_SUFFIX}")  # it came along
    late = _late_spend(ctx)
    outcome = await handler(ctx)
    if late or (outcome == Outcome.APPLIED and isinstance(message, _RESULTS)):
        later = _later(db)
        if later is not None:
            later.spent[ctx.session.id] = ctx.session
        else:
            await db.flush()
            await budgets.check(db, ctx.session, keys=keys)  # what it cost may spend a budget
    return outcome


_RESULTS = (TaskSucceeded, TaskFailed, TaskCancelled)


def _late_spend(ctx: _Ctx) -> bool:
    """The result of an attempt ended from here (stopped for a budget, cancelled, lost)
    still says what it spent: kept, once (its late result changes nothing else). True when
    it was kept now."""
    message = ctx.envelope.message
    attempt = ctx.attempt
    if (
        not isinstance(message, _RESULTS)
        or attempt.status in (AttemptStatus.QUEUED, AttemptStatus.RUNNING)
        or attempt.cost_usd is not None
    ):
        return False
    attempt.usage = attempt.usage or dict(message.usage) or None
    pricing.price_attempt(
        ctx.db,
        attempt,
        usage=attempt.usage,
        model=message.model,
        reported_usd=message.cost_usd,
        fallback_model=ctx.task.spec.get("model"),
    )
    return True


async def _on_started(ctx: _Ctx) -> Outcome:
    message = ctx.envelope.message
    assert isinstance(message, TaskStarted)
    if ctx.task.status != TaskStatus.QUEUED:
        return Outcome.IGNORED
    _start(ctx, message, source=ctx.envelope.id)
    return Outcome.APPLIED


def _start(ctx: _Ctx, began: TaskStarted | Began, *, source: str) -> None:
    """queued → running, as a `task.started` report (or the start a result carries) says."""
    worker = _worker(ctx.envelope)
    task_state.start(
        ctx.db,
        ctx.task,
        ctx.attempt,
        worker=worker,
        at=began.at,
        source=source,
        data={
            "worker": worker,
            "branch": began.branch,
            "base_commit": began.base_commit,
            "at": began.at.isoformat(),
        },
    )
    if began.deliveries > 1:  # its adapter took the message over from one that vanished
        metrics.reclaimed(ctx.db, stream="tasks")


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


def _finish_attempt(ctx: _Ctx, status: AttemptStatus, reason: str | None = None) -> dict[str, Any]:
    """End the attempt with what its adapter reported; return the timeline entry's data."""
    message = ctx.envelope.message
    assert isinstance(message, TaskSucceeded | TaskFailed | TaskCancelled)
    attempt = ctx.attempt
    task_state.end_attempt(attempt, status, at=message.at, worker=message.worker, reason=reason)
    attempt.exit_code = message.exit_code
    attempt.commit = message.commit
    attempt.changed_files = list(message.changed_files)
    attempt.output_tail = message.output_tail[-MAX_TAIL_CHARS:]
    attempt.usage = dict(message.usage) or None
    spend = pricing.price_attempt(
        ctx.db,
        attempt,
        usage=message.usage,
        model=message.model,
        reported_usd=message.cost_usd,
        fallback_model=ctx.task.spec.get("model"),
    )
    attempt.transcript_path = message.transcript_path
    attempt.gates = list(message.gates) or None
    attempt.sandbox = message.sandbox
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
    if message.sandbox and message.sandbox.get("refused"):
        data["sandbox"] = message.sandbox
    data.update(spend)  # our priced cost (and the CLI's claim, when it made one)
    if message.gates:
        data["gates"] = [
            {k: g.get(k) for k in ("name", "status", "exit_code", "duration_s", "source")}
            for g in message.gates
        ]
    return data


async def _on_succeeded(ctx: _Ctx) -> Outcome:
    """The attempt's work joins the merge queue (in the order tasks finish), or waits for a
    person's approval first when the task asks for one; its dependents are queued once it is
    merged (see `integration.merges`)."""
    if ctx.task.status not in ACTIVE:
        return Outcome.IGNORED
    if ctx.task.kind == "plan":
        return await _on_answered(ctx)
    if ctx.task.kind == "review" or ctx.task.spec.get("verify"):
        return await _on_verdict(ctx)
    if ctx.task.agent == NOOP_AGENT:
        return await _on_reached(ctx)
    data = _finish_attempt(ctx, AttemptStatus.SUCCEEDED)
    task = ctx.task
    task.reason = None
    task.feedback = None
    task.result = {k: data[k] for k in ("commit", "changed_files", "exit_code", "duration_s")}
    await blackboard.take_handoff(  # kept; its facts to the blackboard; its proposals weighed
        ctx.db, session=ctx.session, task=task, report=ctx.envelope.message, actor=ctx.actor
    )
    source = ctx.envelope.id
    review = reviews.wanted(task, ctx.session)
    if review is not None:  # a reviewer's verdict decides (see `graph.reviews`)
        await reviews.request(
            ctx.db,
            session=ctx.session,
            task=task,
            spec=review,
            keys=ctx.keys,
            actor=ctx.actor,
            source=source,
            data=data,
        )
    elif task.kind == "race":  # a contender: the first to pass wins its race
        await races.passed(
            ctx.db,
            session=ctx.session,
            contender=task,
            keys=ctx.keys,
            actor=ctx.actor,
            source=source,
            data=data,
        )
    elif task.spec.get("requires_approval"):  # merged once a person approves (see `control`)
        task_state.await_approval(ctx.db, task, actor=ctx.actor, source=source, data=data)
    else:
        await task_state.succeed(ctx.db, task, actor=ctx.actor, source=source, data=data)
        if await merges.settle_unchanged(ctx.db, session=ctx.session, task=task):
            await _dependents_next(ctx)  # nothing to merge: no turn in the merge queue
            return Outcome.APPLIED
    await _finish(ctx)
    return Outcome.APPLIED


async def _on_reached(ctx: _Ctx) -> Outcome:
    """A `noop` task (a join, a milestone) was reached: it succeeded with nothing to merge,
    and its dependents are queued at once."""
    data = _finish_attempt(ctx, AttemptStatus.SUCCEEDED)
    task = ctx.task
    task.reason = None
    task.feedback = None
    task.result = {k: data[k] for k in ("commit", "changed_files", "exit_code", "duration_s")}
    task_state.answered(ctx.db, task, actor=ctx.actor, source=ctx.envelope.id, data=data)
    await _dependents_next(ctx)
    return Outcome.APPLIED


async def _dependents_next(ctx: _Ctx) -> None:
    """The task succeeded and has nothing to merge: its dependents are queued and the
    session finished or reopened, now or once at the end of the batch."""
    later = _later(ctx.db)
    if later is None:  # alone: its dependents now
        later = _Later()
        later.reached[ctx.session.id] = [ctx.task.id]
        later.sessions[ctx.session.id] = ctx.session
        await ctx.db.flush()
        await later.run(ctx.db, keys=ctx.keys)
        return
    later.reached.setdefault(ctx.session.id, []).append(ctx.task.id)
    later.sessions[ctx.session.id] = ctx.session


async def _on_answered(ctx: _Ctx) -> Outcome:
    """A planning run answered: a valid plan becomes the draft's next revision; an invalid
    one fails the attempt with the validation errors as the next attempt's feedback (the
    repair round), as `retry.decide` allows."""
    message = ctx.envelope.message
    assert isinstance(message, TaskSucceeded)
    errors = await plans.take_answer(
        ctx.db,
        ctx.session,
        ctx.task,
        message.answer,
        keys=ctx.keys,
        limits=ctx.plan_limits,
        actor=ctx.actor,
    )
    if errors:
        ctx.task.feedback = _plan_feedback(errors)
        return await _fail(ctx, reason="invalid_plan", error="; ".join(errors)[:MAX_TAIL_CHARS])
    data = _finish_attempt(ctx, AttemptStatus.SUCCEEDED)
    ctx.task.reason = None
    ctx.task.feedback = None
    ctx.task.result = {"answer_chars": len(message.answer or "")}
    task_state.answered(ctx.db, ctx.task, actor=ctx.actor, source=ctx.envelope.id, data=data)
    await ctx.db.flush()
    await session_state.finish_or_reopen(ctx.db, ctx.session)
    return Outcome.APPLIED


async def _on_verdict(ctx: _Ctx) -> Outcome:
    """A review run or a verifier answered: a valid verdict is kept and does what it says
    (`graph.reviews`); an invalid one fails the attempt with the errors as the next
    attempt's feedback (the repair round), as `retry.decide` allows."""
    message = ctx.envelope.message
    assert isinstance(message, TaskSucceeded)
    verdict, errors = parse_verdict(message.answer)
    if verdict is None:
        ctx.task.feedback = reviews.repair_feedback(errors)
        return await _fail(ctx, reason="invalid_verdict", error="; ".join(errors)[:MAX_TAIL_CHARS])
    task = ctx.task
    passed = verdict.passed or task.kind == "review"  # a review run answered either way
    data = _finish_attempt(
        ctx,
        AttemptStatus.SUCCEEDED if passed else AttemptStatus.FAILED,
        reason=None if passed else "verdict_fail",
    )
    task.reason = None
    task.feedback = None
    task.result = {"verdict": verdict.verdict, "critical_issues": len(verdict.critical_issues)}
    data = {**data, **task.result}
    if task.kind == "review":
        task_state.answered(ctx.db, task, actor=ctx.actor, source=ctx.envelope.id, data=data)
        await reviews.apply_verdict(
            ctx.db, session=ctx.session, run=task, verdict=verdict, keys=ctx.keys, actor=ctx.actor
        )
    else:
        await reviews.verified(
            ctx.db,
            session=ctx.session,
            task=task,
            verdict=verdict,
            keys=ctx.keys,
            actor=ctx.actor,
            source=ctx.envelope.id,
            data=data,
        )
    await ctx.db.flush()
    await session_state.finish_or_reopen(ctx.db, ctx.session)
    return Outcome.APPLIED


def _plan_feedback(errors: list[str]) -> str:
    lines = "\n".join(f"- {e}" for e in errors)
    return (
        "Your previous answer was not a valid plan. Fix these errors and answer the whole "
        f"plan again as one JSON object that follows the schema:\n{lines}"
    )


async def _on_failed(ctx: _Ctx) -> Outcome:
    """A failed or rate-limited attempt: the task runs again or fails, as `retry.decide`
    says. A failed quality gate's output goes into the next attempt's prompt."""
    message = ctx.envelope.message
    assert isinstance(message, TaskFailed)
    if ctx.task.status not in ACTIVE:
        return Outcome.IGNORED
    if message.reason == "gate_failed":
        ctx.task.feedback = _gate_feedback(message.gates) or None
    return await _fail(ctx, reason=message.reason, error=message.error, retry_at=message.retry_at)


async def _fail(ctx: _Ctx, *, reason: str, error: str, retry_at: datetime | None = None) -> Outcome:
    limited = reason == "rate_limited"
    status = AttemptStatus.RATE_LIMITED if limited else AttemptStatus.FAILED
    data = _finish_attempt(ctx, status, reason=reason)
    ctx.attempt.error = error[:MAX_TAIL_CHARS]
    task = ctx.task
    await ctx.db.flush()
    now = utcnow()
    decision = retry.decide(
        Cause.RATE_LIMITED if limited else Cause.FAILED,
        reason=reason,
        counts=await task_state.attempt_counts(ctx.db, task),
        limits=task_state.limits(task),
        policy=ctx.policy,
        now=now,
        reset_at=retry_at,
    )
    move = None  # to another agent kind, when its provider refused (see `graph.failover`)
    if limited:
        move = await failover.after_limit(
            ctx.db,
            session=ctx.session,
            task=task,
            reset_at=retry_at,
            policy=ctx.policy,
            now=now,
            again=decision.again,
        )
    failure = f"attempt {task.attempt} failed: {reason}"
    again_at = decision.retry_at(now)
    entry = task_state.Entry(
        "task.failed",
        actor=ctx.actor,
        source=ctx.envelope.id,
        data={
            **data,
            **({"retry_at": again_at.isoformat()} if again_at else {}),
            "reason": reason,
            "error": error[:2000],
            # a move to another kind runs it again, whatever the kind's own retries say
            "will_retry": decision.again or (move is not None and move.to is not None),
            **({"failover": move.public()} if move is not None and move.to is None else {}),
        },
    )
    report = ctx.envelope.message
    if move is not None and move.to is not None and isinstance(report, TaskFailed):
        failover.shift(ctx.db, task, move, ended=entry, attempt=ctx.attempt, report=report)
        await ctx.db.flush()
        await scheduler.queue_ready(
            ctx.db, session=ctx.session, keys=ctx.keys, only=[task.id], routed=[task.id]
        )
    elif decision.again:
        task_state.reschedule(ctx.db, task, reason=failure, retry_at=again_at, entry=entry)
        if again_at is None:  # at once: no retry time for the sweep to wait for
            await ctx.db.flush()
            await scheduler.queue_ready(ctx.db, session=ctx.session, keys=ctx.keys, only=[task.id])
    else:
        task_state.fail(ctx.db, task, reason=failure, entry=entry)
        await task_state.block_downstream(ctx.db, session_id=ctx.session.id)
    await ctx.db.flush()
    await session_state.finish_or_reopen(ctx.db, ctx.session)
    return Outcome.APPLIED


def _gate_feedback(gates: list[dict[str, Any]]) -> str:
    results = []
    for gate in gates:
        try:
            results.append(GateResult.model_validate(gate))
        except ValueError:
            continue  # a newer adapter's shape: the timeline still has it
    return feedback(results)


async def _on_cancelled(ctx: _Ctx) -> Outcome:
    """An adapter gave the attempt up on its own (shutdown, drain): run it again. A cancel a
    person asked for has already made the task `cancelled`, so it lands in `IGNORED`."""
    message = ctx.envelope.message
    assert isinstance(message, TaskCancelled)
    if ctx.task.status not in ACTIVE:
        return Outcome.IGNORED
    data = _finish_attempt(ctx, AttemptStatus.CANCELLED, reason=message.reason)
    task = ctx.task
    decision = retry.decide(Cause.GIVEN_BACK, policy=ctx.policy)  # it runs again at once
    task_state.reschedule(
        ctx.db,
        task,
        reason=f"attempt {task.attempt} cancelled by its worker: {message.reason}",
        retry_at=decision.retry_at(utcnow()),
        entry=task_state.Entry(
            "attempt.cancelled",
            actor=ctx.actor,
            source=ctx.envelope.id,
            data={**data, "reason": message.reason, "will_retry": True},
        ),
    )
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
