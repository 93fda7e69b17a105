"""The states of sessions, tasks and attempts, and which changes between them are allowed.

One table per kind, so every writer (API, event consumer, scheduler) checks the same rules.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "AttemptStatus",
    "SessionStatus",
    "TaskStatus",
    "TASK_TRANSITIONS",
    "TERMINAL_TASK_STATES",
    "can_transition",
]


class SessionStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    AWAITING_REVIEW = "awaiting_review"
    SUSPENDED = "suspended"
    FINALIZED = "finalized"
    CANCELLED = "cancelled"


class TaskStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    BLOCKED = "blocked"
    AWAITING_APPROVAL = "awaiting_approval"


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

TERMINAL_ATTEMPT_STATES = frozenset(
    {
        AttemptStatus.SUCCEEDED,
        AttemptStatus.FAILED,
        AttemptStatus.CANCELLED,
        AttemptStatus.LOST,
        AttemptStatus.RATE_LIMITED,
    }
)

TASK_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.PENDING: frozenset({TaskStatus.QUEUED, TaskStatus.BLOCKED, TaskStatus.CANCELLED}),
    TaskStatus.QUEUED: frozenset(
        {
            TaskStatus.RUNNING,
            TaskStatus.SUCCEEDED,
            TaskStatus.FAILED,
            TaskStatus.CANCELLED,
            TaskStatus.PENDING,
            TaskStatus.AWAITING_APPROVAL,
        }
    ),
    TaskStatus.RUNNING: frozenset(
        {
            TaskStatus.SUCCEEDED,
            TaskStatus.FAILED,
            TaskStatus.CANCELLED,
            TaskStatus.PENDING,
            TaskStatus.AWAITING_APPROVAL,
        }
    ),
    TaskStatus.AWAITING_APPROVAL: frozenset(
        {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED}
    ),
    # Terminal states leave only through a retry (failed, cancelled) or when the parent
    # that blocked them is retried (blocked).
    TaskStatus.SUCCEEDED: frozenset(),
    TaskStatus.FAILED: frozenset({TaskStatus.PENDING, TaskStatus.QUEUED}),
    TaskStatus.CANCELLED: frozenset({TaskStatus.PENDING, TaskStatus.QUEUED}),
    TaskStatus.BLOCKED: frozenset({TaskStatus.PENDING, TaskStatus.CANCELLED}),
}


def can_transition(current: TaskStatus | str, new: TaskStatus | str) -> bool:
    return TaskStatus(new) in TASK_TRANSITIONS[TaskStatus(current)]
