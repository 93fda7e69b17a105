"""The states of sessions, tasks, merges and attempts, and which changes between them are
allowed.

One table per kind. The orchestrator changes a status only through its owner
(`swarm_orchestrator.graph.task_state` for tasks, merges and attempts,
`swarm_orchestrator.graph.session_state` for sessions), which checks every change against
these tables before it stores anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

__all__ = [
    "ATTEMPT_TRANSITIONS",
    "AttemptStatus",
    "IllegalTransition",
    "MERGE_TRANSITIONS",
    "MERGED_STATES",
    "MergeStatus",
    "PLAN_TRANSITIONS",
    "PlanStatus",
    "SESSION_TRANSITIONS",
    "SessionStatus",
    "TASK_TRANSITIONS",
    "TERMINAL_TASK_STATES",
    "TaskStatus",
    "check_transition",
]


class SessionStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    AWAITING_REVIEW = "awaiting_review"
    SUSPENDED = "suspended"
    FINALIZED = "finalized"
    CANCELLED = "cancelled"


class PlanStatus(StrEnum):
    """A draft session's plan (`sessions.plan_status`; null while it has none)."""

    PLANNING = "planning"
    """A planner is at work (a planning agent's task, or feedback being answered)."""
    READY = "ready"
    """A revision waits for review: edit it, send feedback, or approve it."""
    FAILED = "failed"
    """The last planning failed (`plan_error` says why); plan again or edit by hand."""
    APPROVED = "approved"
    """Its tasks are the session's graph; the plan changes no more."""


class TaskStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    BLOCKED = "blocked"
    AWAITING_APPROVAL = "awaiting_approval"
    REVIEWING = "reviewing"
    """Its attempt succeeded and passed its gates; a reviewer's verdict decides whether its
    work merges or it runs again (`graph.reviews`)."""
    RACING = "racing"
    """Its contenders (tasks of kind `race`, `race: {n, agents}`) run at once; the first
    whose gates and review pass wins, and its work becomes this task's (`graph.races`)."""


class MergeStatus(StrEnum):
    """A succeeded task's way into the integration branch (None until it succeeds)."""

    PENDING = "pending"
    """In the merge queue."""
    MERGED = "merged"
    EMPTY = "empty"
    """It changed nothing: nothing to merge."""
    CONFLICT = "conflict"
    RESOLVED = "resolved"
    """Merged through a conflict-resolution task."""
    ROLLED_BACK = "rolled_back"
    """Its merge was undone by a rollback."""
    ABANDONED = "abandoned"
    """Cancelled while waiting to merge or after a conflict: its work stays on its branch."""
    DRY_RUN = "dry_run"
    """A dry run's: nothing merged; `tasks.would_merge` says what would have
    (`integration.dry_run`). Its dependents run as if it had merged."""


class AttemptStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"
    RATE_LIMITED = "rate_limited"


TERMINAL_TASK_STATES = frozenset(
    {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.BLOCKED}
)
"""States a task stays in unless a person retries it."""

MERGED_STATES = frozenset(
    {
        MergeStatus.MERGED,
        MergeStatus.EMPTY,
        MergeStatus.RESOLVED,
        MergeStatus.ROLLED_BACK,
        MergeStatus.DRY_RUN,  # not merged: its dependents rehearse on the dry-run branch
    }
)
"""Merge states in which a succeeded task's dependents may run."""

_RUN_ENDS = frozenset(
    {
        TaskStatus.SUCCEEDED,
        TaskStatus.FAILED,
        TaskStatus.CANCELLED,
        TaskStatus.PENDING,  # rescheduled: it runs again
        TaskStatus.AWAITING_APPROVAL,
        TaskStatus.REVIEWING,
    }
)

TASK_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.PENDING: frozenset(
        {TaskStatus.QUEUED, TaskStatus.RACING, TaskStatus.BLOCKED, TaskStatus.CANCELLED}
    ),
    # A contender won (its work is this task's), or every one of them failed.
    TaskStatus.RACING: frozenset(
        {
            TaskStatus.SUCCEEDED,
            TaskStatus.AWAITING_APPROVAL,
            TaskStatus.FAILED,
            TaskStatus.CANCELLED,
            TaskStatus.PENDING,
        }
    ),
    # A result may arrive before the start was applied: queued ends like running.
    TaskStatus.QUEUED: _RUN_ENDS | {TaskStatus.RUNNING},
    TaskStatus.RUNNING: _RUN_ENDS,
    # A person approves the work, cancels it, or sends it back with a comment.
    TaskStatus.AWAITING_APPROVAL: frozenset(
        {TaskStatus.SUCCEEDED, TaskStatus.CANCELLED, TaskStatus.PENDING}
    ),
    # A verdict: PASS merges (or waits for approval), FAIL runs it again or fails it for
    # good; a review run that never answers fails it too.
    TaskStatus.REVIEWING: frozenset(
        {
            TaskStatus.SUCCEEDED,
            TaskStatus.AWAITING_APPROVAL,
            TaskStatus.PENDING,
            TaskStatus.FAILED,
            TaskStatus.CANCELLED,
        }
    ),
    # Only work that is not merged leaves `succeeded`: a conflicted task retried, one
    # waiting to merge when its integration branch is rolled back, or one the merge queue
    # found crossing a session policy (`awaiting_approval`) (the owner checks which).
    TaskStatus.SUCCEEDED: frozenset(
        {TaskStatus.PENDING, TaskStatus.CANCELLED, TaskStatus.AWAITING_APPROVAL}
    ),
    # The other terminal states leave only through a retry (failed, cancelled) or when the
    # parent that blocked them is retried (blocked).
    TaskStatus.FAILED: frozenset({TaskStatus.PENDING}),
    TaskStatus.CANCELLED: frozenset({TaskStatus.PENDING}),
    TaskStatus.BLOCKED: frozenset({TaskStatus.PENDING, TaskStatus.CANCELLED}),
}

MERGE_TRANSITIONS: dict[MergeStatus | None, frozenset[MergeStatus | None]] = {
    None: frozenset({MergeStatus.PENDING}),
    MergeStatus.PENDING: frozenset(
        {
            MergeStatus.MERGED,
            MergeStatus.EMPTY,
            MergeStatus.CONFLICT,
            MergeStatus.ABANDONED,
            MergeStatus.DRY_RUN,
            None,  # rolled back (it runs again), or held for a person's approval
        }
    ),
    MergeStatus.CONFLICT: frozenset(
        {MergeStatus.RESOLVED, MergeStatus.ABANDONED, None}  # None: retried
    ),
    MergeStatus.MERGED: frozenset({MergeStatus.ROLLED_BACK}),
    MergeStatus.RESOLVED: frozenset({MergeStatus.ROLLED_BACK}),
    MergeStatus.ROLLED_BACK: frozenset({MergeStatus.MERGED}),  # rolled forward again
    MergeStatus.EMPTY: frozenset(),
    MergeStatus.ABANDONED: frozenset({None}),  # its cancelled task is retried
    MergeStatus.DRY_RUN: frozenset(),
}

_ATTEMPT_ENDS = frozenset(set(AttemptStatus) - {AttemptStatus.QUEUED, AttemptStatus.RUNNING})

ATTEMPT_TRANSITIONS: dict[AttemptStatus, frozenset[AttemptStatus]] = {
    AttemptStatus.QUEUED: _ATTEMPT_ENDS | {AttemptStatus.RUNNING},
    AttemptStatus.RUNNING: _ATTEMPT_ENDS,
    **{end: frozenset() for end in _ATTEMPT_ENDS},  # an attempt that ended stays ended
}

SESSION_TRANSITIONS: dict[SessionStatus, frozenset[SessionStatus]] = {
    SessionStatus.DRAFT: frozenset(
        {SessionStatus.ACTIVE, SessionStatus.SUSPENDED, SessionStatus.CANCELLED}
    ),
    # Every task ended: `finalized` (all merged and the final checkpoint passed, or a person
    # finished it), or `awaiting_review` (failures, a failed final checkpoint, a conflict).
    SessionStatus.ACTIVE: frozenset(
        {
            SessionStatus.AWAITING_REVIEW,
            SessionStatus.SUSPENDED,
            SessionStatus.FINALIZED,
            SessionStatus.CANCELLED,
        }
    ),
    SessionStatus.AWAITING_REVIEW: frozenset(
        {
            SessionStatus.ACTIVE,
            SessionStatus.SUSPENDED,
            SessionStatus.FINALIZED,
            SessionStatus.CANCELLED,
        }
    ),
    SessionStatus.SUSPENDED: frozenset(
        {
            SessionStatus.ACTIVE,
            SessionStatus.AWAITING_REVIEW,
            SessionStatus.FINALIZED,
            SessionStatus.CANCELLED,
        }
    ),
    # Reopened only when asked: tasks added with `reopen`.
    SessionStatus.FINALIZED: frozenset({SessionStatus.ACTIVE}),
    SessionStatus.CANCELLED: frozenset(),
}


PLAN_TRANSITIONS: dict[PlanStatus | None, frozenset[PlanStatus | None]] = {
    None: frozenset({PlanStatus.PLANNING, PlanStatus.READY}),
    PlanStatus.PLANNING: frozenset({PlanStatus.READY, PlanStatus.FAILED}),
    PlanStatus.READY: frozenset({PlanStatus.READY, PlanStatus.PLANNING, PlanStatus.APPROVED}),
    PlanStatus.FAILED: frozenset({PlanStatus.PLANNING, PlanStatus.READY}),
    PlanStatus.APPROVED: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A change the transition table does not allow: a bug in the caller, raised before
    anything is stored."""


def check_transition(
    table: Mapping[Any, frozenset[Any]], current: str | None, new: str | None, *, what: str
) -> None:
    """Raise `IllegalTransition` unless `table` allows `current` → `new` (`None` stands for
    "no merge status" in `MERGE_TRANSITIONS`)."""
    allowed = table.get(current)
    if allowed is None or new not in allowed:
        raise IllegalTransition(f"{what}: {current} → {new} is not allowed")
