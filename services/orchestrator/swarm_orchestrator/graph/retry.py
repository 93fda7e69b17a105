"""Whether and when a task runs again: one pure decision.

Every path on which an attempt ends without success asks `decide` — an adapter's failure or
rate limit (`reports`), an adapter giving an attempt back (`reports`), a lost attempt
(`runtime.reaper`), a person's retry (`control`), a rollback under a running attempt
(`integration.checkpoints`) — and does what it answers through `task_state`.

The policy has two parts: the orchestrator's (`RetryPolicy`, from its settings) and the
task's own (`max_attempts`, `retry_on_gate_failure`, from its spec). Only attempts that
failed count against `max_attempts`: a lost attempt (its worker died) or a rate-limited one
is not the task's fault and has limits of its own. But a lost attempt that was never heard
from after it started (`lost_as`) failed to start: its agent's start may be what killed its
worker, so it counts as failed (`STARTUP_FAILED`), and a crash loop ends within
`max_attempts` like any failure; `max_lost` is for attempts lost after they made progress.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from swarm_common.backoff import delay_s
from swarm_orchestrator.settings import OrchestratorSettings

__all__ = [
    "FINAL_REASONS",
    "REPAIR_REASONS",
    "Cause",
    "Counts",
    "Decision",
    "RetryPolicy",
    "STARTUP_FAILED",
    "TaskLimits",
    "decide",
    "lost_as",
]

FINAL_REASONS = frozenset({"dead_lettered", "workspace_escape", "invalid_task", "budget_exhausted"})
"""Failure reasons never retried: the message itself is the problem, the agent wrote
outside its worktree (it would again; a person looks first and retries by hand), or it
spent more than its task's own cap (`settings.budget.per_task_usd`: another try would too)."""


STARTUP_FAILED = "startup_failed"
"""The failure reason of an attempt whose agent died before it said anything (its adapter
reports it, with the CLI's last output), or whose worker went silent before its first
heartbeat (the reaper, see `lost_as`). An ordinary failure: it counts against
`max_attempts`."""


REPAIR_REASONS = frozenset({"invalid_plan", "invalid_verdict"})
"""Failure reasons of a read-only run whose answer did not follow its schema: the next
attempt is its repair round, told the errors, and runs at once (no back-off: nothing
transient went wrong)."""


class Cause(StrEnum):
    """Why an attempt ended without success."""

    FAILED = "failed"
    """The attempt failed (the reason says how)."""
    RATE_LIMITED = "rate_limited"
    """The agent's provider refused for a while."""
    LOST = "lost"
    """Its worker died, was cut off, or its report could not be applied."""
    GIVEN_BACK = "given_back"
    """Its adapter gave it up unfinished (shutdown, drain)."""
    RETRIED = "retried"
    """A person asked for another attempt."""
    ROLLED_BACK = "rolled_back"
    """The integration branch it built on was rolled back."""


@dataclass(frozen=True)
class RetryPolicy:
    """The orchestrator's part of the policy."""

    backoff_base_s: float = 5.0
    backoff_cap_s: float = 300.0
    max_rate_limited: int = 10
    """Rate-limited attempts of one task before it fails."""
    rate_limit_cap_s: float = 3600.0
    """Longest wait for a reported rate-limit reset."""
    max_lost: int = 5
    """Lost attempts of one task before it fails."""
    pause_after: int = 3
    """Rate-limited attempts of one agent kind within `pause_window_s` that pause the kind
    (`graph.pauses`); 0: never."""
    pause_window_s: float = 600.0
    pause_s: float = 600.0
    """How long a kind is paused when none of its limits reported a reset."""

    @classmethod
    def from_settings(cls, settings: OrchestratorSettings) -> RetryPolicy:
        """The policy an orchestrator's settings ask for."""
        return cls(
            max_lost=settings.max_lost_attempts,
            pause_after=settings.failover_pause_after,
            pause_window_s=settings.failover_window_s,
            pause_s=settings.failover_pause_s,
        )


@dataclass(frozen=True)
class TaskLimits:
    """The task's part of the policy, from its spec."""

    max_attempts: int
    retry_on_gate_failure: bool = False


@dataclass(frozen=True)
class Counts:
    """A task's attempts so far by how they ended, the one just ended included."""

    failed: int = 0
    lost: int = 0
    rate_limited: int = 0


@dataclass(frozen=True)
class Decision:
    again: bool
    delay_s: float = 0.0
    """How long to wait before the next attempt (0: at once)."""
    final_reason: str | None = None
    """Why it does not run again, when it does not."""

    def retry_at(self, now: datetime) -> datetime | None:
        """When the next attempt may be queued; None for at once (or never)."""
        if not self.again or self.delay_s <= 0:
            return None
        return now + timedelta(seconds=self.delay_s)


_AT_ONCE = Decision(again=True)


_DEFAULT_POLICY = RetryPolicy()


def decide(
    cause: Cause,
    *,
    counts: Counts = Counts(),
    limits: TaskLimits | None = None,
    policy: RetryPolicy = _DEFAULT_POLICY,
    reason: str = "",
    now: datetime | None = None,
    reset_at: datetime | None = None,
    rng: random.Random | None = None,
) -> Decision:
    """Whether the task runs again after an attempt ended with `cause` (and `reason`), and
    when. `reset_at` is the provider's reported reset of a rate limit; `limits` (the task's
    own policy) is needed for `Cause.FAILED`."""
    if cause in (Cause.GIVEN_BACK, Cause.RETRIED, Cause.ROLLED_BACK):
        return _AT_ONCE
    if cause == Cause.LOST:
        if counts.lost <= policy.max_lost:
            return _AT_ONCE
        return Decision(again=False, final_reason=f"lost {counts.lost} times")
    if cause == Cause.RATE_LIMITED:
        return _rate_limited(counts, policy, now=now, reset_at=reset_at, rng=rng)
    if limits is None:
        raise ValueError("a failed attempt's decision needs the task's limits")
    return _failed(reason, counts, limits, policy, rng=rng)


def lost_as(
    *, lease_expired: bool, started_at: datetime | None, heartbeat_at: datetime | None
) -> Cause:
    """How a lost attempt counts. `Cause.FAILED` (reason `STARTUP_FAILED`) when its worker's
    lease lapsed before the worker was heard from after the start (no heartbeat, no
    progress: `task_state.start` sets `heartbeat_at` to the start): the worker died right
    after it claimed the attempt or started its agent, perhaps because of it. Otherwise
    `Cause.LOST`: a worker that died or was cut off after it made progress, or a claim that
    Redis forgot (`lease_expired` False: no fault of the task's)."""
    silent = heartbeat_at is None or (started_at is not None and heartbeat_at <= started_at)
    return Cause.FAILED if lease_expired and silent else Cause.LOST


def _rate_limited(
    counts: Counts,
    policy: RetryPolicy,
    *,
    now: datetime | None,
    reset_at: datetime | None,
    rng: random.Random | None,
) -> Decision:
    if counts.rate_limited > policy.max_rate_limited:
        return Decision(again=False, final_reason=f"rate limited {counts.rate_limited} times")
    wait = _until_reset(reset_at, now or datetime.now(UTC), policy)
    if wait is None:
        wait = delay_s(
            counts.rate_limited, base_s=policy.backoff_base_s, cap_s=policy.backoff_cap_s, rng=rng
        )
    return Decision(again=True, delay_s=wait)


def _failed(
    reason: str,
    counts: Counts,
    limits: TaskLimits,
    policy: RetryPolicy,
    *,
    rng: random.Random | None,
) -> Decision:
    if reason in FINAL_REASONS:
        return Decision(again=False, final_reason=reason)
    if reason == "gate_failed" and not limits.retry_on_gate_failure:
        return Decision(again=False, final_reason="gate_failed")
    if counts.failed >= limits.max_attempts:
        return Decision(again=False, final_reason=f"failed {counts.failed} times")
    if reason in REPAIR_REASONS:
        return _AT_ONCE
    wait = delay_s(counts.failed, base_s=policy.backoff_base_s, cap_s=policy.backoff_cap_s, rng=rng)
    return Decision(again=True, delay_s=wait)


def _until_reset(reset_at: datetime | None, now: datetime, policy: RetryPolicy) -> float | None:
    """Seconds until a provider's reported reset (a little after it), within bounds."""
    if reset_at is None:
        return None
    if reset_at.tzinfo is None:
        reset_at = reset_at.replace(tzinfo=UTC)
    return min(max((reset_at - now).total_seconds() + 1.0, 1.0), policy.rate_limit_cap_s)
