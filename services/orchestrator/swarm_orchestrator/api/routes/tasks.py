"""`/v1/tasks/{id}`: one task with its attempts, reviewers' verdicts and comments, its
timeline (JSON or a live stream), its diff, control (retry, cancel, approve), and comments
that may send it back (`graph.reviews`)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_orchestrator.access.tokens import Principal
from swarm_orchestrator.api.convert import shown, task_public
from swarm_orchestrator.api.deps import AppState, DbDep, StateDep
from swarm_orchestrator.api.schemas import (
    AttemptPublic,
    CommentAnswer,
    CommentIn,
    CommentPublic,
    DiffFile,
    DiffPublic,
    EventPublic,
    ReviewPublic,
    TaskDetail,
    TaskPublic,
    error_responses,
)
from swarm_orchestrator.api.security import Operator, Viewer
from swarm_orchestrator.api.stream import SSE_RESPONSE, EventsDep, timeline_answer
from swarm_orchestrator.db.models import Attempt, Task
from swarm_orchestrator.errors import NotFound
from swarm_orchestrator.graph import control, progress, reviews, sessions
from swarm_orchestrator.integration import repos

MAX_DIFF_BYTES = 16 * 1024 * 1024

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])

_ERRORS = error_responses(404, 409)


async def _act(
    db: AsyncSession,
    state: AppState,
    who: Principal,
    task_id: uuid.UUID,
    action: Callable[..., Awaitable[Task]],
) -> TaskPublic:
    """A control action on a task the caller may see; the loops are woken for what it
    queued or asked to stop."""
    await sessions.get_task(db, task_id, seen_by=who)
    task = await action(db, task_id=task_id, keys=state.keys, actor=who.actor)
    state.notify()
    return await _answer(db, task)


async def _answer(db: AsyncSession, task: Task) -> TaskPublic:
    """The task as a control action answers it (with its dependencies, without spend)."""
    deps = await sessions.dependency_keys(db, task_ids=[task.id])
    return task_public(task, deps.get(task.id, ()))


@router.get("/{task_id}", responses=_ERRORS)
async def get_task(task_id: uuid.UUID, db: DbDep, who: Viewer) -> TaskDetail:
    task = await sessions.get_task(db, task_id, seen_by=who)
    deps = await sessions.dependency_keys(db, task_ids=[task_id])
    attempts = (
        await db.scalars(select(Attempt).where(Attempt.task_id == task_id).order_by(Attempt.number))
    ).all()
    spend = await progress.task_spend(db, task_ids=[task_id])
    public = task_public(task, deps.get(task_id, ()), spend.get(task_id, progress.Spend()))
    return TaskDetail(
        **public.model_dump(),
        prompt=task.prompt,
        spec=shown(task.spec),
        feedback=task.feedback,
        handoff=shown(task.handoff),
        attempts=[AttemptPublic.model_validate(a) for a in attempts],
        reviews=[ReviewPublic.model_validate(r) for r in await reviews.reviews_of(db, task_id)],
        comments=[CommentPublic.model_validate(c) for c in await reviews.comments_of(db, task_id)],
    )


@router.get("/{task_id}/comments", responses=_ERRORS)
async def list_comments(task_id: uuid.UUID, db: DbDep, who: Viewer) -> list[CommentPublic]:
    """What people wrote on the task, oldest first."""
    await sessions.get_task(db, task_id, seen_by=who)
    return [CommentPublic.model_validate(c) for c in await reviews.comments_of(db, task_id)]


@router.post("/{task_id}/comments", status_code=201, responses=_ERRORS)
async def add_comment(
    task_id: uuid.UUID, body: CommentIn, db: DbDep, state: StateDep, who: Operator
) -> CommentAnswer:
    """Comment on a work task. With `request_changes` the task is sent back: its next
    attempt starts from its own last commit with the comment as feedback (409
    `changes_not_requestable`, and nothing kept, when its state does not allow it: merged
    work, a task that has not run yet or runs now, a closed session)."""
    await sessions.get_task(db, task_id, seen_by=who)
    note, task = await reviews.comment(
        db,
        task_id=task_id,
        body=body.body,
        request_changes=body.request_changes,
        keys=state.keys,
        actor=who.actor,
    )
    state.notify()
    return CommentAnswer(comment=CommentPublic.model_validate(note), task=await _answer(db, task))


@router.get(
    "/{task_id}/events",
    response_model=list[EventPublic],
    responses={**_ERRORS, **SSE_RESPONSE},
)
async def task_events(
    task_id: uuid.UUID, db: DbDep, state: StateDep, who: Viewer, query: EventsDep
) -> Any:
    """The task's part of the session timeline, in order: JSON pages, or Server-Sent Events
    with `Accept: text/event-stream` (see the session's events)."""
    task = await sessions.get_task(db, task_id, seen_by=who)
    return await timeline_answer(
        db, state, query, who=who, session_id=task.session_id, task_id=task_id
    )


@router.post("/{task_id}/retry", responses=_ERRORS)
async def retry_task(task_id: uuid.UUID, db: DbDep, state: StateDep, who: Operator) -> TaskPublic:
    """Start a new attempt of a failed or cancelled task; tasks it blocked wait again."""
    return await _act(db, state, who, task_id, control.retry_task)


@router.post("/{task_id}/cancel", responses=_ERRORS)
async def cancel_task(task_id: uuid.UUID, db: DbDep, state: StateDep, who: Operator) -> TaskPublic:
    """Cancel a task that has not ended; its running attempt is asked to stop."""
    return await _act(db, state, who, task_id, control.cancel_task)


@router.post("/{task_id}/approve", responses=_ERRORS)
async def approve_task(task_id: uuid.UUID, db: DbDep, state: StateDep, who: Operator) -> TaskPublic:
    """Accept the work of a task awaiting approval (its spec says `requires_approval`): it
    succeeds, is merged, and its dependents run. Cancel it instead to reject the work."""
    await sessions.get_task(db, task_id, seen_by=who)
    task = await control.approve_task(db, task_id=task_id, actor=who.actor)
    state.background.merge_wake.set()
    return await _answer(db, task)


@router.get(
    "/{task_id}/diff",
    responses={**_ERRORS, 200: {"content": {"text/x-diff": {}}}},
)
async def task_diff(
    task_id: uuid.UUID,
    db: DbDep,
    state: StateDep,
    who: Viewer,
    format: Annotated[Literal["json", "patch"], Query(description="`patch`: plain text")] = "json",
    max_bytes: Annotated[int, Query(ge=1024, le=MAX_DIFF_BYTES)] = 2 * 1024 * 1024,
) -> Response:
    """The task's work against the commit it started from: per-file line counts and the
    patch (cut at `max_bytes`). The newest attempt that committed counts."""
    task = await sessions.get_task(db, task_id, seen_by=who)
    session = await sessions.get_session(db, task.session_id)
    attempt = await db.scalar(
        select(Attempt)
        .where(Attempt.task_id == task_id, Attempt.commit.is_not(None))
        .order_by(Attempt.number.desc())
        .limit(1)
    )
    if attempt is None or attempt.commit is None or attempt.base_commit is None:
        raise NotFound("the task has no committed work yet", code="no_diff")
    diff = await repos.task_diff(
        workspace=state.settings.workspace,
        mirror=session.repo_path,
        base=attempt.base_commit,
        head=attempt.commit,
        max_bytes=max_bytes,
    )
    if format == "patch":
        return PlainTextResponse(diff.patch, media_type="text/x-diff")
    body = DiffPublic(
        task_id=task_id,
        attempt=attempt.number,
        base_commit=attempt.base_commit,
        commit=attempt.commit,
        files=[DiffFile(path=p, additions=a, deletions=d) for p, a, d in diff.files],
        patch=diff.patch,
        truncated=diff.truncated,
    )
    return JSONResponse(body.model_dump(mode="json"))
