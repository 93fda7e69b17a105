"""The start-up watchdog: an adapter whose attempts keep failing at start leaves rotation.

A *start failure* is an attempt that failed before its agent did anything, through the
adapter's fault rather than the task's: `startup_failed` (the agent CLI died before its
first event: a missing or broken binary, a missing library, a crash on start; see
`runners.cli`), `worktree_error` (the attempt's worktree could not be made: a full disk, a
broken workspace or git) and `adapter_error` (the adapter itself failed). A task's own
failure is none, with output or without: a command that exits non-zero (a shell task that
prints nothing and exits 1 failed as its command said; bash itself did not fail to start),
a gate, a setup command, a timeout, a rate limit. A cancelled attempt says nothing either
way; any other result ends the streak.

After `max_start_failures` start failures in a row (`SWARM_MAX_START_FAILURES`; 0: never),
the adapter leaves rotation (`worker.Adapter.leave_rotation`): it takes no more messages,
withdraws its liveness key (the orchestrator stops counting its slots), hands back what it
holds as a drain does, logs one error line and exits with `OUT_OF_ROTATION_EXIT`, so that a
supervisor notices. The orchestrator counts each start failure against its task's
`max_attempts` like any failure (`swarm_orchestrator.graph.retry`).
"""

from __future__ import annotations

from dataclasses import dataclass

from swarm_common.messages import Message, TaskCancelled, TaskFailed

__all__ = ["OUT_OF_ROTATION_EXIT", "START_FAILURES", "STARTUP_FAILED", "StartWatch"]

STARTUP_FAILED = "startup_failed"
"""The failure reason of an attempt whose agent died before its first event."""

START_FAILURES = frozenset({STARTUP_FAILED, "worktree_error", "adapter_error"})
"""Failure reasons that say more about the adapter than about the task."""

OUT_OF_ROTATION_EXIT = 3
"""The exit status of an adapter that left rotation (2: it could not start at all)."""


@dataclass
class StartWatch:
    """The adapter's start failures in a row, as its attempts end (in the order they end,
    over all its slots)."""

    limit: int
    """Start failures in a row that take the adapter out of rotation; 0: never."""
    streak: int = 0
    last: str = ""
    """The last start failure, as `reason: error`."""

    def note(self, outcome: Message) -> bool:
        """Count one attempt's result message; True once the last `limit` attempts all
        failed at start."""
        if isinstance(outcome, TaskCancelled):
            return self.tripped
        if isinstance(outcome, TaskFailed) and outcome.reason in START_FAILURES:
            self.streak += 1
            self.last = f"{outcome.reason}: {outcome.error}"
        else:
            self.streak = 0
        return self.tripped

    @property
    def tripped(self) -> bool:
        return 0 < self.limit <= self.streak
