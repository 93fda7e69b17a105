"""`/v1/sessions`: create and list sessions, add and list their tasks, read the timeline,
checkpoints and rollback of the integration branch, a dry run's report, finish and archive
sessions."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common.specs import TaskSpec
from swarm_common.states import SessionStatus, TaskStatus
from swarm_orchestrator.access.tokens import Principal
from swarm_orchestrator.api.convert import session_public, tasks_response
from swarm_orchestrator.api.deps import AppState, DbDep, StateDep
from swarm_orchestrator.api.limits import GraphRoute
from swarm_orchestrator.api.schemas import (
    MAX_INT,
    CheckpointPublic,
    DryRunPublic,
    DryRunTask,
    EventPublic,
    RollbackPublic,
    RollbackRequest,
    SessionCreate,
    SessionProgress,
    SessionPublic,
    TaskPublic,
    error_responses,
)
from swarm_orchestrator.api.security import Operator, Viewer
from swarm_orchestrator.api.stream import SSE_RESPONSE, EventsDep, timeline_answer
from swarm_orchestrator.db import timeline
from swarm_orchestrator.db.models import Checkpoint, Session, Task
from swarm_orchestrator.errors import NotFound
from swarm_orchestrator.graph import control, export, progress, sessions
from swarm_orchestrator.graph.scheduler import integration_branch
from swarm_orchestrator.integration import checkpoints, dry_run
from swarm_orchestrator.integration.repo_policy import RepoPolicy
from swarm_orchestrator.integration.rollback import rollback as roll_back

# A POST here may carry a task graph: `GraphRoute` counts its edges before it is parsed.
router = APIRouter(prefix="/v1/sessions", tags=["sessions"], route_class=GraphRoute)

_ERRORS = error_responses(404, 409)


async def _act(
    db: AsyncSession,
    state: AppState,
    who: Principal,
    session_id: uuid.UUID,
    action: Callable[..., Awaitable[Session]],
) -> SessionPublic:
    """A control action on a session the caller may see; the loops are woken for what it
    queued or asked to stop."""
    await sessions.get_session(db, session_id, seen_by=who)
    session = await action(db, session_id=session_id, keys=state.keys, actor=who.actor)
    state.notify()
    return await _answer(db, session)


async def _answer(db: AsyncSession, session: Session) -> SessionPublic:
    """The session as the API shows it, with its task counts."""
    counts = await sessions.session_counts(db, [session.id])
    return session_public(session, counts.get(session.id, {}))


@router.post("", status_code=201, responses=_ERRORS)
async def create_session(
    body: SessionCreate, db: DbDep, state: StateDep, who: Operator, response: Response
) -> SessionPublic:
    """Create a session on a repository, optionally with its task graph. A repeated
    `idempotency_key` returns the first session (200) instead of making another."""
    s = state.settings
    session, created = await sessions.create_session(
        db,
        data=body,
        workspace=s.workspace,
        keys=state.keys,
        max_tasks=s.max_graph_tasks,
        max_edges=s.max_graph_edges,
        git_timeout_s=s.git_timeout_s,
        policy=RepoPolicy.from_settings(s),
        actor=who.actor,
        tenant=who.tenant,
    )
    if not created:
        response.status_code = 200
    state.notify()
    state.background.sweep_wake.set()  # the ready tasks it did not queue
    return await _answer(db, session)


@router.get("", responses=_ERRORS)
async def list_sessions(
    db: DbDep,
    who: Viewer,
    status: SessionStatus | None = None,
    archived: Annotated[
        bool, Query(description="List the archived sessions (only them) instead.")
    ] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> list[SessionPublic]:
    """Sessions, newest first, with task counts; archived ones only with `archived=true`."""
    stmt = select(Session).order_by(Session.created_at.desc(), Session.id).limit(limit)
    stmt = stmt.where(
        Session.archived_at.is_not(None) if archived else Session.archived_at.is_(None)
    )
    if status is not None:
        stmt = stmt.where(Session.status == status)
    if who.tenant is not None:
        stmt = stmt.where(Session.tenant == who.tenant)
    rows = (await db.scalars(stmt.offset(offset))).all()
    counts = await sessions.session_counts(db, [r.id for r in rows])
    return [session_public(r, counts.get(r.id, {})) for r in rows]


@router.get("/{session_id}", responses=_ERRORS)
async def get_session(session_id: uuid.UUID, db: DbDep, who: Viewer) -> SessionPublic:
    session = await sessions.get_session(db, session_id, seen_by=who)
    return await _answer(db, session)


@router.post(
    "/{session_id}/tasks", status_code=201, response_model=list[TaskPublic], responses=_ERRORS
)
async def add_tasks(
    session_id: uuid.UUID,
    body: Annotated[list[TaskSpec], Body()],
    db: DbDep,
    state: StateDep,
    who: Operator,
    reopen: Annotated[
        bool,
        Query(description="Run a finalized session again with these tasks (409 without)."),
    ] = False,
) -> StreamingResponse:
    """Add a task graph (a JSON array of tasks) in one transaction; nothing is stored when
    any task is invalid, a key repeats, a dependency is unknown, the graph has a cycle, or
    it holds too many tasks or dependency edges (for one request, or for the session). A
    session that settled (awaiting review with no conflict) runs again; a finalized one only
    with `reopen=true` (409 `session_finalized` otherwise)."""
    await sessions.get_session(db, session_id, seen_by=who)
    s = state.settings
    added = await sessions.add_tasks(
        db,
        session_id=session_id,
        specs=body,
        keys=state.keys,
        max_tasks=s.max_graph_tasks,
        max_session_tasks=s.max_session_tasks,
        max_edges=s.max_graph_edges,
        max_session_edges=s.max_session_edges,
        actor=who.actor,
        reopen=reopen,
        committed=state.notify,
    )
    if added.more_ready:
        state.background.sweep_wake.set()
    by_key = {spec.key: spec.depends_on for spec in body}
    deps = {t.id: by_key.get(t.key, []) for t in added.tasks}
    return await tasks_response(added.tasks, deps, status_code=201)


@router.get("/{session_id}/graph", responses=_ERRORS)
async def export_graph(
    session_id: uuid.UUID,
    db: DbDep,
    who: Viewer,
    status: Annotated[
        list[TaskStatus] | None,
        Query(max_length=20, description="Only tasks in these states (repeat the parameter)."),
    ] = None,
) -> dict[str, Any]:
    """The session as a task graph file: `POST /v1/sessions` with it makes the same graph
    (each task's `status`, `merge_status` and `result` are read-only and ignored there)."""
    session = await sessions.get_session(db, session_id, seen_by=who)
    statuses = frozenset(s.value for s in status) if status else None
    return await export.export_graph(db, session, statuses=statuses)


@router.get("/{session_id}/tasks", response_model=list[TaskPublic], responses=_ERRORS)
async def list_tasks(
    session_id: uuid.UUID,
    db: DbDep,
    who: Viewer,
    status: TaskStatus | None = None,
    id: Annotated[
        list[uuid.UUID] | None,
        Query(max_length=500, description="Only these tasks (repeat the parameter)."),
    ] = None,
    kind: Annotated[
        Literal["work", "plan", "review", "race"],
        Query(
            description="`plan`: the planning agent's runs, `review`: reviewers' runs, "
            "`race`: best-of-N contenders, instead of the graph's tasks."
        ),
    ] = "work",
    limit: Annotated[int, Query(ge=1, le=20_000)] = 10_000,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> StreamingResponse:
    """The session's tasks, with their dependencies and what their agents spent."""
    await sessions.get_session(db, session_id, seen_by=who)
    where = [Task.session_id == session_id, Task.kind == kind]
    if status is not None:
        where.append(Task.status == status)
    if id is not None:
        where.append(Task.id.in_(id))
    rows = await sessions.task_rows(db, *where, limit=limit, offset=offset)
    if id is not None:
        ids = [r.id for r in rows]
        deps = await sessions.dependency_keys(db, task_ids=ids)
        spend = await progress.task_spend(db, task_ids=ids)
    else:
        deps = await sessions.dependency_keys(db, session_id=session_id)
        spend = await progress.task_spend(db, session_id=session_id)
    return await tasks_response(rows, deps, spend)


@router.get("/{session_id}/progress", responses=_ERRORS)
async def session_progress(session_id: uuid.UUID, db: DbDep, who: Viewer) -> SessionProgress:
    """Done / total, elapsed time, an estimate of the time left, and the tokens and cost of
    the session's agents."""
    session = await sessions.get_session(db, session_id, seen_by=who)
    last = await timeline.last_settled(db, session_id=session_id)  # before the counts
    p = await progress.session_progress(db, session)
    return SessionProgress(
        session_id=session.id,
        status=session.status,
        total=p.total,
        ended=p.ended,
        percent=p.percent,
        counts=p.counts,
        running=p.counts.get(TaskStatus.RUNNING, 0),
        queued=p.counts.get(TaskStatus.QUEUED, 0),
        created_at=session.created_at,
        started_at=p.started_at,
        finished_at=session.finished_at,
        elapsed_s=p.elapsed_s,
        eta_s=p.eta_s,
        mean_task_s=p.mean_task_s,
        usage=p.spend.usage,
        tokens=p.spend.tokens,
        cost_usd=p.spend.cost_usd,
        last_event_id=last,
    )


@router.post("/{session_id}/pause", responses=_ERRORS)
async def pause_session(session_id: uuid.UUID, db: DbDep, who: Operator) -> SessionPublic:
    """Queue no new task until `resume` (the session shows `suspended`); queued and running
    attempts finish. Pausing a paused session changes nothing."""
    await sessions.get_session(db, session_id, seen_by=who)
    session = await control.pause_session(db, session_id=session_id, actor=who.actor)
    return await _answer(db, session)


@router.post("/{session_id}/resume", responses=_ERRORS)
async def resume_session(
    session_id: uuid.UUID, db: DbDep, state: StateDep, who: Operator
) -> SessionPublic:
    """Queue the paused session's ready tasks again. Resuming a running session changes
    nothing."""
    return await _act(db, state, who, session_id, control.resume_session)


@router.post("/{session_id}/cancel", responses=_ERRORS)
async def cancel_session(
    session_id: uuid.UUID, db: DbDep, state: StateDep, who: Operator
) -> SessionPublic:
    """Cancel the session and every task of it that has not ended (running ones are asked
    to stop, work waiting to merge is abandoned). The answer is `cancelled` at once; in a
    large session, tasks that can no longer start are cancelled in the background after it
    (its counts show how many are left; the timeline's `session.cancel_completed` says when
    they are all cancelled). Cancelling a cancelled session changes nothing."""
    answer = await _act(db, state, who, session_id, control.cancel_session)
    state.background.cancel_wake.set()
    return answer


@router.post("/{session_id}/finish", responses={**_ERRORS, 202: {"model": SessionPublic}})
async def finish_session(
    session_id: uuid.UUID, db: DbDep, state: StateDep, who: Operator, response: Response
) -> SessionPublic:
    """Settle a session whose tasks have all ended, failed ones too (409
    `session_not_settled` while some have not): it is `finalized` (200), or, when it takes
    final checkpoints and no checkpoint of its integration head passed, a final checkpoint
    is taken first (202; the session is finalized when it passes, and waits for review when
    it fails; finishing again then accepts the failure). Finishing a finalized session
    changes nothing; a cancelled one is 409 `session_closed`."""
    await sessions.get_session(db, session_id, seen_by=who)
    session, checkpoint = await control.finish_session(db, session_id=session_id, actor=who.actor)
    if checkpoint is not None:
        response.status_code = 202
        state.background.checkpoint_wake.set()
    return await _answer(db, session)


@router.post("/{session_id}/archive", responses=_ERRORS)
async def archive_session(session_id: uuid.UUID, db: DbDep, who: Operator) -> SessionPublic:
    """Leave the session out of `GET /v1/sessions` (`?archived=true` lists it); it is kept
    in full and still read by its id. Archiving an archived session changes nothing."""
    return await _archive(db, who, session_id, archived=True)


@router.post("/{session_id}/unarchive", responses=_ERRORS)
async def unarchive_session(session_id: uuid.UUID, db: DbDep, who: Operator) -> SessionPublic:
    """List the archived session again. Unarchiving a listed session changes nothing."""
    return await _archive(db, who, session_id, archived=False)


async def _archive(
    db: AsyncSession, who: Principal, session_id: uuid.UUID, *, archived: bool
) -> SessionPublic:
    await sessions.get_session(db, session_id, seen_by=who)
    session = await control.archive_session(
        db, session_id=session_id, actor=who.actor, archived=archived
    )
    return await _answer(db, session)


@router.get(
    "/{session_id}/events",
    response_model=list[EventPublic],
    responses={**_ERRORS, **SSE_RESPONSE},
)
async def session_events(
    session_id: uuid.UUID, db: DbDep, state: StateDep, who: Viewer, query: EventsDep
) -> Any:
    """The session timeline in order: JSON pages (`after` = the last id seen), or, with
    `Accept: text/event-stream`, Server-Sent Events that replay every entry after
    `Last-Event-ID` (or `after`) exactly once and then follow live."""
    await sessions.get_session(db, session_id, seen_by=who)
    return await timeline_answer(db, state, query, who=who, session_id=session_id)


@router.post("/{session_id}/checkpoints", status_code=202, responses=_ERRORS)
async def create_checkpoint(
    session_id: uuid.UUID, db: DbDep, state: StateDep, who: Operator
) -> CheckpointPublic:
    """Check the integration branch as it stands: its quality gates run in the background;
    if they pass, the target branch is fast-forwarded and `swarm/<session>/checkpoint-N` is
    tagged. Poll `GET .../checkpoints/{number}` (or watch the timeline) for the outcome."""
    await sessions.get_session(db, session_id, seen_by=who)
    checkpoint = await checkpoints.request(db, session_id=session_id, actor=who.actor)
    state.background.checkpoint_wake.set()
    return CheckpointPublic.model_validate(checkpoint)


@router.get("/{session_id}/checkpoints", responses=_ERRORS)
async def list_checkpoints(session_id: uuid.UUID, db: DbDep, who: Viewer) -> list[CheckpointPublic]:
    await sessions.get_session(db, session_id, seen_by=who)
    rows = (
        await db.scalars(
            select(Checkpoint)
            .where(Checkpoint.session_id == session_id)
            .order_by(Checkpoint.number)
        )
    ).all()
    return [CheckpointPublic.model_validate(r) for r in rows]


@router.get("/{session_id}/checkpoints/{number}", responses=_ERRORS)
async def get_checkpoint(
    session_id: uuid.UUID,
    number: Annotated[int, Path(ge=1, le=2**31 - 1)],
    db: DbDep,
    who: Viewer,
) -> CheckpointPublic:
    await sessions.get_session(db, session_id, seen_by=who)
    checkpoint = await db.scalar(
        select(Checkpoint).where(Checkpoint.session_id == session_id, Checkpoint.number == number)
    )
    if checkpoint is None:
        raise NotFound(f"checkpoint {number} not found", code="checkpoint_not_found")
    return CheckpointPublic.model_validate(checkpoint)


@router.post("/{session_id}/rollback", responses=_ERRORS)
async def rollback(
    session_id: uuid.UUID,
    db: DbDep,
    state: StateDep,
    who: Operator,
    body: Annotated[RollbackRequest | None, Body()] = None,
) -> RollbackPublic:
    """Reset the integration branch to a passed checkpoint (the newest when none is named).
    Tasks whose merges are undone show `merge_status` `rolled_back`; tasks that start later
    build on the checkpoint; tasks in flight are restarted from it."""
    await sessions.get_session(db, session_id, seen_by=who)
    session, checkpoint, rolled = await roll_back(
        db,
        session_id=session_id,
        number=body.checkpoint if body is not None else None,
        workspace=state.settings.workspace,
        keys=state.keys,
        actor=who.actor,
    )
    state.notify()
    return RollbackPublic(
        session_id=session_id,
        checkpoint=checkpoint.number,
        integration_head=checkpoint.commit,
        rolled_back=rolled,
    )


@router.get("/{session_id}/dry-run", responses=_ERRORS)
async def dry_run_report(session_id: uuid.UUID, db: DbDep, who: Viewer) -> DryRunPublic:
    """What each task of a dry run (`settings.dry_run`) would have merged: its commit and
    base, the files it changes with their lines, whether it merges cleanly after the tasks
    before it (and the conflicting files when not), and the policies it crosses. The
    integration and target branches are where they were. A session that is not a dry run
    answers `dry_run: false` and no tasks."""
    session = await sessions.get_session(db, session_id, seen_by=who)
    answer = DryRunPublic(
        session_id=session.id,
        dry_run=bool((session.settings or {}).get("dry_run")),
        status=session.status,
        base_commit=session.base_commit,
        integration_branch=integration_branch(session.id),
        integration_head=session.integration_head,
        target_branch=session.target_branch,
    )
    if not answer.dry_run:
        return answer
    tasks = [
        DryRunTask(
            id=t.id,
            key=t.key,
            title=t.title,
            status=t.status,
            merge_status=t.merge_status,
            would_merge=t.would_merge,
        )
        for t in await dry_run.report(db, session)
    ]
    reports = [t.would_merge for t in tasks if t.would_merge]
    stats = [r.get("diffstat") or {} for r in reports]
    return answer.model_copy(
        update={
            "dry_run_branch": dry_run.branch(session.id),
            "dry_run_head": session.dry_run_head,
            "tasks": tasks,
            "summary": {
                "tasks": len(reports),
                "clean": sum(1 for r in reports if r.get("clean")),
                "conflicted": sum(1 for r in reports if not r.get("clean")),
                "files": sum(int(d.get("files", 0)) for d in stats),
                "added": sum(int(d.get("added", 0)) for d in stats),
                "deleted": sum(int(d.get("deleted", 0)) for d in stats),
            },
        }
    )
