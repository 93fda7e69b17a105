"""`/v1/tasks/{id}`: one task with its attempts, its timeline, and control (retry, cancel)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from swarm_orchestrator import control, sessions, timeline
from swarm_orchestrator.api.convert import task_public
from swarm_orchestrator.api.deps import ActorDep, DbDep, StateDep
from swarm_orchestrator.api.schemas import (
    MAX_INT,
    AttemptPublic,
    ErrorBody,
    EventPublic,
    TaskDetail,
    TaskPublic,
)
from swarm_orchestrator.db.models import Attempt

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])

_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (401, 404, 409, 422, 503)
}


@router.get("/{task_id}", responses=_ERRORS)
async def get_task(task_id: uuid.UUID, db: DbDep, _: ActorDep) -> TaskDetail:
    task = await sessions.get_task(db, task_id)
    deps = await sessions.dependency_keys(db, task_ids=[task_id])
    attempts = (
        await db.scalars(select(Attempt).where(Attempt.task_id == task_id).order_by(Attempt.number))
    ).all()
    public = task_public(task, deps.get(task_id, ()))
    return TaskDetail(
        **public.model_dump(),
        prompt=task.prompt,
        spec=task.spec,
        attempts=[AttemptPublic.model_validate(a) for a in attempts],
    )


@router.get("/{task_id}/events", responses=_ERRORS)
async def task_events(
    task_id: uuid.UUID,
    db: DbDep,
    _: ActorDep,
    after: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[EventPublic]:
    """The task's part of the session timeline, in order."""
    await sessions.get_task(db, task_id)
    rows = await timeline.page(db, task_id=task_id, after=after, limit=limit)
    return [EventPublic.model_validate(r) for r in rows]


@router.post("/{task_id}/retry", responses=_ERRORS)
async def retry_task(task_id: uuid.UUID, db: DbDep, state: StateDep, actor: ActorDep) -> TaskPublic:
    """Start a new attempt of a failed or cancelled task; tasks it blocked wait again."""
    task = await control.retry_task(db, task_id=task_id, keys=state.keys, actor=actor)
    state.notify()
    deps = await sessions.dependency_keys(db, task_ids=[task_id])
    return task_public(task, deps.get(task_id, ()))


@router.post("/{task_id}/cancel", responses=_ERRORS)
async def cancel_task(
    task_id: uuid.UUID, db: DbDep, state: StateDep, actor: ActorDep
) -> TaskPublic:
    """Cancel a task that has not ended; its running attempt is asked to stop."""
    task = await control.cancel_task(db, task_id=task_id, keys=state.keys, actor=actor)
    state.notify()
    deps = await sessions.dependency_keys(db, task_ids=[task_id])
    return task_public(task, deps.get(task_id, ()))
