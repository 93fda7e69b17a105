"""Sessions and their task graphs: create, add tasks, read with counts.

Service functions take the caller's `AsyncSession`, do their writes in one transaction and
commit it; on any error nothing is stored.

A graph of ten thousand tasks is stored in a few bulk statements (`db.bulk`), and the
request queues at most `QUEUE_IN_REQUEST` of its ready tasks (the first by priority):
queueing costs far more than storing (an attempt, a task message and a timeline entry
each), and only so many tasks can start at once anyway. The scheduler's sweep queues the
others, a chunk a transaction (`scheduler.sweep`). Adding to a session reads and checks
only what the new tasks name, so its cost does not grow with the session.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, func, literal, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common.settings import strip_credentials
from swarm_common.specs import TaskSpec
from swarm_common.states import SessionStatus, TaskStatus
from swarm_common.streams import Keys
from swarm_orchestrator.access.tokens import Principal
from swarm_orchestrator.api.schemas import SessionCreate
from swarm_orchestrator.db.bulk import any_of
from swarm_orchestrator.db.models import Session, Task, TaskDependency
from swarm_orchestrator.errors import Conflict, NotFound
from swarm_orchestrator.graph import scheduler, session_state, task_state
from swarm_orchestrator.graph.locking import lock_session, require_open
from swarm_orchestrator.graph.validation import validate_graph
from swarm_orchestrator.integration import repos
from swarm_orchestrator.integration.repo_policy import RepoPolicy
from swarm_orchestrator.planning import plans
from swarm_orchestrator.planning.plans import PlanLimits, describe_repository

__all__ = [
    "LISTED_COLUMNS",
    "QUEUE_IN_REQUEST",
    "READ_PARTITION",
    "Added",
    "add_tasks",
    "create_session",
    "dependency_keys",
    "get_session",
    "get_task",
    "session_counts",
    "task_rows",
]

log = logging.getLogger(__name__)

READ_PARTITION = 500
"""Rows `task_rows` takes at once (a few milliseconds of the event loop)."""
QUEUE_IN_REQUEST = scheduler.QUEUE_IN_REQUEST
LISTED_COLUMNS = [
    c
    for c in Task.__table__.c
    if c.key not in {"prompt", "spec", "feedback", "handoff", "would_merge"}
]
"""What a list of tasks shows of each (its prompt, spec and a dry run's report are read one
task at a time)."""


async def create_session(
    db: AsyncSession,
    *,
    data: SessionCreate,
    workspace: Path,
    keys: Keys,
    max_tasks: int,
    git_timeout_s: float,
    policy: RepoPolicy,
    max_edges: int | None = None,
    actor: str = "api",
    tenant: str | None = None,
    plan_limits: PlanLimits | None = None,
) -> tuple[Session, bool]:
    """Create a session (mirror its repository, store its optional graph, queue what is
    ready; or, with `plan`, start planning its goal). Returns the session and whether it is
    new; a known `idempotency_key` (of the same tenant) returns the session made by the
    first request. `repo` must pass `policy` for `tenant`."""
    if data.idempotency_key:
        existing = await _by_idempotency_key(db, data.idempotency_key, tenant)
        if existing is not None:
            return existing, False
    source = policy.check(data.repo, tenant=tenant)
    repo = data.repo
    repos.check_ref(data.base_ref)
    if data.target_branch is not None:
        repos.check_branch(data.target_branch)
    ordered = (
        await _validated(data.tasks, max_tasks=max_tasks, max_edges=max_edges) if data.tasks else []
    )
    await db.rollback()  # no transaction stays open while git clones

    session_id = uuid.uuid4()
    mirror = await repos.create_mirror(
        workspace=workspace,
        session_id=session_id,
        source=source,
        public=strip_credentials(repo),
        env=policy.git_env(),
        base_ref=data.base_ref,
        integration_branch=scheduler.integration_branch(session_id),
        timeout_s=git_timeout_s,
    )
    try:
        await asyncio.to_thread(
            repos.copy_setup_files,
            workspace=workspace,
            session_id=session_id,
            source=source,
            files=data.settings.setup.files,
        )
        session = await _store(
            db, data, session_id=session_id, repo=repo, mirror=mirror, tenant=tenant, actor=actor
        )
        if ordered:
            await _insert_tasks(db, session=session, specs=ordered, existing={}, actor=actor)
            await _queue_ready(db, session=session, keys=keys)
        elif data.plan:
            await plans.plan(
                db,
                session,
                keys=keys,
                limits=plan_limits or PlanLimits(max_tasks=max_tasks, max_edges=max_edges),
                actor=actor,
                inventory=await describe_repository(
                    workspace, mirror.path, mirror.base_commit, name=data.title
                ),
            )
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
        auto_approve=data.auto_approve,
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
    max_edges: int | None = None,
    max_session_edges: int | None = None,
    actor: str = "api",
    reopen: bool = False,
    committed: Callable[[], None] = lambda: None,
) -> Added:
    """Add a task graph to a session in one transaction; new tasks may depend on tasks the
    session already holds. A session that had settled runs again; a finalized one only with
    `reopen` (409 `session_finalized` otherwise). `committed` is called as soon as the
    transaction has committed (the API wakes the relay there: the tasks it queued go out
    while their rows are read back for the answer).

    The request queues its own new tasks that are ready (the first `QUEUE_IN_REQUEST` by
    priority), or, when the session was a draft or had settled, any of the session's; a
    session of many thousand pending tasks is not searched for ready ones on every
    request. `Added.more_ready` says the scheduler's sweep has more to queue."""
    session = await _lock_for_tasks(db, session_id, reopen=reopen)
    known = await _known(db, session_id, specs)
    ordered = await _validated(
        specs,
        existing_keys=known.ids.keys(),
        existing_count=session.task_count,
        max_tasks=max_tasks,
        max_total=max_session_tasks,
        max_edges=max_edges,
        existing_edges=session.edge_count,
        max_total_edges=max_session_edges,
    )
    task_ids = await _insert_tasks(
        db, session=session, specs=ordered, existing=known.ids, actor=actor
    )
    was_draft = session.status == SessionStatus.DRAFT
    session_state.activate(db, session, actor=actor)
    woke = await session_state.reopen(db, session, actor=actor) or was_draft
    if known.ended_badly:  # only a new task under a failed one can be blocked
        await task_state.block_downstream(db, session_id=session_id)
    queued = await _queue_ready(db, session=session, keys=keys, only=None if woke else task_ids)
    await session_state.tasks_added(db, session)
    await db.commit()
    committed()
    tasks = await task_rows(db, Task.id.in_(task_ids))
    order = {task_id: i for i, task_id in enumerate(task_ids)}
    return Added(
        tasks=sorted(tasks, key=lambda t: order[t.id]),
        more_ready=woke or queued == QUEUE_IN_REQUEST,
    )


@dataclass(frozen=True)
class Added:
    """What `add_tasks` stored."""

    tasks: list[Row[Any]]
    """The new tasks as `task_rows` reads them, in the order they were stored (parents
    first)."""
    more_ready: bool
    """Ready tasks may be left for the scheduler's sweep to queue."""


async def _queue_ready(
    db: AsyncSession, *, session: Session, keys: Keys, only: Collection[uuid.UUID] | None = None
) -> int:
    """Queue the first `QUEUE_IN_REQUEST` ready tasks of the session (of `only`), by
    priority; the scheduler's next pass queues the rest. Returns how many were queued."""
    queued = await scheduler.queue_ready(
        db, session=session, keys=keys, only=only, limit=QUEUE_IN_REQUEST
    )
    if len(queued) == QUEUE_IN_REQUEST:
        log.info(
            "the ready tasks of a large graph are queued in part",
            extra={"session_id": str(session.id), "queued": len(queued)},
        )
    return len(queued)


async def _lock_for_tasks(db: AsyncSession, session_id: uuid.UUID, *, reopen: bool) -> Session:
    """Lock a session that may take new tasks: an open one, or a finalized one that is to
    be reopened."""
    session = await lock_session(db, session_id)
    if session is not None and session.status == SessionStatus.FINALIZED:
        if not reopen:
            raise Conflict(
                "the session is finalized: add the tasks with reopen=true to run it again",
                code="session_finalized",
            )
        return session
    return require_open(session, session_id)


@dataclass(frozen=True)
class _Known:
    """What an addition to a session is checked against (read under the session's lock;
    how many tasks and edges it holds is on its row: `Session.task_count`)."""

    ids: dict[str, uuid.UUID]
    """The session's tasks whose keys the new graph uses (as its own keys or dependencies)."""
    ended_badly: bool
    """Whether a task of `ids` failed, was cancelled or is blocked."""


async def _known(db: AsyncSession, session_id: uuid.UUID, specs: Sequence[TaskSpec]) -> _Known:
    """The session's tasks the new graph names: one probe of the key index a name, whatever
    the session's size (not a read of all its keys)."""
    named = {s.key for s in specs}.union(*(s.depends_on for s in specs))
    found = select(func.json_agg(func.json_build_array(Task.key, Task.id, Task.status))).where(
        Task.session_id == session_id, any_of(Task.key, named)
    )
    rows = await db.scalar(found) or []
    return _Known(
        ids={key: uuid.UUID(task_id) for key, task_id, _ in rows},
        ended_badly=any(status in _BLOCKING for _, _, status in rows),
    )


_BLOCKING = frozenset({TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.BLOCKED})
"""A new task that depends on a task in one of these states is blocked at once."""

VALIDATE_IN_LOOP = 100
"""Graphs up to this many tasks are checked on the event loop (in a fraction of a
millisecond: 500 tasks take about 1.6 ms here); larger ones in a worker thread."""


async def _validated(specs: Sequence[TaskSpec], **limits: Any) -> list[TaskSpec]:
    """`validate_graph`; in a worker thread for a large graph, which takes a while to check
    while the event loop serves every other request."""
    if len(specs) <= VALIDATE_IN_LOOP:
        return validate_graph(specs, **limits)
    return await asyncio.to_thread(validate_graph, specs, **limits)


async def task_rows(
    db: AsyncSession, *where: ColumnElement[bool], limit: int | None = None, offset: int = 0
) -> list[Row[Any]]:
    """The tasks that match `where` in the order they were created, as plain rows of
    `LISTED_COLUMNS`, fetched a partition at a time. A session holds up to 20,000 tasks:
    read as ORM objects they would take seconds of the event loop in one piece (and leave
    the garbage collector that much more to walk); rows in partitions take a fraction, in
    slices between which the loop serves other requests."""
    stmt = (
        select(*LISTED_COLUMNS)
        .where(*where)
        .order_by(Task.created_at, Task.key)
        .limit(limit)
        .offset(offset)
    )
    rows: list[Row[Any]] = []
    async for partition in _partitions(db, stmt):
        rows.extend(partition)
    return rows


async def _partitions(db: AsyncSession, stmt: Select[Any]) -> AsyncIterator[Sequence[Row[Any]]]:
    """The rows of `stmt`, `READ_PARTITION` at a time (a server-side cursor)."""
    result = await db.stream(stmt.execution_options(yield_per=READ_PARTITION))
    async for partition in result.partitions():
        yield partition


async def _insert_tasks(
    db: AsyncSession,
    *,
    session: Session,
    specs: Sequence[TaskSpec],
    existing: dict[str, uuid.UUID],
    actor: str,
) -> list[uuid.UUID]:
    return await task_state.create_graph(
        db,
        session=session,
        specs=specs,
        existing=existing,
        actor=actor,
    )


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
    """Tasks of the graph (not the planner's runs) by status for each session."""
    counts: dict[uuid.UUID, dict[str, int]] = defaultdict(dict)
    if session_ids:
        rows = await db.execute(
            select(Task.session_id, Task.status, func.count())
            .where(Task.session_id.in_(list(session_ids)), Task.kind == "work")
            .group_by(Task.session_id, Task.status)
        )
        for session_id, status, n in rows:
            counts[session_id][status] = n
    return counts


_PARENT = Task.__table__.alias("parent")
_DEPENDENCY_KEYS = (
    select(
        TaskDependency.task_id,
        func.string_agg(_PARENT.c.key, aggregate_order_by(literal(","), _PARENT.c.key)).label(
            "parents"
        ),
    )
    .join(_PARENT, _PARENT.c.id == TaskDependency.depends_on_id)
    .group_by(TaskDependency.task_id)
)
"""`dependency_keys`' statement without its filter: built once (an alias's columns cost far
more to set up than the query takes to run for one task)."""


async def dependency_keys(
    db: AsyncSession,
    *,
    task_ids: Collection[uuid.UUID] | None = None,
    session_id: uuid.UUID | None = None,
) -> dict[uuid.UUID, list[str]]:
    """The keys each task depends on, for some tasks or for a whole session. PostgreSQL
    joins each task's keys with commas (which no key holds): one short string a task to
    decode and split, not one row an edge."""
    result: dict[uuid.UUID, list[str]] = {}
    stmt = _DEPENDENCY_KEYS
    if session_id is not None:
        stmt = stmt.where(_PARENT.c.session_id == session_id)
    elif task_ids:
        stmt = stmt.where(TaskDependency.task_id.in_(list(task_ids)))
    else:
        return result
    async for partition in _partitions(db, stmt):
        for row in partition:
            result[row.task_id] = row.parents.split(",")
    return result
