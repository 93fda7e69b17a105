"""Reviews with verdicts, and people's comments on tasks: the owner of `task_reviews` and
`task_comments`, and of when a task's work is reviewed.

A work task that asks for review (its spec's `review`, or the session's `settings.review`)
does not join the merge queue when its attempt succeeds and its gates pass: it waits in
`reviewing` (`request`) while a reviewer's run judges it. That run is a task of kind
`review` (read-only, never merged, no part of the graph's counts; its spend counts),
preferably of another agent kind than the builder's; it starts at the builder's commit and is
told the diff from the merge base with the integration head, and must answer a verdict that
follows `VERDICT_SCHEMA`. `PASS` lets the work merge (or wait for a person's approval);
`FAIL` sends the builder back: a new attempt from its own last commit with the critical
issues as feedback, until `max_rounds` reviews; then the task fails with the last verdict
(`apply_verdict`). An answer that is no valid verdict fails the review attempt with the
errors as its feedback (one repair round: `max_attempts` 2, as `retry.decide` allows); a
review run that ends without a verdict (failed twice, lost, cancelled) fails the builder
(`settle`, from `session_state.finish_or_reopen`).

A person does the same by hand (`comment`): a comment is kept on the task; with
`request_changes` it sends the task back with the comment as feedback, from awaiting
approval, reviewing (its review run is cancelled), failed, or succeeded and not yet merged.

A verdict is applied only to the attempt it judged (`review_of.attempt`, the fencing token):
one that arrives after the builder was cancelled or sent back by a person is kept, and
changes nothing. Every state change goes through `task_state`; the lock order is
`graph.locking`'s (a review run after the task it reviews).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common.messages import utcnow
from swarm_common.session_settings import SessionSettings
from swarm_common.specs import AgentKind, ReviewSpec, TaskSpec
from swarm_common.states import MergeStatus, TaskStatus
from swarm_common.streams import Keys
from swarm_common.verdicts import VERDICT_SCHEMA, Verdict
from swarm_orchestrator.db.models import Attempt, Session, Task, TaskComment, TaskReview
from swarm_orchestrator.errors import Conflict, Invalid, NotFound
from swarm_orchestrator.graph import fleet, personas, retry, scheduler, task_state
from swarm_orchestrator.graph.locking import CLOSED_SESSION_STATES, lock_task, lock_tasks

__all__ = [
    "REVIEW_ATTEMPTS",
    "REVIEWERS",
    "apply_verdict",
    "comment",
    "cancel_runs",
    "comments_of",
    "repair_feedback",
    "request",
    "reviews_of",
    "settle",
    "verified",
    "wanted",
]

log = logging.getLogger(__name__)

REVIEWERS: tuple[str, ...] = ("claude", "codex", "gemini")
"""The agent kinds that review, in the order `auto` prefers them (shell runs commands)."""
REVIEW_ATTEMPTS = 2
"""A review run's attempts: its verdict, and one repair round when that was invalid."""
READ_TOOLS = ["Read", "Glob", "Grep"]
MAX_COMMENT_CHARS = 20_000
SENDABLE = frozenset({TaskStatus.AWAITING_APPROVAL, TaskStatus.REVIEWING, TaskStatus.FAILED})
"""States a person's request for changes sends a task back from (besides succeeded work
that is not merged yet)."""


def repair_feedback(errors: Sequence[str]) -> str:
    lines = "\n".join(f"- {e}" for e in errors)
    return (
        "Your previous answer was not a valid verdict. Fix these errors and answer again "
        f"with one JSON object that follows the schema:\n{lines}"
    )


# -- asking for a review ------------------------------------------------------------------


def wanted(task: Task, session: Session) -> ReviewSpec | None:
    """The review a work task's succeeded attempt gets: its own, else the session's; none
    for a conflict-resolution task (its work was reviewed), a verifier (it judges), or a
    task that opts out."""
    if task.kind not in ("work", "race") or task.resolves_task_id or task.spec.get("verify"):
        return None
    own = task.spec.get("review")
    if own is False:
        return None
    if isinstance(own, dict):
        return ReviewSpec.model_validate(own)
    try:
        default = SessionSettings.model_validate(session.settings or {}).review
    except ValidationError:
        default = None
    if own is True:
        return default or ReviewSpec()
    return default


@dataclass(frozen=True)
class _Reviewer:
    agent: str
    why: str


async def _reviewer(db: AsyncSession, spec: ReviewSpec, builder: Task) -> _Reviewer:
    """Who reviews: the kind the spec names, else another live kind than the builder's, else
    the builder's own (when it reviews), else the first live one (else claude: the session
    waits for one)."""
    if spec.agent != "auto":
        return _Reviewer(spec.agent, "named by the task's review")
    live = await fleet.live_agents(db)
    other = [k for k in REVIEWERS if k in live and k != builder.agent]
    if other:
        return _Reviewer(other[0], f"a live {other[0]} adapter, not the builder's kind")
    if builder.agent in REVIEWERS:
        return _Reviewer(builder.agent, "no live adapter of another kind: the builder's kind")
    served = [k for k in REVIEWERS if k in live]
    if served:
        return _Reviewer(served[0], f"the builder's kind does not review: {served[0]} is live")
    return _Reviewer(REVIEWERS[0], "no live reviewing adapter: waits for claude")


async def request(
    db: AsyncSession,
    *,
    session: Session,
    task: Task,
    spec: ReviewSpec,
    keys: Keys,
    actor: str,
    source: str,
    data: dict[str, Any],
) -> None:
    """`task`'s attempt succeeded (the caller stored its result): it waits in `reviewing`
    while a reviewer's run, queued here, judges its commit."""
    reviewer = await _reviewer(db, spec, task)
    task_state.to_review(db, task, actor=actor, source=source, data=data)
    commit = (task.result or {}).get("commit") or task.base_commit
    review_of = {
        "task_id": str(task.id),
        "task_key": task.key,
        "title": task.title,
        "prompt": task.prompt,
        "acceptance": list(task.spec.get("acceptance") or ()),
        "attempt": task.attempt,
        "commit": commit,
        "against": scheduler.work_head(session),
        "round": task.review_round,
        "max_rounds": spec.max_rounds,
        "rubric": spec.rubric,
        "builder_agent": task.agent,
    }
    run = TaskSpec.model_construct(
        # '_' starts no submitted key: review runs never meet the graph's keys.
        key=f"_review-{task.key[:36]}-{task.id.hex[:8]}-{task.attempt}",
        title=f"Review {task.key} (round {task.review_round} of {spec.max_rounds})",
        prompt=f"Review the work of task {task.key}: {task.title}",
        agent=cast(AgentKind, reviewer.agent),
        persona=spec.persona,
        role="qa",
        skills=[],
        depends_on=[],
        priority=task.priority + 1,  # the work it judges waits for it
        timeout_s=task.timeout_s,
        max_attempts=REVIEW_ATTEMPTS,
        gates=[],
        retry_on_gate_failure=False,
        requires_approval=False,
        acceptance=[],
        files=[],
        model=None,
        max_turns=None,
        allowed_tools=READ_TOOLS if reviewer.agent == "claude" else None,
        output_schema=VERDICT_SCHEMA,
        review=None,
        phase=None,
        epic=None,
        estimated_hours=None,
    )
    try:
        (persona,) = await personas.assign(db, specs=[run], tenant=session.tenant)
    except Invalid:  # the catalogue lost the persona since the task was submitted
        log.warning("reviewer persona not found", extra={"persona": spec.persona})
        run = run.model_copy(update={"persona": None})
        (persona,) = await personas.assign(db, specs=[run], tenant=session.tenant)
    new = task_state.NewTask(
        spec=run,
        kind="review",
        persona=persona,
        reviews_task_id=task.id,
        spec_extra={"review_of": review_of},
        created={
            "key": run.key,
            "reviews": task.key,
            "round": task.review_round,
            "agent": reviewer.agent,
            "why": reviewer.why,
        },
    )
    await task_state.create_tasks(
        db, session=session, tasks=[new], ids={run.key: new.id}, actor="system"
    )
    await db.flush()
    await scheduler.queue_ready(db, session=session, keys=keys, only=[new.id])
    log.info(
        "review requested",
        extra={"task_key": task.key, "round": task.review_round, "agent": reviewer.agent},
    )


# -- a verdict -----------------------------------------------------------------------------


async def apply_verdict(
    db: AsyncSession,
    *,
    session: Session,
    run: Task,
    verdict: Verdict,
    keys: Keys,
    actor: str,
) -> None:
    """Keep the verdict of review run `run` (its attempt just answered) and do what it says
    to the task it judged, when that task still waits for it."""
    review_of = run.spec.get("review_of") or {}
    builder = await db.get(Task, run.reviews_task_id)  # locked with `run` (`lock_task`)
    if builder is None:
        return
    persona = (run.spec.get("assigned_persona") or {}).get("name")
    db.add(
        TaskReview(
            session_id=session.id,
            task_id=builder.id,
            review_task_id=run.id,
            round=int(review_of.get("round") or 0),
            attempt=int(review_of.get("attempt") or 0),
            commit=review_of.get("commit"),
            agent=run.agent,
            persona=persona,
            verdict=verdict.verdict,
            summary=verdict.summary,
            critical_issues=list(verdict.critical_issues),
            recommendations=list(verdict.recommendations),
        )
    )
    if builder.status != TaskStatus.REVIEWING or builder.attempt != review_of.get("attempt"):
        log.info(
            "verdict of an attempt that no longer waits for it",
            extra={"task_key": builder.key, "status": builder.status},
        )
        return
    data = {
        "verdict": verdict.verdict,
        "round": review_of.get("round"),
        "max_rounds": review_of.get("max_rounds"),
        "reviewer": run.agent,
        **({"persona": persona} if persona else {}),
        "summary": verdict.summary[:2000],
        "critical_issues": [i[:500] for i in verdict.critical_issues[:20]],
    }
    if verdict.passed and builder.kind == "race":  # a contender: it may win its race
        from swarm_orchestrator.graph import races  # it imports `scheduler`, as this does

        await races.passed(
            db, session=session, contender=builder, keys=keys, actor=actor, source=None, data=data
        )
        return
    if verdict.passed:
        await task_state.review_passed(db, builder, actor=actor, data=data)
        return
    rounds = int(review_of.get("max_rounds") or 1)
    if builder.review_round >= rounds:
        reason = f"review failed ({builder.review_round} of {rounds} rounds): {verdict.summary}"
        task_state.fail(
            db,
            builder,
            reason=reason[:2000],
            entry=task_state.Entry("task.reviewed", data={**data, "will_retry": False}),
        )
        await task_state.block_downstream(db, session_id=session.id)
        return
    decision = retry.decide(retry.Cause.RETRIED)  # it runs again at once
    task_state.send_back(
        db,
        builder,
        feedback=_verdict_feedback(verdict, run=run, review_of=review_of, persona=persona),
        resume_commit=review_of.get("commit"),
        retry_at=decision.retry_at(utcnow()),
        entry=task_state.Entry("task.reviewed", data={**data, "will_retry": True}),
    )
    await db.flush()
    await scheduler.queue_ready(db, session=session, keys=keys, only=[builder.id])


async def verified(
    db: AsyncSession,
    *,
    session: Session,
    task: Task,
    verdict: Verdict,
    keys: Keys,
    actor: str,
    source: str,
    data: dict[str, Any],
) -> None:
    """A verifier (a work task with `verify`) answered about the integration head it read:
    its verdict is kept; `PASS` ends it with nothing to merge, and what waited for it is
    queued; `FAIL` fails it for good (a person may retry it), which blocks its dependents."""
    db.add(
        TaskReview(
            session_id=session.id,
            task_id=task.id,
            review_task_id=task.id,
            round=1,
            attempt=task.attempt,
            commit=task.base_commit,
            agent=task.agent,
            persona=(task.spec.get("assigned_persona") or {}).get("name"),
            verdict=verdict.verdict,
            summary=verdict.summary,
            critical_issues=list(verdict.critical_issues),
            recommendations=list(verdict.recommendations),
        )
    )
    if verdict.passed:
        task_state.answered(db, task, actor=actor, source=source, data=data)
        await db.flush()
        await scheduler.queue_ready(db, session=session, keys=keys)
        return
    reason = f"the verifier's verdict is FAIL: {verdict.summary}"[:2000]
    entry = task_state.Entry(
        "task.failed",
        actor=actor,
        source=source,
        data={
            **data,
            "reason": "verdict_fail",
            "error": "; ".join(verdict.critical_issues)[:2000],
            "will_retry": False,
        },
    )
    task_state.fail(db, task, reason=reason, entry=entry)
    await task_state.block_downstream(db, session_id=session.id)


def _verdict_feedback(
    verdict: Verdict, *, run: Task, review_of: dict[str, Any], persona: str | None
) -> str:
    who = f"{run.agent}" + (f", as {persona}" if persona else "")
    lines = [
        f"A reviewer ({who}) judged your previous attempt (review {review_of.get('round')} "
        f"of {review_of.get('max_rounds')}): FAIL.",
        verdict.summary,
        "",
        "Critical issues (fix every one):",
        *(f"- {issue}" for issue in verdict.critical_issues),
    ]
    if verdict.recommendations:
        lines += ["", "Recommendations (optional):", *(f"- {r}" for r in verdict.recommendations)]
    lines += [
        "",
        "Your worktree starts from your previous attempt's commit: change what the issues "
        "need, then the work is reviewed again.",
    ]
    return "\n".join(lines)


async def settle(db: AsyncSession, session: Session) -> None:
    """Fail every task of `session` still reviewing whose review run ended without a
    verdict (failed for good, cancelled, blocked): nobody would decide for it otherwise."""
    run = Task.__table__.alias("run")
    rows = (
        await db.execute(
            select(Task.id, run.c.status, run.c.reason)
            .join(run, run.c.reviews_task_id == Task.id)
            .where(
                Task.session_id == session.id,
                Task.status == TaskStatus.REVIEWING,
                run.c.status.in_([TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.BLOCKED]),
                run.c.spec["review_of"]["attempt"].as_integer() == Task.attempt,
            )
        )
    ).all()
    if not rows:
        return
    why = {row.id: row.reason or f"the review run was {row.status}" for row in rows}
    for builder in await lock_tasks(db, session, ids=list(why)):
        if builder.status != TaskStatus.REVIEWING:
            continue
        reason = f"review did not complete: {why[builder.id]}"
        task_state.fail(
            db,
            builder,
            reason=reason[:2000],
            entry=task_state.Entry("task.review_failed", data={"reason": why[builder.id]}),
        )
    await task_state.block_downstream(db, session_id=session.id)


async def cancel_runs(
    db: AsyncSession, *, session: Session, task: Task, keys: Keys, actor: str
) -> int:
    """Cancel the review runs of `task` that have not ended (it was cancelled or sent back;
    the caller holds its lock, so these are locked after it)."""
    open_runs = await lock_tasks(
        db,
        session,
        Task.reviews_task_id == task.id,
        Task.status.in_([TaskStatus.PENDING, TaskStatus.QUEUED, TaskStatus.RUNNING]),
    )
    for run in open_runs:
        await task_state.cancel(db, run, keys=keys, actor=actor)
    return len(open_runs)


# -- a person's comment --------------------------------------------------------------------


async def comment(
    db: AsyncSession,
    *,
    task_id: uuid.UUID,
    body: str,
    request_changes: bool,
    keys: Keys,
    actor: str,
) -> tuple[TaskComment, Task]:
    """Keep a person's comment on a work task; with `request_changes`, send the task back
    with it as feedback (409 `changes_not_requestable` when its state does not allow that,
    and nothing is kept). The caller checked that `actor` may see the task."""
    locked = await lock_task(db, task_id)
    if locked is None or locked.task.kind != "work":
        raise NotFound(f"task {task_id} not found", code="task_not_found")
    session, task = locked.session, locked.task
    note = TaskComment(
        session_id=session.id,
        task_id=task.id,
        author=actor,
        body=body,
        request_changes=request_changes,
    )
    db.add(note)
    if request_changes:
        await _send_back(db, session=session, task=task, body=body, keys=keys, actor=actor)
    await db.flush()
    from swarm_orchestrator.graph import session_state  # it imports this module

    await session_state.finish_or_reopen(db, session)
    await db.commit()
    log.info(
        "task commented",
        extra={"task_key": task.key, "actor": actor, "request_changes": request_changes},
    )
    return note, task


async def _send_back(
    db: AsyncSession, *, session: Session, task: Task, body: str, keys: Keys, actor: str
) -> None:
    unmerged = task.status == TaskStatus.SUCCEEDED and task.merge_status in (
        MergeStatus.PENDING,
        MergeStatus.CONFLICT,
    )
    if session.status in CLOSED_SESSION_STATES or not (task.status in SENDABLE or unmerged):
        merged = task.status == TaskStatus.SUCCEEDED
        raise Conflict(
            f"a {task.status} task cannot be sent back"
            + (": its work is merged; add a task for the changes" if merged else "")
            + (
                f" (the session is {session.status})"
                if session.status in CLOSED_SESSION_STATES
                else ""
            ),
            code="changes_not_requestable",
            details={"status": task.status, "merge_status": task.merge_status},
        )
    if task.status == TaskStatus.REVIEWING:
        await cancel_runs(db, session=session, task=task, keys=keys, actor=actor)
    commit = await db.scalar(
        select(Attempt.commit).where(Attempt.task_id == task.id, Attempt.number == task.attempt)
    )
    decision = retry.decide(retry.Cause.RETRIED)
    previous = task_state.send_back(
        db,
        task,
        feedback=f"A person ({actor}) asked for changes to your previous attempt:\n\n{body}\n\n"
        + (
            "Your worktree starts from your previous attempt's commit: change what they ask."
            if commit
            else "Your previous attempt left no commit: this one starts afresh."
        ),
        resume_commit=commit,
        retry_at=decision.retry_at(utcnow()),
        reset_rounds=True,
        entry=task_state.Entry(
            "task.changes_requested", actor=actor, data={"comment": body[:2000]}
        ),
    )
    if previous == TaskStatus.FAILED:
        await task_state.unblock_downstream(db, task, actor=actor)
        await task_state.block_downstream(db, session_id=session.id)
    await scheduler.resume_after_review(db, session=session, keys=keys, actor=actor)
    await scheduler.queue_ready(db, session=session, keys=keys, only=[task.id])


# -- reading -------------------------------------------------------------------------------


async def reviews_of(db: AsyncSession, task_id: uuid.UUID) -> list[TaskReview]:
    return list(
        (
            await db.scalars(
                select(TaskReview).where(TaskReview.task_id == task_id).order_by(TaskReview.id)
            )
        ).all()
    )


async def comments_of(db: AsyncSession, task_id: uuid.UUID) -> list[TaskComment]:
    return list(
        (
            await db.scalars(
                select(TaskComment).where(TaskComment.task_id == task_id).order_by(TaskComment.id)
            )
        ).all()
    )
