"""The owner of a task's state: the only code that changes a task's `status` or
`merge_status`, or an attempt's `status`, and that creates tasks.

Each change has a name that says what happened (`queue`, `start`, `succeed`, `fail`,
`reschedule`, `cancel`, `block_downstream`, `enter_merge_queue`, `merged`, …), is checked
against the transition tables of `swarm_common.states` before anything is stored (an illegal
one raises `IllegalTransition`), and writes its timeline entry in the caller's transaction.
Callers hold the locks (`graph.locking`) and decide *whether* a change happens (a retry's
`graph.retry.decide`, a control action's checks); this module decides *how* it is stored.
`tests/orchestrator/test_ownership.py` fails when another module assigns these columns or
updates them in SQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ARRAY,
    DateTime,
    Integer,
    String,
    Table,
    Uuid,
    bindparam,
    func,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from swarm_common import proofs
from swarm_common.messages import utcnow
from swarm_common.specs import ReviewSpec, TaskSpec
from swarm_common.states import (
    ATTEMPT_TRANSITIONS,
    MERGE_TRANSITIONS,
    TASK_TRANSITIONS,
    AttemptStatus,
    IllegalTransition,
    MergeStatus,
    TaskStatus,
    check_transition,
)
from swarm_common.streams import Keys
from swarm_orchestrator.db import outbox, timeline
from swarm_orchestrator.db.bulk import insert_rows
from swarm_orchestrator.db.models import MERGE_SEQ, Attempt, Session, Task, TaskDependency
from swarm_orchestrator.graph import personas
from swarm_orchestrator.graph.locking import lock_attempt
from swarm_orchestrator.graph.personas import Assignment
from swarm_orchestrator.graph.retry import Counts, TaskLimits
from swarm_orchestrator.graph.validation import topological_order
from swarm_orchestrator.observability import metrics

__all__ = [
    "IN_FLIGHT",
    "NewTask",
    "abandon_merge",
    "answered",
    "approve",
    "attempt_counts",
    "await_approval",
    "block_downstream",
    "cancel",
    "conflicted",
    "create_graph",
    "create_tasks",
    "dry_run_merged",
    "Entry",
    "end_attempt",
    "enter_merge_queue",
    "fail",
    "fail_over",
    "hold_for_approval",
    "is_conflicted",
    "limits",
    "merged",
    "queue",
    "Queueing",
    "race_won",
    "reschedule",
    "resolved",
    "review_passed",
    "send_back",
    "to_review",
    "restore_merges",
    "retry",
    "roll_back_merges",
    "start",
    "start_race",
    "stop_attempt",
    "unblock_downstream",
]

IN_FLIGHT = (TaskStatus.QUEUED, TaskStatus.RUNNING)
WAITING_TO_MERGE = (MergeStatus.PENDING, MergeStatus.CONFLICT)


# -- the checked moves ---------------------------------------------------------------------


def _check(task: Task, to: TaskStatus) -> None:
    """Raise `IllegalTransition` unless `task` may move to `to`."""
    check_transition(TASK_TRANSITIONS, task.status, to, what=f"task {task.key}")
    if task.status == TaskStatus.SUCCEEDED and task.merge_status not in WAITING_TO_MERGE:
        raise IllegalTransition(
            f"task {task.key}: merged work ({task.merge_status}) cannot leave succeeded"
        )


def _merge_of(task: Task) -> MergeStatus | None:
    return MergeStatus(task.merge_status) if task.merge_status else None


def _check_merge(task: Task, to: MergeStatus | None) -> None:
    if _merge_of(task) != to:
        check_transition(MERGE_TRANSITIONS, _merge_of(task), to, what=f"merge of task {task.key}")


def _move(task: Task, to: TaskStatus, now: datetime) -> str:
    """Change a task's status; return the old one."""
    previous = task.status
    _check(task, to)
    task.status = to
    task.updated_at = now
    return previous


def _move_merge(task: Task, to: MergeStatus | None, now: datetime) -> None:
    if _merge_of(task) == to:
        return
    _check_merge(task, to)
    task.merge_status = to
    task.updated_at = now


def _move_attempt(attempt: Attempt, to: AttemptStatus) -> None:
    check_transition(ATTEMPT_TRANSITIONS, attempt.status, to, what=f"attempt {attempt.number}")
    attempt.status = to


_CURRENT = -1
"""An entry about the task's current attempt (the default)."""


@dataclass(frozen=True)
class Entry:
    """The timeline entry of a change whose kind the caller names (`reschedule`, `fail`):
    its type, what it says, who caused it, and the report it applies (to know it again)."""

    type: str
    data: dict[str, Any] | None = None
    actor: str = "system"
    source: str | None = None


def _record(
    db: AsyncSession,
    task: Task,
    type: str,
    *,
    actor: str = "system",
    source: str | None = None,
    data: dict[str, Any] | None = None,
    attempt: int | None = _CURRENT,
) -> None:
    timeline.record(
        db,
        session_id=task.session_id,
        task_id=task.id,
        attempt=task.attempt if attempt == _CURRENT else attempt,
        type=type,
        actor=actor,
        source_id=source,
        data=data,
    )


def _write(db: AsyncSession, task: Task, entry: Entry) -> None:
    _record(
        db,
        task,
        entry.type,
        actor=entry.actor,
        source=entry.source,
        data=entry.data,
    )


# -- new tasks -----------------------------------------------------------------------------


@dataclass
class NewTask:
    """A task to add to a session: its spec and where it comes from."""

    spec: TaskSpec
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    priority: int | None = None
    """Overrides the spec's priority (a resolution task goes before its peers)."""
    resolves_task_id: uuid.UUID | None = None
    conflict_files: list[str] | None = None
    created: dict[str, Any] | None = None
    """The `task.created` entry's data; by default its key and dependencies."""
    kind: str = "work"
    """`plan`: a run of the planning agent, not a node of the graph (`Task.kind`)."""
    persona: Assignment | None = None
    """The persona it runs as (`graph.personas.assign`): kept in its spec as
    `assigned_persona`, said on its `task.created` entry."""
    reviews_task_id: uuid.UUID | None = None
    """For a reviewer's run (kind `review`): the task whose work it judges."""
    races_task_id: uuid.UUID | None = None
    """For a contender (kind `race`): the task it races for."""
    spec_extra: dict[str, Any] | None = None
    """Kept in its stored spec beside the TaskSpec's fields (a review run's `review_of`)."""


async def create_tasks(
    db: AsyncSession,
    *,
    session: Session,
    tasks: Sequence[NewTask],
    ids: dict[str, uuid.UUID],
    actor: str = "system",
) -> None:
    """Insert `pending` tasks into a session the caller has locked, their dependencies
    (`ids` maps every key they may depend on to its task id) and their `task.created`
    entries, in bulk (graphs are large); the session's `task_count` and `edge_count` grow
    by as many (stored with the session's next flush)."""
    session_id = session.id
    now = utcnow()
    chains = _chains(tasks)
    await insert_rows(db, Task, (_row(new, session_id, now, chains[new.spec.key]) for new in tasks))
    edges = [
        {"task_id": new.id, "depends_on_id": ids[dep]}
        for new in tasks
        for dep in dict.fromkeys(new.spec.depends_on)
    ]
    await insert_rows(db, TaskDependency, edges)
    session.task_count = (session.task_count or 0) + len(tasks)
    session.edge_count = (session.edge_count or 0) + len(edges)
    await timeline.record_many(
        db,
        (
            {
                "session_id": session_id,
                "task_id": new.id,
                "type": "task.created",
                "actor": actor,
                "data": _created(new),
            }
            for new in tasks
        ),
    )


async def create_graph(
    db: AsyncSession,
    *,
    session: Session,
    specs: Sequence[TaskSpec],
    existing: dict[str, uuid.UUID],
    actor: str,
) -> list[uuid.UUID]:
    """`create_tasks` for a graph a person or a planner gave (validated, parents first):
    each task runs as the persona it names or its role is given (`personas.assign`; 422
    `persona_not_found` before anything is written). Returns the new tasks' ids in order."""
    tenant = session.tenant
    reviewers = {s.review.persona for s in specs if isinstance(s.review, ReviewSpec)}
    if reviewers - {None}:  # a reviewer's persona is looked up when its review runs
        await personas.require(db, names=sorted(n for n in reviewers if n), tenant=tenant)
    assigned = await personas.assign(db, specs=specs, tenant=tenant, session_id=session.id)
    new = [
        NewTask(spec=spec, persona=persona) for spec, persona in zip(specs, assigned, strict=True)
    ]
    ids = {**existing, **{t.spec.key: t.id for t in new}}
    await create_tasks(db, session=session, tasks=new, ids=ids, actor=actor)
    return [t.id for t in new]


def _created(new: NewTask) -> dict[str, Any]:
    data = new.created or {"key": new.spec.key, "depends_on": new.spec.depends_on}
    if new.persona is not None:
        data = {**data, "persona": new.persona.snapshot["name"], "persona_why": new.persona.why}
    return data


def _chains(tasks: Sequence[NewTask]) -> dict[str, int]:
    """Each new task's `Task.chain`, by key: itself and the longest chain of the new tasks
    that depend on it (tasks added later under it do not lengthen it), counted children
    first whatever the order of `tasks` (the graph was validated: it has no cycle)."""
    keys = {t.spec.key for t in tasks}
    parents = {t.spec.key: [d for d in t.spec.depends_on if d in keys] for t in tasks}
    chain = dict.fromkeys(parents, 1)
    for key in reversed(topological_order(parents) or list(parents)):
        for parent in parents[key]:
            chain[parent] = max(chain[parent], chain[key] + 1)
    return chain


def _row(new: NewTask, session_id: uuid.UUID, now: datetime, chain: int) -> dict[str, Any]:
    spec = new.spec
    stored = spec.model_dump(mode="json")
    if new.persona is not None:
        stored["assigned_persona"] = dict(new.persona.snapshot)
    if new.spec_extra:
        stored.update(new.spec_extra)
    return {
        "id": new.id,
        "session_id": session_id,
        "key": spec.key,
        "title": spec.title,
        "prompt": spec.prompt,
        "agent": spec.agent,
        "kind": new.kind,
        "role": spec.role,
        "spec": stored,
        "priority": spec.priority if new.priority is None else new.priority,
        "chain": chain,
        "timeout_s": spec.timeout_s,
        "max_attempts": spec.max_attempts,
        "status": TaskStatus.PENDING.value,
        "attempt": 0,
        "resolves_task_id": new.resolves_task_id,
        "reviews_task_id": new.reviews_task_id,
        "races_task_id": new.races_task_id,
        "conflict_files": new.conflict_files,
        "created_at": now,
        "updated_at": now,
    }


# -- a run ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Queueing:
    """A task to queue (`queue`): the commit its next attempt starts from, and what its
    `task.queued` entry says."""

    task: Task
    base: str
    data: dict[str, Any]


_QUEUED_COLUMNS = ("status", "attempt", "queued_at", "updated_at", "retry_at", "base_commit")
_CLEARED_COLUMNS = ("merge_commit", "overlaps", "approval_reason", "merge_status")
"""What queueing clears: a new attempt's work is judged (and merged) anew."""


async def queue(db: AsyncSession, moves: Sequence[Queueing]) -> list[str]:
    """pending → queued for each task, with a new attempt (a new fencing token, and a new
    secret key its adapter proves its events with) starting from its `base`; return the
    attempts' event keys, in order.

    Set-based, as a scheduling pass queues hundreds of tasks at once: one UPDATE of the
    tasks and one INSERT each of their attempts and `task.queued` entries, whatever their
    number (the unit of work would spend a millisecond a task on its objects). The tasks'
    loaded rows are given the stored values as committed, so the flush writes them no
    second time."""
    if not moves:
        return []
    now = utcnow()
    for move in moves:
        _check(move.task, TaskStatus.QUEUED)
        _check_merge(move.task, None)
    keys = [proofs.new_key() for _ in moves]
    numbers = [move.task.attempt + 1 for move in moves]
    await db.execute(
        _QUEUE_TASKS,
        {
            "ids": [move.task.id for move in moves],
            "numbers": numbers,
            "bases": [move.base for move in moves],
            "now": now,
        },
    )
    for move, number in zip(moves, numbers, strict=True):
        values = (TaskStatus.QUEUED.value, number, now, now, None, move.base)
        for column, value in zip(_QUEUED_COLUMNS, values, strict=True):
            set_committed_value(move.task, column, value)
        for column in _CLEARED_COLUMNS:
            set_committed_value(move.task, column, None)
    await insert_rows(
        db,
        Attempt,
        (
            {
                "task_id": move.task.id,
                "number": number,
                "status": AttemptStatus.QUEUED.value,
                "agent": move.task.agent,  # the kind it runs on, kept if the task's changes
                "base_commit": move.base,
                "event_key": key,
            }
            for move, number, key in zip(moves, numbers, keys, strict=True)
        ),
    )
    metrics.attempts_queued(db, [move.task.agent for move in moves if move.task.attempt > 1])
    await timeline.record_many(
        db,
        (
            {
                "session_id": move.task.session_id,
                "task_id": move.task.id,
                "attempt": move.task.attempt,
                "type": "task.queued",
                "data": move.data,
            }
            for move in moves
        ),
    )
    return keys


def _queue_tasks() -> Any:
    tasks = cast(Table, Task.__table__)
    rows = (
        func.unnest(
            bindparam("ids", type_=ARRAY(Uuid)),
            bindparam("numbers", type_=ARRAY(Integer)),
            bindparam("bases", type_=ARRAY(String)),
        )
        .table_valued("id", "number", "base")
        .render_derived("moves")
    )
    at = bindparam("now", type_=DateTime(timezone=True))
    return (
        update(tasks)
        .where(tasks.c.id == rows.c.id)
        .values(
            status=TaskStatus.QUEUED.value,
            attempt=rows.c.number,
            queued_at=at,
            updated_at=at,
            retry_at=None,
            base_commit=rows.c.base,
            **dict.fromkeys(_CLEARED_COLUMNS),
        )
    )


_QUEUE_TASKS = _queue_tasks()


def start(
    db: AsyncSession,
    task: Task,
    attempt: Attempt,
    *,
    worker: str,
    at: datetime,
    source: str,
    data: dict[str, Any],
) -> None:
    """queued → running: an adapter took the attempt."""
    _move(task, TaskStatus.RUNNING, utcnow())
    task.started_at = at
    _move_attempt(attempt, AttemptStatus.RUNNING)
    attempt.worker = worker
    attempt.started_at = at
    attempt.heartbeat_at = at
    metrics.attempt_started(attempt, at=at)
    _record(db, task, "task.started", actor=f"worker:{worker}", source=source, data=data)


def end_attempt(
    attempt: Attempt,
    status: AttemptStatus,
    *,
    at: datetime,
    worker: str | None = None,
    reason: str | None = None,
) -> None:
    """The attempt ended as its adapter reported (the task's state changes separately)."""
    _move_attempt(attempt, status)
    attempt.finished_at = at
    attempt.worker = attempt.worker or worker
    if reason is not None:
        attempt.reason = reason
    metrics.attempt_ended(attempt, at=at)


async def stop_attempt(
    db: AsyncSession,
    task: Task,
    *,
    status: AttemptStatus,
    reason: str,
    keys: Keys,
    cancel_reason: str | None = None,
    worker: str | None = None,
    unsent: bool = False,
) -> None:
    """End the in-flight attempt of a task from here (cancelled, lost) and ask whoever still
    runs it to stop; its late events are stale. `unsent`: the attempt's message never left
    the outbox (withheld), so nobody runs it and nobody is asked."""
    attempt = await lock_attempt(db, task)
    if attempt is not None and attempt.status in (AttemptStatus.QUEUED, AttemptStatus.RUNNING):
        end_attempt(attempt, status, at=utcnow(), worker=worker, reason=reason)
    if not unsent:
        outbox.add_cancel(
            db, keys=keys, task_id=task.id, attempt=task.attempt, reason=cancel_reason or reason
        )


async def succeed(
    db: AsyncSession, task: Task, *, actor: str, source: str, data: dict[str, Any]
) -> None:
    """The attempt succeeded: the task's work joins the merge queue."""
    now = utcnow()
    _move(task, TaskStatus.SUCCEEDED, now)
    task.finished_at = now
    await enter_merge_queue(db, task)
    _record(db, task, "task.succeeded", actor=actor, source=source, data=data)


def answered(
    db: AsyncSession, task: Task, *, actor: str, source: str | None, data: dict[str, Any]
) -> None:
    """A read-only run (a planner, a reviewer, a verifier) answered, or a contender's work
    passed: the task succeeded with nothing of its own to merge."""
    now = utcnow()
    _move(task, TaskStatus.SUCCEEDED, now)
    task.finished_at = now
    _move_merge(task, MergeStatus.PENDING, now)
    _move_merge(task, MergeStatus.EMPTY, now)
    _record(db, task, "task.succeeded", actor=actor, source=source, data=data)


def start_race(db: AsyncSession, task: Task, *, base: str, data: dict[str, Any]) -> None:
    """pending → racing: its contenders run from `base` (`graph.races`); its attempt
    number counts the races, and fences their contenders."""
    now = utcnow()
    _move(task, TaskStatus.RACING, now)
    task.attempt += 1
    task.queued_at = now
    task.started_at = now
    task.retry_at = None
    task.base_commit = base
    task.merge_commit = None
    _move_merge(task, None, now)
    _record(db, task, "task.racing", data={"base_commit": base, **data})


async def race_won(
    db: AsyncSession, task: Task, *, winner: Task, actor: str, data: dict[str, Any]
) -> None:
    """racing → succeeded: `winner`'s work is the task's and joins the merge queue (or
    waits for a person's approval when the task asks for one)."""
    task.result = dict(winner.result or {})
    task.reason = None
    await _accepted(db, task, type="task.race_won", actor=actor, data=data)


async def _accepted(
    db: AsyncSession, task: Task, *, type: str, actor: str, data: dict[str, Any]
) -> None:
    """Its work passed what judged it (a review, a race): it joins the merge queue, or waits
    for a person's approval first when the task asks for one; `type` names the entry."""
    if task.spec.get("requires_approval"):
        await_approval(db, task, actor=actor, source=None, data=data, type=type)
        return
    now = utcnow()
    _move(task, TaskStatus.SUCCEEDED, now)
    task.finished_at = now
    await enter_merge_queue(db, task)
    _record(db, task, type, actor=actor, data=data)


def await_approval(
    db: AsyncSession,
    task: Task,
    *,
    actor: str,
    source: str | None,
    data: dict[str, Any],
    type: str = "task.awaiting_approval",
) -> None:
    """The attempt succeeded (and passed its review), and a person decides whether its work
    is merged."""
    _move(task, TaskStatus.AWAITING_APPROVAL, utcnow())
    _record(db, task, type, actor=actor, source=source, data=data)


def to_review(
    db: AsyncSession, task: Task, *, actor: str, source: str, data: dict[str, Any]
) -> None:
    """The attempt succeeded and passed its gates: a reviewer's verdict decides what
    happens to its work (`graph.reviews`)."""
    _move(task, TaskStatus.REVIEWING, utcnow())
    task.review_round += 1
    _record(db, task, "task.reviewing", actor=actor, source=source, data=data)


async def review_passed(db: AsyncSession, task: Task, *, actor: str, data: dict[str, Any]) -> None:
    """reviewing → succeeded (its work joins the merge queue), or → awaiting_approval when
    a person must accept it too."""
    await _accepted(db, task, type="task.reviewed", actor=actor, data=data)


def send_back(
    db: AsyncSession,
    task: Task,
    *,
    feedback: str,
    resume_commit: str | None,
    retry_at: datetime | None,
    entry: Entry,
    reset_rounds: bool = False,
) -> str:
    """→ pending with `feedback` for its next attempt, which starts from `resume_commit`
    (its own last commit) when there is one: a reviewer's FAIL, or a person asking for
    changes (`reset_rounds`: its reviews count again). Work of it waiting to merge is set
    aside. Returns the state it left."""
    if task.status == TaskStatus.SUCCEEDED and task.merge_status not in WAITING_TO_MERGE:
        raise IllegalTransition(f"task {task.key}: merged work is not sent back")
    if reset_rounds:
        task.review_round = 0
    task.feedback = feedback
    task.resume_commit = resume_commit
    return reschedule(db, task, reason=None, retry_at=retry_at, entry=entry)


async def approve(db: AsyncSession, task: Task, *, actor: str) -> None:
    """awaiting_approval → succeeded: a person accepted the work; it joins the merge queue.
    Work held for crossing the session's policy (`approval_reason`) is not checked again
    for the commit they approved."""
    if task.status != TaskStatus.AWAITING_APPROVAL:
        raise IllegalTransition(f"task {task.key}: a {task.status} task is not approved")
    now = utcnow()
    _move(task, TaskStatus.SUCCEEDED, now)
    task.finished_at = now
    commit = (task.result or {}).get("commit")
    if task.approval_reason and commit:
        task.approved_commit = commit
    await enter_merge_queue(db, task)
    _record(
        db,
        task,
        "task.approved",
        actor=actor,
        data={"commit": commit, "reason": task.approval_reason} if task.approval_reason else None,
    )


def hold_for_approval(
    db: AsyncSession,
    task: Task,
    *,
    reason: str,
    violations: list[dict[str, Any]],
    data: dict[str, Any],
) -> None:
    """succeeded (waiting to merge) → awaiting_approval: the merge queue found the work
    crossing its session's policy (`integration.policies`); a person approves or cancels it.
    `reason` is kept on the task, the violations go on its timeline entry."""
    now = utcnow()
    _move(task, TaskStatus.AWAITING_APPROVAL, now)
    _move_merge(task, None, now)
    task.merge_seq = None
    task.approval_reason = reason
    task.finished_at = None
    _record(
        db,
        task,
        "task.awaiting_approval",
        data={"reason": reason, "violations": violations, **data},
    )


def reschedule(
    db: AsyncSession, task: Task, *, reason: str | None, retry_at: datetime | None, entry: Entry
) -> str:
    """→ pending: the task runs again (at once, or from `retry_at`); work of it that waited
    to merge is set aside. Returns the state it left."""
    now = utcnow()
    previous = _move(task, TaskStatus.PENDING, now)
    _move_merge(task, None, now)
    task.reason = reason
    task.retry_at = retry_at
    task.finished_at = None
    _write(db, task, entry)
    return previous


def fail_over(
    db: AsyncSession,
    task: Task,
    *,
    to: str,
    resume_commit: str | None,
    feedback: str | None,
    data: dict[str, Any],
    ended: Entry | None = None,
) -> None:
    """The task moves to agent kind `to` and runs again at once (`graph.failover` decided),
    from `resume_commit` (the work its last attempt left) with `feedback` for its prompt.
    An ended attempt (`ended`: its entry) or a queued one the caller stopped → pending; a
    pending task stays pending, its retry time dropped. Writes `task.failover` (`data`
    with `from` and `to`)."""
    was = task.agent
    task.agent = to
    task.resume_commit = resume_commit
    task.feedback = feedback
    reason = f"moved from {was} to {to}: {data.get('reason', 'failover')}"
    entry = Entry("task.failover", data={**data, "from": was, "to": to})
    if task.status == TaskStatus.PENDING:
        task.retry_at = None
        task.reason = reason
        task.updated_at = utcnow()
    else:
        reschedule(db, task, reason=reason, retry_at=None, entry=ended or entry)
        if ended is None:
            return
    _write(db, task, entry)


def fail(db: AsyncSession, task: Task, *, reason: str, entry: Entry) -> None:
    """→ failed, for good (until a person retries it); its dependents get blocked by
    `block_downstream`."""
    now = utcnow()
    _move(task, TaskStatus.FAILED, now)
    task.reason = reason
    task.finished_at = now
    _write(db, task, entry)


def retry(db: AsyncSession, task: Task, *, actor: str, retry_at: datetime | None) -> None:
    """A person's retry: a failed or cancelled task, or one whose merge conflicted, is
    pending again (its attempt count goes on)."""
    if task.status not in (TaskStatus.FAILED, TaskStatus.CANCELLED) and not is_conflicted(task):
        raise IllegalTransition(f"task {task.key}: a {task.status} task is not retried")
    entry = Entry("task.retried", data={"from": task.status}, actor=actor)
    task.review_round = 0  # a fresh start: its reviews count again, from the integration head
    task.resume_commit = None
    reschedule(db, task, reason=None, retry_at=retry_at, entry=entry)


async def cancel(
    db: AsyncSession, task: Task, *, keys: Keys, actor: str, unsent: bool = False
) -> None:
    """→ cancelled; a queued or running attempt is stopped (`unsent`: a queued one whose
    message was withheld, see `stop_attempt`), work waiting to merge is abandoned."""
    now = utcnow()
    reason = f"cancelled by {actor}"
    previous = _move(task, TaskStatus.CANCELLED, now)
    if previous in IN_FLIGHT:
        await stop_attempt(
            db,
            task,
            status=AttemptStatus.CANCELLED,
            reason=reason,
            keys=keys,
            unsent=unsent and previous == TaskStatus.QUEUED,
        )
    if task.merge_status in WAITING_TO_MERGE:
        _move_merge(task, MergeStatus.ABANDONED, now)
    task.reason = reason
    task.finished_at = now
    _record(
        db,
        task,
        "task.cancelled",
        actor=actor,
        data={"from": previous},
        attempt=task.attempt or None,
    )


def is_conflicted(task: Task) -> bool:
    return task.status == TaskStatus.SUCCEEDED and task.merge_status == MergeStatus.CONFLICT


async def attempt_counts(db: AsyncSession, task: Task) -> Counts:
    """The task's attempts by how they ended, for `retry.decide` (flush first)."""
    rows = await db.execute(
        select(Attempt.status, func.count())
        .where(Attempt.task_id == task.id)
        .group_by(Attempt.status)
    )
    counts = {str(status): int(n) for status, n in rows.all()}
    return Counts(
        failed=counts.get(AttemptStatus.FAILED, 0),
        lost=counts.get(AttemptStatus.LOST, 0),
        rate_limited=counts.get(AttemptStatus.RATE_LIMITED, 0),
    )


def limits(task: Task) -> TaskLimits:
    """The task's own part of the retry policy."""
    return TaskLimits(
        max_attempts=task.max_attempts,
        retry_on_gate_failure=bool(task.spec.get("retry_on_gate_failure")),
    )


# -- blocking ------------------------------------------------------------------------------

_BLOCK_SQL = text("""
WITH RECURSIVE bad(id, root) AS (
    SELECT id, key FROM tasks
    WHERE session_id = :sid AND status IN ('failed', 'cancelled')
  UNION
    SELECT d.task_id, bad.root FROM task_dependencies d JOIN bad ON d.depends_on_id = bad.id
)
UPDATE tasks AS t
SET status = 'blocked', reason = 'dependency ' || b.root || ' did not succeed',
    updated_at = now(), finished_at = now()
FROM (SELECT id, min(root) AS root FROM bad GROUP BY id) AS b
WHERE t.id = b.id AND t.status = 'pending'
RETURNING t.id, t.key, b.root
""")
check_transition(TASK_TRANSITIONS, TaskStatus.PENDING, TaskStatus.BLOCKED, what="_BLOCK_SQL")

_UNBLOCK_SQL = text("""
WITH RECURSIVE down(id) AS (
    SELECT task_id FROM task_dependencies WHERE depends_on_id = :tid
  UNION
    SELECT d.task_id FROM task_dependencies d JOIN down ON d.depends_on_id = down.id
)
UPDATE tasks SET status = 'pending', reason = NULL, finished_at = NULL, updated_at = now()
WHERE id IN (SELECT id FROM down) AND status = 'blocked'
RETURNING id
""")
check_transition(TASK_TRANSITIONS, TaskStatus.BLOCKED, TaskStatus.PENDING, what="_UNBLOCK_SQL")


async def block_downstream(db: AsyncSession, *, session_id: uuid.UUID) -> list[str]:
    """pending → blocked for every task downstream of a failed or cancelled one; return
    their keys. Flush the caller's changes first: this runs in SQL."""
    await db.flush()
    rows = (await db.execute(_BLOCK_SQL, {"sid": session_id})).all()
    await timeline.record_many(
        db,
        (
            {
                "session_id": session_id,
                "task_id": row.id,
                "type": "task.blocked",
                "data": {"blocked_by": row.root},
            }
            for row in rows
        ),
    )
    return [row.key for row in rows]


async def unblock_downstream(db: AsyncSession, task: Task, *, actor: str) -> list[uuid.UUID]:
    """blocked → pending for every task downstream of `task` (which runs again)."""
    await db.flush()
    unblocked = list((await db.execute(_UNBLOCK_SQL, {"tid": task.id})).scalars().all())
    await timeline.record_many(
        db,
        (
            {
                "session_id": task.session_id,
                "task_id": tid,
                "type": "task.unblocked",
                "actor": actor,
                "data": {"by": task.key},
            }
            for tid in unblocked
        ),
    )
    return unblocked


# -- the merge queue -----------------------------------------------------------------------


async def enter_merge_queue(db: AsyncSession, task: Task) -> None:
    """The task's work waits to be merged, behind everything that succeeded before it."""
    _move_merge(task, MergeStatus.PENDING, utcnow())
    task.merge_seq = await db.scalar(MERGE_SEQ.next_value())
    task.resume_commit = None  # the work is accepted: a later run starts from the head


def merged(
    db: AsyncSession,
    task: Task,
    *,
    status: MergeStatus,
    merge_commit: str | None,
    data: dict[str, Any],
) -> None:
    """pending → merged (or empty: it changed nothing)."""
    _move_merge(task, status, utcnow())
    task.merge_commit = merge_commit
    task.conflict_files = None
    _record(db, task, "task.merged", data={"merge_status": status, **data})


def dry_run_merged(db: AsyncSession, task: Task, *, would_merge: dict[str, Any]) -> None:
    """pending → dry_run: a dry run merged nothing; `would_merge` says what it would have
    (`integration.dry_run`). Its dependents may run."""
    _move_merge(task, MergeStatus.DRY_RUN, utcnow())
    task.would_merge = would_merge
    _record(db, task, "task.would_merge", data=would_merge)


def resolved(db: AsyncSession, task: Task, *, by: str, merge_commit: str | None) -> None:
    """conflict → resolved: a resolution task's merge brought this task's work in."""
    _move_merge(task, MergeStatus.RESOLVED, utcnow())
    task.merge_commit = merge_commit
    _record(
        db,
        task,
        "task.merged",
        data={"merge_status": MergeStatus.RESOLVED, "by": by, "merge_commit": merge_commit},
        attempt=None,
    )


def conflicted(
    db: AsyncSession, task: Task, *, files: list[str], reason: str, data: dict[str, Any]
) -> None:
    """pending → conflict: the work does not merge cleanly; the branch is untouched."""
    _move_merge(task, MergeStatus.CONFLICT, utcnow())
    task.conflict_files = files
    task.reason = reason
    _record(db, task, "task.conflict", data=data)


def abandon_merge(task: Task) -> None:
    """Work waiting to merge is given up (its session was cancelled); it stays on its
    branch."""
    _move_merge(task, MergeStatus.ABANDONED, utcnow())


def roll_back_merges(tasks: Collection[Task]) -> list[str]:
    """merged/resolved → rolled_back for tasks whose merge commits a rollback undid."""
    now = utcnow()
    for task in tasks:
        _move_merge(task, MergeStatus.ROLLED_BACK, now)
    return sorted(task.key for task in tasks)


async def restore_merges(
    db: AsyncSession, *, session_id: uuid.UUID, merge_commits: Collection[str]
) -> None:
    """rolled_back → merged for tasks whose merge commits are back on the branch (a
    rollback to a later checkpoint)."""
    check_transition(
        MERGE_TRANSITIONS, MergeStatus.ROLLED_BACK, MergeStatus.MERGED, what="restore_merges"
    )
    await db.execute(
        update(Task)
        .where(
            Task.session_id == session_id,
            Task.merge_status == MergeStatus.ROLLED_BACK,
            Task.merge_commit.in_(list(merge_commits)),
        )
        .values(merge_status=MergeStatus.MERGED, updated_at=utcnow())
    )
