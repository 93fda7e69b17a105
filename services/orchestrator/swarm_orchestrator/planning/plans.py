"""The plan of a draft session: planning it (a planning agent's run, or the heuristic
planner), its numbered revisions, edits, the planning conversation, and approval.

This module owns `plan_revisions` and `plan_messages`. A plan's status changes through
`graph.session_state` (`plan_status`), a planning agent's run is a task of kind `plan`
(`graph.task_state`): it is queued, leased, retried and reaped like any task, runs read-only
(`TaskMessage.read_only`), and its tokens and cost count toward the session. Its answer
comes back through `graph.reports`, which hands it to `take_answer`; an invalid answer is a
failed attempt whose feedback is the validation errors, so the planner's one repair round is
the task's second attempt (`max_attempts` 2, decided by `graph.retry`).

Every function here runs in the caller's transaction and locks the session first
(`graph.locking`); two edits of one revision serialise on that lock, and the second finds
its base revision stale.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common.specs import AgentKind, TaskSpec
from swarm_common.states import PlanStatus, SessionStatus
from swarm_common.streams import Keys
from swarm_orchestrator.db.models import PlanMessage, PlanRevision, Session, Task
from swarm_orchestrator.errors import Conflict, Invalid, NotFound, SwarmError
from swarm_orchestrator.graph import fleet, scheduler, session_state, task_state
from swarm_orchestrator.planning import edits, inventory
from swarm_orchestrator.planning.answers import (
    PLAN_SCHEMA,
    PLANNER_AGENTS,
    PlanInvalid,
    planner_prompt,
    read_answer,
    validate_plan,
)
from swarm_orchestrator.planning.heuristic import plan_from_text
from swarm_orchestrator.settings import OrchestratorSettings

__all__ = [
    "HEURISTIC",
    "PlanLimits",
    "approve",
    "describe_repository",
    "edit",
    "plan",
    "read_plan",
    "send_feedback",
    "take_answer",
]

log = logging.getLogger(__name__)

HEURISTIC = "heuristic"
AUTO = "auto"
PLAN_ATTEMPTS = 2
"""A planning run's attempts: its answer, and one repair round when that was invalid."""
READ_TOOLS = ["Read", "Glob", "Grep"]


@dataclass(frozen=True)
class PlanLimits:
    """The server's graph limits and planning defaults (`Settings`)."""

    max_tasks: int = 10_000
    max_edges: int | None = None
    default_agent: str = AUTO
    """`auto` (the first planning agent with a live adapter, else heuristic), `heuristic`,
    or an agent kind."""

    @classmethod
    def from_settings(cls, settings: OrchestratorSettings) -> PlanLimits:
        return cls(
            max_tasks=settings.max_graph_tasks,
            max_edges=settings.max_graph_edges,
            default_agent=settings.planner_agent,
        )


# -- planning ------------------------------------------------------------------------------


async def plan(
    db: AsyncSession,
    session: Session,
    *,
    keys: Keys,
    limits: PlanLimits,
    actor: str,
    goal: str | None = None,
    agent: str | None = None,
    inventory: dict[str, Any] | None = None,
) -> None:
    """Plan the draft `session` (locked by the caller) from its goal: at once with the
    heuristic planner, or by queueing a planning agent's run."""
    _check_draft(session)
    if session.plan_status == PlanStatus.PLANNING:
        raise Conflict("the session is being planned", code="planning_in_progress")
    if await _work_tasks(db, session.id):
        raise Conflict("the session has tasks already", code="session_has_tasks")
    if goal is not None:
        session.goal = goal
    if not session.goal.strip():
        raise Invalid("planning needs a goal", code="goal_required")
    chosen = await _planner(db, session, limits, agent)
    _message(db, session, role="user", author=actor, text=session.goal, revision=None)
    if chosen == HEURISTIC:
        specs = await _heuristic(db, session, session.goal, limits)
        await _revise(
            db,
            session,
            specs,
            source=HEURISTIC,
            actor=actor,
            summary=f"{len(specs)} tasks from the goal's structure (heuristic planner)",
            keys=keys,
            limits=limits,
        )
        return
    prompt = planner_prompt(goal=session.goal, inventory=inventory, agents=await _agents(db))
    await _run_planner(db, session, agent=chosen, prompt=prompt, actor=actor, keys=keys)


async def send_feedback(
    db: AsyncSession,
    session: Session,
    *,
    text: str,
    keys: Keys,
    limits: PlanLimits,
    actor: str,
    inventory: dict[str, Any] | None = None,
) -> None:
    """A person's words about the plan: the planner revises it into a new revision (a
    planning agent reads the whole conversation; the heuristic planner adds the tasks the
    message lists)."""
    _check_draft(session)
    if session.plan_status == PlanStatus.PLANNING:
        raise Conflict("the planner is still at work", code="planning_in_progress")
    current = await _current_tasks(db, session)
    chosen = await _planner(db, session, limits, None)
    _message(db, session, role="user", author=actor, text=text, revision=session.plan_revision)
    if chosen == HEURISTIC:
        added = edits.add_unique(
            current,
            [s.model_dump(mode="json") for s in await _heuristic(db, session, text, limits)],
        )
        specs = validate_plan(added, max_tasks=limits.max_tasks, max_edges=limits.max_edges)
        await _revise(
            db,
            session,
            specs,
            source="feedback",
            actor=actor,
            summary=f"added {len(added) - len(current)} tasks listed in the message "
            "(the heuristic planner adds what a message lists; an agent planner reworks "
            "the plan in words)",
            keys=keys,
            limits=limits,
        )
        return
    conversation = await _conversation(db, session.id)
    prompt = planner_prompt(
        goal=session.goal,
        inventory=inventory,
        agents=await _agents(db),
        current=current,
        conversation=conversation,
    )
    await _run_planner(db, session, agent=chosen, prompt=prompt, actor=actor, keys=keys)


async def _planner(
    db: AsyncSession, session: Session, limits: PlanLimits, asked: str | None
) -> str:
    """Who plans: the request's agent, else the session's `settings.planner.agent`, else
    the server's default; `auto` is the first planning agent an adapter serves now, else
    the heuristic planner."""
    configured = asked or _planner_settings(session).get("agent") or limits.default_agent
    if configured != AUTO:
        return str(configured)
    live = await fleet.live_agents(db)
    return next((a for a in PLANNER_AGENTS if a in live), HEURISTIC)


def _planner_settings(session: Session) -> dict[str, Any]:
    value = (session.settings or {}).get("planner")
    return value if isinstance(value, dict) else {}


async def _agents(db: AsyncSession) -> list[str]:
    """The agent kinds adapters serve now (the planner assigns tasks to them)."""
    return sorted(await fleet.live_agents(db)) or ["shell"]


async def _heuristic(
    db: AsyncSession, session: Session, text: str, limits: PlanLimits
) -> list[TaskSpec]:
    """The heuristic planner's tasks, for the first agent CLI an adapter serves (claude
    when none does: a prose task is no shell command)."""
    specs = plan_from_text(text)
    if len(specs) > limits.max_tasks:
        raise PlanInvalid([f"the plan has {len(specs)} tasks; at most {limits.max_tasks}"])
    served = await _agents(db)
    agent = next((a for a in PLANNER_AGENTS if a in served), "claude")
    return [spec.model_copy(update={"agent": agent}) for spec in specs]


async def _run_planner(
    db: AsyncSession, session: Session, *, agent: str, prompt: str, actor: str, keys: Keys
) -> None:
    """Queue a planning agent's run: a read-only task of kind `plan`."""
    if agent not in PLANNER_AGENTS:
        raise Invalid(
            f"{agent!r} does not plan: use heuristic, {', '.join(PLANNER_AGENTS)}",
            code="unknown_planner",
        )
    runs = await db.scalar(
        select(func.count()).where(Task.session_id == session.id, Task.kind == "plan")
    )
    settings = _planner_settings(session)
    # Planner keys start with '_', which no submitted key may: they never meet the plan's.
    spec = TaskSpec.model_construct(
        key=f"_plan-{int(runs or 0) + 1}",
        title=f"Plan the goal ({agent})",
        prompt=prompt,
        agent=cast(AgentKind, agent),
        role="planner",
        skills=[],
        depends_on=[],
        priority=100,
        timeout_s=int(settings.get("timeout_s") or 900),
        max_attempts=PLAN_ATTEMPTS,
        gates=[],
        retry_on_gate_failure=False,
        requires_approval=False,
        acceptance=[],
        files=[],
        model=settings.get("model"),
        max_turns=settings.get("max_turns"),
        allowed_tools=READ_TOOLS if agent == "claude" else None,
        output_schema=PLAN_SCHEMA,
        phase=None,
        epic=None,
        estimated_hours=None,
    )
    new = task_state.NewTask(spec=spec, kind="plan", created={"key": spec.key, "planner": agent})
    await task_state.create_tasks(
        db, session=session, tasks=[new], ids={spec.key: new.id}, actor=actor
    )
    session_state.planning_started(db, session, actor=actor, agent=agent)
    await db.flush()
    await scheduler.queue_ready(db, session=session, keys=keys, only=[new.id])
    log.info("planning queued", extra={"session_id": str(session.id), "agent": agent})


async def take_answer(
    db: AsyncSession,
    session: Session,
    task: Task,
    answer: str | None,
    *,
    keys: Keys,
    limits: PlanLimits,
    actor: str,
) -> list[str] | None:
    """A planning run's final message: stored as the plan's next revision (and run at once
    when the session auto-approves); or, when it is no valid plan, the errors (nothing is
    stored; the caller fails the attempt with them)."""
    try:
        summary, raw = read_answer(answer)
        specs = validate_plan(raw, max_tasks=limits.max_tasks, max_edges=limits.max_edges)
    except PlanInvalid as exc:
        return exc.errors
    if session.status != SessionStatus.DRAFT or session.plan_status != PlanStatus.PLANNING:
        return None  # approved or edited by hand meanwhile: the answer is late, keep the plan
    revising = session.plan_revision is not None
    await _revise(
        db,
        session,
        specs,
        source="feedback" if revising else "planner",
        actor=actor,
        summary=summary or f"{len(specs)} tasks",
        keys=keys,
        limits=limits,
        author=f"planner:{task.agent}",
    )
    return None


# -- revisions -----------------------------------------------------------------------------


async def edit(
    db: AsyncSession,
    session: Session,
    *,
    base_revision: int,
    tasks: Sequence[dict[str, Any]] | None,
    changes: Sequence[dict[str, Any]],
    summary: str,
    keys: Keys,
    limits: PlanLimits,
    actor: str,
) -> None:
    """A person's edit as one new revision: the whole task list replaced, or `changes`
    (add, remove, update, split, merge) applied to `base_revision`, which must be the newest
    (a stale one is 409 `stale_revision`: someone else edited meanwhile)."""
    _check_draft(session)
    if session.plan_status == PlanStatus.PLANNING:
        raise Conflict("the planner is at work; edit once it answers", code="planning_in_progress")
    current_number = session.plan_revision or 0
    if base_revision != current_number:
        raise Conflict(
            f"revision {base_revision} is not the newest ({current_number}): reload the plan",
            code="stale_revision",
            details={"base_revision": base_revision, "current": current_number},
        )
    current = await _current_tasks(db, session)
    edited = list(tasks) if tasks is not None else current
    edited = edits.apply(edited, changes)
    specs = validate_plan(edited, max_tasks=limits.max_tasks, max_edges=limits.max_edges)
    await _revise(
        db,
        session,
        specs,
        source="edit",
        actor=actor,
        summary=summary or edits.describe(current, [_stored(s) for s in specs]),
        keys=keys,
        limits=limits,
    )


async def _revise(
    db: AsyncSession,
    session: Session,
    specs: Sequence[TaskSpec],
    *,
    source: str,
    actor: str,
    summary: str,
    keys: Keys,
    limits: PlanLimits,
    author: str | None = None,
) -> int:
    number = (session.plan_revision or 0) + 1
    db.add(
        PlanRevision(
            session_id=session.id,
            number=number,
            tasks=[_stored(s) for s in specs],
            source=source,
            actor=author or actor,
            summary=summary[:4000],
        )
    )
    if source != "edit":
        _message(
            db, session, role="planner", author=author or source, text=summary, revision=number
        )
    session_state.plan_revised(
        db,
        session,
        revision=number,
        actor=author or actor,
        data={"source": source, "tasks": len(specs)},
    )
    if session.auto_approve and source != "edit":
        try:
            await approve(db, session, keys=keys, limits=limits, actor="auto_approve")
        except Invalid as exc:  # nothing of the approval is written before the personas
            if exc.code != "persona_not_found":
                raise
            log.warning(
                "plan left for a person to approve",
                extra={"session_id": str(session.id), "error": str(exc)},
            )
    return number


def _stored(spec: TaskSpec) -> dict[str, Any]:
    """A task as a revision keeps it: its key, title, prompt, agent and dependencies, and
    whatever else differs from the defaults, so a file of it reads like one written by
    hand."""
    data = spec.model_dump(mode="json", exclude_defaults=True)
    shown = ("key", "title", "prompt", "agent", "depends_on")
    return {**{k: getattr(spec, k) for k in shown}, **data}


async def approve(
    db: AsyncSession, session: Session, *, keys: Keys, limits: PlanLimits, actor: str
) -> int:
    """The newest revision becomes the session's graph and runs: the draft turns active and
    its ready tasks are queued. Returns how many tasks were made."""
    _check_draft(session)
    if session.plan_status == PlanStatus.PLANNING:
        raise Conflict("the planner is still at work", code="planning_in_progress")
    if session.plan_status != PlanStatus.READY or session.plan_revision is None:
        raise Conflict("the session has no plan to approve", code="no_plan")
    tasks = await _current_tasks(db, session)
    specs = validate_plan(tasks, max_tasks=limits.max_tasks, max_edges=limits.max_edges)
    made = await task_state.create_graph(db, session=session, specs=specs, existing={}, actor=actor)
    session_state.plan_approved(db, session, actor=actor)
    session_state.activate(db, session, actor=actor)
    await db.flush()
    # As a submitted graph: the first of a big plan now, the rest by the scheduler's sweep.
    await scheduler.queue_ready(db, session=session, keys=keys, limit=scheduler.QUEUE_IN_REQUEST)
    return len(made)


# -- reading -------------------------------------------------------------------------------


async def read_plan(
    db: AsyncSession, session: Session, *, revision: int | None = None
) -> dict[str, Any]:
    """The plan as `GET /v1/sessions/{id}/plan` shows it: a revision's tasks (the newest by
    default), every revision's summary, the conversation, and the planner's runs."""
    number = revision if revision is not None else session.plan_revision
    row = None
    if number is not None:
        row = await db.scalar(
            select(PlanRevision).where(
                PlanRevision.session_id == session.id, PlanRevision.number == number
            )
        )
        if row is None and revision is not None:
            raise NotFound(f"revision {revision} not found", code="revision_not_found")
    revisions = (
        await db.execute(
            select(
                PlanRevision.number,
                PlanRevision.source,
                PlanRevision.actor,
                PlanRevision.summary,
                PlanRevision.created_at,
                func.jsonb_array_length(PlanRevision.tasks).label("tasks"),
            )
            .where(PlanRevision.session_id == session.id)
            .order_by(PlanRevision.number)
        )
    ).all()
    messages = (
        await db.scalars(
            select(PlanMessage).where(PlanMessage.session_id == session.id).order_by(PlanMessage.id)
        )
    ).all()
    runs = (
        await db.execute(
            select(Task.id, Task.key, Task.agent, Task.status, Task.attempt, Task.reason)
            .where(Task.session_id == session.id, Task.kind == "plan")
            .order_by(Task.created_at)
        )
    ).all()
    return {
        "session_id": session.id,
        "status": session.plan_status,
        "revision": row.number if row is not None else None,
        "latest_revision": session.plan_revision,
        "source": row.source if row is not None else None,
        "summary": row.summary if row is not None else "",
        "tasks": list(row.tasks) if row is not None else [],
        "error": session.plan_error,
        "auto_approve": session.auto_approve,
        "revisions": [dict(r._mapping) for r in revisions],
        "messages": [
            {
                "id": m.id,
                "role": m.role,
                "author": m.author,
                "text": m.text,
                "revision": m.revision,
                "created_at": m.created_at,
            }
            for m in messages
        ],
        "runs": [dict(r._mapping) for r in runs],
    }


# -- helpers -------------------------------------------------------------------------------


async def describe_repository(
    workspace: Path, mirror: str, commit: str, *, name: str | None = None
) -> dict[str, Any] | None:
    """What the session's repository holds at `commit` (its inventory record, read from the
    bare mirror), for the planner's prompt; None when it cannot be read (the planner plans
    without it, and the log says why)."""
    try:
        record = await inventory.describe_repository(workspace / mirror, commit, name=name)
    except SwarmError as exc:
        log.warning("repository not described for the planner", extra={"error": exc.message})
        return None
    return record.model_dump(mode="json", exclude={"path", "root"})


def _check_draft(session: Session) -> None:
    if session.status != SessionStatus.DRAFT or session.plan_status == PlanStatus.APPROVED:
        raise Conflict(
            f"the session is {session.status}: only a draft's plan is planned, edited or approved",
            code="session_not_draft",
        )


async def _work_tasks(db: AsyncSession, session_id: uuid.UUID) -> int:
    return int(
        await db.scalar(
            select(func.count()).where(Task.session_id == session_id, Task.kind == "work")
        )
        or 0
    )


async def _current_tasks(db: AsyncSession, session: Session) -> list[dict[str, Any]]:
    if session.plan_revision is None:
        return []
    tasks = await db.scalar(
        select(PlanRevision.tasks).where(
            PlanRevision.session_id == session.id, PlanRevision.number == session.plan_revision
        )
    )
    return list(tasks or [])


async def _conversation(db: AsyncSession, session_id: uuid.UUID) -> list[tuple[str, str]]:
    rows = await db.execute(
        select(PlanMessage.role, PlanMessage.text)
        .where(PlanMessage.session_id == session_id)
        .order_by(PlanMessage.id)
    )
    return [(role, text[:8000]) for role, text in rows.all()][-40:]


def _message(
    db: AsyncSession,
    session: Session,
    *,
    role: str,
    author: str,
    text: str,
    revision: int | None,
) -> None:
    db.add(
        PlanMessage(
            session_id=session.id,
            role=role,
            author=author[:200],
            text=text[: 64 * 1024],
            revision=revision,
        )
    )
