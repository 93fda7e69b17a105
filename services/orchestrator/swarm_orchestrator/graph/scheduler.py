"""The scheduler: which tasks run next, and which can no longer run.

A task is queued when it is `pending`, its retry time (if any) has passed, its session is
`active` and every parent `succeeded` and is merged into the integration branch. Queueing a
task makes a new attempt starting from the integration head (so it builds on its parents'
work), writes the task message to the outbox, flags other dispatched tasks that expect to
touch the same files, and appends to the timeline, all in the caller's transaction.

The message carries the attempt's secret key (`swarm_common.proofs`): its adapter proves
its events with it, and nothing else may show it (the timeline entry and the log line do
not).

Concurrency: the caller holds the session's lock (`graph.locking`), so two orchestrators
finishing two parents of the same child at once see each other's commits, and the child is
queued exactly once. The state change itself is `task_state.queue`. Nothing is queued for
a session whose budget, or its tenant's, is spent (`graph.budgets.check`).

A task that asks for `agent: auto` is routed first (`graph.routing`): its attempt goes to
the kind chosen then, or, when no kind can take it, it stays pending and says why.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from swarm_common.messages import TaskMessage
from swarm_common.states import MERGED_STATES, MergeStatus, SessionStatus, TaskStatus
from swarm_common.streams import Keys
from swarm_common.verdicts import VERDICT_SCHEMA
from swarm_orchestrator.db import outbox, timeline
from swarm_orchestrator.db.models import Session, Task, TaskDependency
from swarm_orchestrator.graph import (
    blackboard,
    budgets,
    failover,
    races,
    routing,
    session_state,
    task_state,
)
from swarm_orchestrator.graph.locking import lock_session, lock_tasks

__all__ = [
    "branch_name",
    "integration_branch",
    "queue_ready",
    "resume_after_review",
    "sweep",
    "work_head",
]

log = logging.getLogger(__name__)


def branch_name(session_id: uuid.UUID, key: str) -> str:
    return f"swarm/{session_id}/task/{key}"


def integration_branch(session_id: uuid.UUID) -> str:
    return f"swarm/{session_id}/integration"


def work_head(session: Session) -> str:
    """Where new work starts and what checkpoints check: the integration head, or in a dry
    run the head of its dry-run branch, which holds the work of the tasks before it
    (`integration.dry_run`)."""
    return session.dry_run_head or session.integration_head or session.base_commit


def _ready() -> tuple[ColumnElement[bool], ...]:
    """A pending task whose retry time (if any) came and whose every parent succeeded and is
    merged: built once (a statement's clauses cost more to build than to run)."""
    parent = aliased(Task)
    unfinished_parent = exists().where(
        TaskDependency.task_id == Task.id,
        TaskDependency.depends_on_id == parent.id,
        or_(
            parent.status != TaskStatus.SUCCEEDED,
            parent.merge_status.is_(None),
            parent.merge_status.not_in(list(MERGED_STATES)),
        ),
    )
    return (
        Task.status == TaskStatus.PENDING,
        or_(Task.retry_at.is_(None), Task.retry_at <= func.now()),
        ~unfinished_parent,
    )


_READY = _ready()


async def queue_ready(
    db: AsyncSession,
    *,
    session: Session,
    keys: Keys,
    only: Collection[uuid.UUID] | None = None,
    routed: Collection[uuid.UUID] = (),
    limit: int | None = None,
) -> list[Task]:
    """Queue every ready task of `session` (or only those in `only`; at most `limit`, the
    first by priority, then the longest `chain`); the session must be locked by the caller.
    A draft runs only its planning agent's tasks (kind `plan`). `routed`: tasks whose kind
    was just chosen (a failover), not routed again."""
    kinds: tuple[ColumnElement[bool], ...] = ()
    if session.status == SessionStatus.DRAFT:
        kinds = (Task.kind == "plan",)
    elif session.status != SessionStatus.ACTIVE:
        return []
    if not await budgets.check(db, session, keys=keys):  # spent: it may have been suspended
        return []
    tasks = await lock_tasks(
        db,
        session,
        *_READY,
        *kinds,
        ids=only,
        order_by=(Task.priority.desc(), Task.chain.desc(), Task.created_at, Task.key),
        limit=limit,
    )
    if not tasks:
        return []
    contexts = await blackboard.contexts_for(db, session_id=session.id, tasks=tasks)
    router = routing.Router(db)
    queued = []
    starts: list[_Start] = []
    contenders: list[uuid.UUID] = []
    for task in tasks:
        if task.kind == "work" and task.spec.get("race"):  # best of N: its contenders run
            head = work_head(session)
            contenders += await races.start(db, session=session, task=task, base=head)
            queued.append(task)
            continue
        if task.id in routed:
            pass
        elif routing.is_auto(task):
            if not await router.route(task):
                continue  # no kind can take it now: it stays pending and says why
        elif task.spec.get("fallback"):  # its kind may be paused: it moves on
            failover.before_queue(db, session=session, task=task, kinds=await router.fleet())
        base, merge_with = await _starting_point(db, task=task, session=session)
        starts.append(_Start(task, base, merge_with, contexts.get(task.id)))
        queued.append(task)
    await _queue(db, starts, session=session, keys=keys, quiet=len(tasks) > LOG_EACH_UP_TO)
    _said_at_once(session, queued, many=len(tasks) > LOG_EACH_UP_TO)
    if contenders:
        queued += await queue_ready(db, session=session, keys=keys, only=contenders)
    return queued


def _said_at_once(session: Session, queued: list[Task], *, many: bool) -> None:
    """One log line for many tasks queued at once (each of them was logged at debug)."""
    if many:
        log.info("tasks queued", extra={"session_id": str(session.id), "count": len(queued)})


async def resume_after_review(
    db: AsyncSession, *, session: Session, keys: Keys, actor: str
) -> bool:
    """Return a session from `awaiting_review` to `active` once no conflict is left, and
    queue what became ready. The caller holds the session lock."""
    if not await session_state.resume_after_review(db, session, actor=actor):
        return False
    await queue_ready(db, session=session, keys=keys)
    return True


async def _starting_point(
    db: AsyncSession, *, task: Task, session: Session
) -> tuple[str, str | None]:
    """The commit a task's worktree starts from (the integration head; for a review run the
    commit it judges; for a task sent back to fix its work, its own last commit), and for a
    conflict-resolution task the integration head to merge into it."""
    head = work_head(session)
    review_of = task.spec.get("review_of") if task.kind == "review" else None
    if review_of and review_of.get("commit"):
        return review_of["commit"], None
    if task.resume_commit:
        return task.resume_commit, None
    if task.resolves_task_id is None:
        return head, None
    resolved = await db.get(Task, task.resolves_task_id)
    commit = (resolved.result or {}).get("commit") if resolved is not None else None
    return (commit, head) if commit else (head, None)


async def _dispatched_files(db: AsyncSession, session_id: uuid.UUID) -> dict[str, set[str]]:
    """Expected files of the session's tasks that are queued, running or not yet merged."""
    rows = await db.execute(
        select(Task.key, Task.spec["files"]).where(
            Task.session_id == session_id,
            or_(
                Task.status.in_([TaskStatus.QUEUED, TaskStatus.RUNNING]),
                and_(Task.status == TaskStatus.SUCCEEDED, Task.merge_status == MergeStatus.PENDING),
            ),
        )
    )
    return {key: set(files) for key, files in rows.all() if files}


def _flag_overlaps(db: AsyncSession, *, task: Task, dispatched: dict[str, set[str]]) -> None:
    files = set(task.spec.get("files") or ())
    if not files:
        return
    overlaps = [
        {"task": key, "files": sorted(files & theirs)}
        for key, theirs in sorted(dispatched.items())
        if key != task.key and files & theirs
    ]
    dispatched[task.key] = files
    if not overlaps:
        return
    task.overlaps = overlaps
    timeline.record(
        db,
        session_id=task.session_id,
        task_id=task.id,
        attempt=task.attempt,
        type="task.overlap",
        data={"overlaps": overlaps},
    )
    log.warning(
        "task expects to touch files other dispatched tasks touch",
        extra={
            "session_id": str(task.session_id),
            "task_id": str(task.id),
            "task_key": task.key,
            "overlaps": [o["task"] for o in overlaps],
        },
    )


@dataclass(frozen=True)
class _Start:
    """A task a scheduling pass queues: where its worktree starts (`_starting_point`) and
    its parents' handoffs and the blackboard for its message (`blackboard.context_for`)."""

    task: Task
    base: str
    merge_with: str | None
    context: dict[str, Any] | None


async def _queue(
    db: AsyncSession, starts: list[_Start], *, session: Session, keys: Keys, quiet: bool
) -> None:
    """Queue each task's next attempt (`task_state.queue`, all at once), hold its message
    for dispatch, and say which files it expects to touch that others in flight touch too.
    `quiet`: one of many, logged at debug (the caller logs them in one line)."""
    if not starts:
        return
    expecting = any(start.task.spec.get("files") for start in starts)  # else none can overlap
    dispatched = await _dispatched_files(db, session.id) if expecting else {}
    event_keys = await task_state.queue(
        db,
        [
            task_state.Queueing(
                start.task,
                start.base,
                {
                    "base_commit": start.base,
                    "agent": start.task.agent,
                    **({"merge_with": start.merge_with} if start.merge_with else {}),
                },
            )
            for start in starts
        ],
    )
    await outbox.add_tasks(
        db,
        (
            outbox.Held(
                keys.tasks(start.task.agent),
                _message(start, session=session, event_key=event_key),
                start.task.priority,
                start.task.chain,
            )
            for start, event_key in zip(starts, event_keys, strict=True)
        ),
    )
    for start in starts:
        _flag_overlaps(db, task=start.task, dispatched=dispatched)
        log.log(
            logging.DEBUG if quiet else logging.INFO,
            "task queued",
            extra={
                "session_id": str(session.id),
                "task_id": str(start.task.id),
                "task_key": start.task.key,
                "attempt": start.task.attempt,
            },
        )


def _message(start: _Start, *, session: Session, event_key: str) -> TaskMessage:
    """What the adapter that takes a queued attempt is told."""
    task, base, merge_with = start.task, start.base, start.merge_with
    spec = task.spec
    return TaskMessage(
        session_id=session.id,
        task_id=task.id,
        task_key=task.key,
        attempt=task.attempt,
        agent=task.agent,
        title=task.title,
        prompt=task.prompt,
        role=task.role,
        persona=_persona(spec.get("assigned_persona")),
        skills=spec.get("skills", []),
        acceptance=spec.get("acceptance", []),
        files=spec.get("files", []),
        gates=spec.get("gates"),
        context=session.goal,
        repo=session.repo_path,
        base_commit=base,
        merge_with=merge_with,
        conflict_files=list(task.conflict_files or ()) if merge_with else [],
        feedback=task.feedback,
        branch=branch_name(session.id, task.key),
        timeout_s=task.timeout_s,
        model=spec.get("model"),
        max_turns=spec.get("max_turns"),
        allowed_tools=spec.get("allowed_tools"),
        output_schema=spec.get("output_schema") or (VERDICT_SCHEMA if spec.get("verify") else None),
        read_only=task.kind in ("plan", "review") or bool(spec.get("verify")),
        review=_review(task, session, base),
        settings=session.settings,
        **(start.context or {}),
        event_key=event_key,
    )


def _review(task: Task, session: Session, base: str) -> dict[str, Any] | None:
    """What a review run's adapter needs of the work it judges, or a verifier's of the
    session's merged work (`TaskMessage.review`)."""
    if task.kind == "review":
        review_of = task.spec.get("review_of") or {}
        return {k: v for k, v in review_of.items() if k != "task_id"}
    if not task.spec.get("verify"):
        return None
    return {
        "verify": True,
        "task_key": task.key,
        "title": task.title,
        "prompt": task.prompt,
        "acceptance": list(task.spec.get("acceptance") or ()),
        "commit": base,
        "against": session.base_commit,
        "round": 1,
        "max_rounds": 1,
    }


def _persona(snapshot: dict[str, Any] | None) -> dict[str, Any] | None:
    """What an adapter needs of the persona a task runs as (its spec's snapshot)."""
    if not snapshot:
        return None
    return {k: snapshot.get(k) for k in ("name", "style", "author_name", "author_email")}


QUEUE_IN_REQUEST = 500
"""Most tasks of a new graph (submitted, added, or an approved plan) that the request storing
it queues, the first by priority (a fraction of a second); `sweep` queues the rest."""
LOG_EACH_UP_TO = 20
"""A queueing of more tasks than this logs one line for all of them (each at debug)."""
SWEEP_CHUNK = 500
"""The most tasks of one session `sweep` queues in one transaction: a graph of ten thousand
ready tasks is queued in steps of a fraction of a second each, and the session's reports
are applied in between."""


async def sweep(sessionmaker: async_sessionmaker[AsyncSession], *, keys: Keys) -> int:
    """Queue whatever became ready without an event to trigger it (retry times passing, a
    missed wake-up); return how many tasks were queued."""
    async with sessionmaker() as db:
        session_ids: Sequence[uuid.UUID] = (
            await db.scalars(
                select(Task.session_id)
                .distinct()
                .join(
                    Session,
                    and_(
                        Session.id == Task.session_id,
                        or_(
                            Session.status == SessionStatus.ACTIVE,
                            and_(Session.status == SessionStatus.DRAFT, Task.kind == "plan"),
                        ),
                    ),
                )
                .where(
                    Task.status == TaskStatus.PENDING,
                    or_(Task.retry_at.is_(None), Task.retry_at <= func.now()),
                )
            )
        ).all()
    queued = 0
    for session_id in session_ids:
        while True:  # in chunks: the session's lock is held a moment at a time
            async with sessionmaker() as db, db.begin():
                session = await lock_session(db, session_id)
                if session is None:
                    break
                now = len(await queue_ready(db, session=session, keys=keys, limit=SWEEP_CHUNK))
            queued += now
            if now < SWEEP_CHUNK:
                break
    return queued
