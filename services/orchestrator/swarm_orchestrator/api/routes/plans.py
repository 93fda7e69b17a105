"""`/v1/sessions/{id}/plan` and `/approve`: plan a draft session's goal, read and edit its
plan revision by revision, talk to its planner, and approve it to run."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_orchestrator.access.tokens import Principal
from swarm_orchestrator.api.convert import session_public
from swarm_orchestrator.api.deps import AppState, DbDep, StateDep
from swarm_orchestrator.api.schemas import (
    MAX_INT,
    PlanEdit,
    PlanFeedback,
    PlanPublic,
    PlanRequest,
    SessionPublic,
    error_responses,
)
from swarm_orchestrator.api.security import Operator, Viewer
from swarm_orchestrator.db.models import Session
from swarm_orchestrator.errors import NotFound
from swarm_orchestrator.graph import sessions
from swarm_orchestrator.graph.locking import lock_session
from swarm_orchestrator.planning import plans
from swarm_orchestrator.planning.plans import PlanLimits, describe_repository

router = APIRouter(prefix="/v1/sessions", tags=["plans"])

_ERRORS = error_responses(404, 409)
_ANSWERED: dict[int | str, dict[str, Any]] = {
    200: {"model": PlanPublic, "description": "The heuristic planner answered at once."}
}


async def _change(
    db: AsyncSession,
    state: AppState,
    session_id: uuid.UUID,
    who: Principal,
    change: Callable[[Session, PlanLimits], Awaitable[Any]],
) -> Session:
    """Lock the session the caller may see, make `change` (which says 409
    `session_not_draft` for any session but a draft, closed ones included), commit, and
    wake the loops."""
    await sessions.get_session(db, session_id, seen_by=who)
    session = await lock_session(db, session_id)
    if session is None:
        raise NotFound(f"session {session_id} not found", code="session_not_found")
    await change(session, PlanLimits.from_settings(state.settings))
    await db.commit()
    state.notify()
    return session


async def _plan(db: AsyncSession, session: Session) -> PlanPublic:
    return PlanPublic.model_validate(await plans.read_plan(db, session))


async def _inventory(state: AppState, session: Session) -> dict[str, Any] | None:
    return await describe_repository(
        state.settings.workspace,
        session.repo_path,
        session.integration_head or session.base_commit,
        name=session.title,
    )


@router.get("/{session_id}/plan", responses=_ERRORS)
async def get_plan(
    session_id: uuid.UUID,
    db: DbDep,
    who: Viewer,
    revision: Annotated[
        int | None, Query(ge=1, le=MAX_INT, description="An older revision.")
    ] = None,
) -> PlanPublic:
    """The plan (the newest revision, or the one named), its revisions, the planning
    conversation and the planner's runs."""
    session = await sessions.get_session(db, session_id, seen_by=who)
    return PlanPublic.model_validate(await plans.read_plan(db, session, revision=revision))


@router.post("/{session_id}/plan", responses={**_ERRORS, **_ANSWERED}, status_code=202)
async def plan_session(
    session_id: uuid.UUID,
    db: DbDep,
    state: StateDep,
    who: Operator,
    response: Response,
    body: Annotated[PlanRequest | None, Body()] = None,
) -> PlanPublic:
    """Plan a draft session's goal (or a new one): a planning agent's run is queued (202:
    watch `status` turn `ready`), or the heuristic planner answers at once (200)."""
    request = body or PlanRequest()
    session = await sessions.get_session(db, session_id, seen_by=who)
    inventory = await _inventory(state, session)
    await db.rollback()  # the repository was read outside a transaction

    async def change(locked: Session, limits: PlanLimits) -> None:
        await plans.plan(
            db,
            locked,
            keys=state.keys,
            limits=limits,
            actor=who.actor,
            goal=request.goal,
            agent=request.agent,
            inventory=inventory,
        )

    session = await _change(db, state, session_id, who, change)
    if session.plan_status != "planning":
        response.status_code = 200
    return await _plan(db, session)


@router.patch("/{session_id}/plan", responses=_ERRORS)
async def edit_plan(
    session_id: uuid.UUID, body: PlanEdit, db: DbDep, state: StateDep, who: Operator
) -> PlanPublic:
    """One new revision: the whole plan (`tasks`) or `changes` to `base_revision`, checked
    as a whole graph (422 `invalid_plan` with every error; nothing stored). A
    `base_revision` that is not the newest is 409 `stale_revision`."""

    async def change(locked: Session, limits: PlanLimits) -> None:
        await plans.edit(
            db,
            locked,
            base_revision=body.base_revision,
            tasks=body.tasks,
            changes=body.changes,
            summary=body.summary,
            keys=state.keys,
            limits=limits,
            actor=who.actor,
        )

    session = await _change(db, state, session_id, who, change)
    return await _plan(db, session)


@router.post("/{session_id}/plan/messages", responses={**_ERRORS, **_ANSWERED}, status_code=202)
async def plan_feedback(
    session_id: uuid.UUID,
    body: PlanFeedback,
    db: DbDep,
    state: StateDep,
    who: Operator,
    response: Response,
) -> PlanPublic:
    """Feedback in words: the planner revises the plan into a new revision (202 while a
    planning agent works on it; 200 when the heuristic planner answered at once)."""
    session = await sessions.get_session(db, session_id, seen_by=who)
    inventory = await _inventory(state, session)
    await db.rollback()

    async def change(locked: Session, limits: PlanLimits) -> None:
        await plans.send_feedback(
            db,
            locked,
            text=body.text,
            keys=state.keys,
            limits=limits,
            actor=who.actor,
            inventory=inventory,
        )

    session = await _change(db, state, session_id, who, change)
    if session.plan_status != "planning":
        response.status_code = 200
    return await _plan(db, session)


@router.post("/{session_id}/approve", responses=_ERRORS)
async def approve_plan(
    session_id: uuid.UUID, db: DbDep, state: StateDep, who: Operator
) -> SessionPublic:
    """Run the draft's plan: its newest revision becomes the session's task graph and the
    session turns `active`. 409 `session_not_draft`, `planning_in_progress` or `no_plan`
    when there is nothing to approve."""

    async def change(locked: Session, limits: PlanLimits) -> None:
        await plans.approve(db, locked, keys=state.keys, limits=limits, actor=who.actor)

    session = await _change(db, state, session_id, who, change)
    counts = await sessions.session_counts(db, [session.id])
    return session_public(session, counts.get(session.id, {}))
