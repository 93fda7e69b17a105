"""Sessions and their task graphs: create, add tasks, read with counts.

Service functions take the caller's `AsyncSession`, do their writes in one transaction and
commit it; on any error nothing is stored.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from collections import defaultdict
from collections.abc import Collection, Sequence
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common.settings import strip_credentials
from swarm_common.specs import TaskSpec
from swarm_common.streams import Keys
from swarm_orchestrator.access.tokens import Principal
from swarm_orchestrator.api.schemas import SessionCreate
from swarm_orchestrator.db.models import Session, Task, TaskDependency
from swarm_orchestrator.errors import NotFound
from swarm_orchestrator.graph import scheduler, session_state, task_state
from swarm_orchestrator.graph.locking import lock_open_session
from swarm_orchestrator.graph.validation import validate_graph
from swarm_orchestrator.integration import repos

__all__ = [
    "add_tasks",
    "create_session",
    "dependency_keys",
    "get_session",
    "get_task",
    "session_counts",
]

log = logging.getLogger(__name__)


async def create_session(
    db: AsyncSession,
    *,
    data: SessionCreate,
    workspace: Path,
    keys: Keys,
    max_tasks: int,
    git_timeout_s: float,
    actor: str = "api",
    tenant: str | None = None,
) -> tuple[Session, bool]:
    """Create a session (mirror its repository, store its optional graph, queue what is
    ready). Returns the session and whether it is new; a known `idempotency_key` (of the same
    tenant) returns the session made by the first request."""
    if data.idempotency_key:
        existing = await _by_idempotency_key(db, data.idempotency_key, tenant)
        if existing is not None:
            return existing, False
    repo = repos.check_repo(data.repo)
    repos.check_ref(data.base_ref)
    if data.target_branch is not None:
        repos.check_branch(data.target_branch)
    ordered = validate_graph(data.tasks, max_tasks=max_tasks) if data.tasks else []
    await db.rollback()  # no transaction stays open while git clones

    session_id = uuid.uuid4()
    mirror = await repos.create_mirror(
        workspace=workspace,
        session_id=session_id,
        repo=repo,
        base_ref=data.base_ref,
        integration_branch=scheduler.integration_branch(session_id),
        timeout_s=git_timeout_s,
    )
    try:
        await asyncio.to_thread(
            repos.copy_setup_files,
            workspace=workspace,
            session_id=session_id,
            repo=repo,
            files=data.settings.setup.files,
        )
        session = await _store(
            db, data, session_id=session_id, repo=repo, mirror=mirror, tenant=tenant, actor=actor
        )
        if ordered:
            await _insert_tasks(db, session=session, specs=ordered, existing={}, actor=actor)
            await scheduler.queue_ready(db, session=session, keys=keys)
        await db.commit()
    except BaseException as exc:
        await db.rollback()
        await _discard(workspace, session_id, mirror.path)
        if isinstance(exc, IntegrityError) and data.idempotency_key:
            # The same key won a race meanwhile: its session is the answer.
            existing = await _by_idempotency_key(db, data.idempotency_key, tenant)
            if existing is not None:
                return existing, False
        raise
    log.info("session created", extra={"session_id": str(session_id), "tasks": len(ordered)})
    return session, True


async def _store(
    db: AsyncSession,
    data: SessionCreate,
    *,
    session_id: uuid.UUID,
    repo: str,
    mirror: repos.Mirror,
    tenant: str | None,
    actor: str,
) -> Session:
    return await session_state.create(
        db,
        has_tasks=bool(data.tasks),
        actor=actor,
        data={
            "repo": strip_credentials(repo),
            "base_ref": data.base_ref,
            "base_commit": mirror.base_commit,
        },
        id=session_id,
        title=data.title,
        goal=data.goal,
        repo=strip_credentials(repo),
        repo_path=mirror.path,
        base_ref=data.base_ref,
        base_commit=mirror.base_commit,
        integration_head=mirror.base_commit,
        target_branch=data.target_branch,
        settings=data.settings.model_dump(mode="json", exclude_unset=True),
        idempotency_key=data.idempotency_key,
        tenant=tenant,
    )


async def _discard(workspace: Path, session_id: uuid.UUID, mirror: str) -> None:
    await repos.remove_mirror(workspace=workspace, path=mirror)
    await asyncio.to_thread(shutil.rmtree, repos.setup_dir(workspace, session_id), True)


async def _by_idempotency_key(db: AsyncSession, key: str, tenant: str | None) -> Session | None:
    return await db.scalar(
        select(Session).where(
            Session.idempotency_key == key, func.coalesce(Session.tenant, "") == (tenant or "")
        )
    )


async def add_tasks(
    db: AsyncSession,
    *,
    session_id: uuid.UUID,
    specs: Sequence[TaskSpec],
    keys: Keys,
    max_tasks: int,
    max_session_tasks: int,
    actor: str = "api",
) -> list[Task]:
    """Add a task graph to a session in one transaction; new tasks may depend on tasks the
    session already holds."""
    session = await lock_open_session(db, session_id)
    existing = dict(
        (await db.execute(select(Task.key, Task.id).where(Task.session_id == session_id))).all()
    )
    ordered = validate_graph(
        specs, existing_keys=existing.keys(), max_tasks=max_tasks, max_total=max_session_tasks
    )
    task_ids = await _insert_tasks(
        db, session=session, specs=ordered, existing=existing, actor=actor
    )
    session_state.activate(db, session, actor=actor)
    await task_state.block_downstream(db, session_id=session_id)
    await scheduler.queue_ready(db, session=session, keys=keys)
    await session_state.finish_or_reopen(db, session)
    await db.commit()
    tasks = (await db.scalars(select(Task).where(Task.id.in_(task_ids)))).all()
    order = {task_id: i for i, task_id in enumerate(task_ids)}
    return sorted(tasks, key=lambda t: order[t.id])


async def _insert_tasks(
    db: AsyncSession,
    *,
    session: Session,
    specs: Sequence[TaskSpec],
    existing: dict[str, uuid.UUID],
    actor: str,
) -> list[uuid.UUID]:
    new = [task_state.NewTask(spec=spec) for spec in specs]
    ids = {**existing, **{t.spec.key: t.id for t in new}}
    await task_state.create_tasks(db, session_id=session.id, tasks=new, ids=ids, actor=actor)
    return [t.id for t in new]


async def get_session(
    db: AsyncSession, session_id: uuid.UUID, *, seen_by: Principal | None = None
) -> Session:
    """The session; with `seen_by`, only if that principal may see it (another tenant's
    session is not found, so its existence is not told either)."""
    session = await db.get(Session, session_id)
    if session is None or (seen_by is not None and not seen_by.can_see(session.tenant)):
        raise NotFound(f"session {session_id} not found", code="session_not_found")
    return session


async def get_task(
    db: AsyncSession, task_id: uuid.UUID, *, seen_by: Principal | None = None
) -> Task:
    """The task; with `seen_by`, only if that principal may see its session."""
    task = await db.get(Task, task_id)
    if task is not None and seen_by is not None and seen_by.tenant is not None:
        tenant = await db.scalar(select(Session.tenant).where(Session.id == task.session_id))
        if not seen_by.can_see(tenant):
            task = None
    if task is None:
        raise NotFound(f"task {task_id} not found", code="task_not_found")
    return task


async def session_counts(
    db: AsyncSession, session_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, dict[str, int]]:
    """Tasks by status for each session."""
    counts: dict[uuid.UUID, dict[str, int]] = defaultdict(dict)
    if session_ids:
        rows = await db.execute(
            select(Task.session_id, Task.status, func.count())
            .where(Task.session_id.in_(list(session_ids)))
            .group_by(Task.session_id, Task.status)
        )
        for session_id, status, n in rows:
            counts[session_id][status] = n
    return counts


async def dependency_keys(
    db: AsyncSession,
    *,
    task_ids: Collection[uuid.UUID] | None = None,
    session_id: uuid.UUID | None = None,
) -> dict[uuid.UUID, list[str]]:
    """The keys each task depends on, for some tasks or for a whole session."""
    result: dict[uuid.UUID, list[str]] = defaultdict(list)
    parent = Task.__table__.alias("parent")
    stmt = (
        select(TaskDependency.task_id, parent.c.key)
        .join(parent, parent.c.id == TaskDependency.depends_on_id)
        .order_by(parent.c.key)
    )
    if session_id is not None:
        stmt = stmt.where(parent.c.session_id == session_id)
    elif task_ids:
        stmt = stmt.where(TaskDependency.task_id.in_(list(task_ids)))
    else:
        return result
    rows = await db.execute(stmt)
    for task_id, key in rows:
        result[task_id].append(key)
    return result
