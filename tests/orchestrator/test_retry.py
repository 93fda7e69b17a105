"""The retry decision, as properties over every outcome, reason, count and policy."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarm_orchestrator.graph.retry import (
    FINAL_REASONS,
    Cause,
    Counts,
    RetryPolicy,
    TaskLimits,
    decide,
)

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)

counts = st.builds(
    Counts,
    failed=st.integers(0, 50),
    lost=st.integers(0, 50),
    rate_limited=st.integers(0, 50),
)
limits = st.builds(TaskLimits, max_attempts=st.integers(1, 20), retry_on_gate_failure=st.booleans())
policies = st.builds(
    RetryPolicy,
    backoff_base_s=st.floats(0.01, 60.0),
    backoff_cap_s=st.floats(0.01, 3600.0),
    max_rate_limited=st.integers(0, 20),
    rate_limit_cap_s=st.floats(1.0, 7200.0),
    max_lost=st.integers(0, 20),
)
reasons = st.sampled_from(
    sorted(FINAL_REASONS) + ["exit_code", "gate_failed", "timeout", "crash", "setup_failed"]
)
resets = st.one_of(st.none(), st.integers(-600, 10_000).map(lambda s: NOW + timedelta(seconds=s)))


@given(reason=st.sampled_from(sorted(FINAL_REASONS)), c=counts, lim=limits, policy=policies)
def test_final_reasons_never_retry(
    reason: str, c: Counts, lim: TaskLimits, policy: RetryPolicy
) -> None:
    decision = decide(Cause.FAILED, reason=reason, counts=c, limits=lim, policy=policy)
    assert not decision.again and decision.final_reason == reason
    assert decision.retry_at(NOW) is None


@given(
    reason=reasons,
    c=counts,
    lost=st.integers(0, 1000),
    limited=st.integers(0, 1000),
    lim=limits,
    policy=policies,
    seed=st.integers(0, 2**32),
)
def test_lost_and_rate_limited_attempts_never_count_against_max_attempts(
    reason: str,
    c: Counts,
    lost: int,
    limited: int,
    lim: TaskLimits,
    policy: RetryPolicy,
    seed: int,
) -> None:
    """A failure is judged by failed attempts only: however many lost or rate-limited
    attempts came before, the answer (and its delay) is the same."""
    plain = Counts(failed=c.failed)
    other = Counts(failed=c.failed, lost=lost, rate_limited=limited)
    first = decide(
        Cause.FAILED,
        reason=reason,
        counts=plain,
        limits=lim,
        policy=policy,
        rng=random.Random(seed),
    )
    second = decide(
        Cause.FAILED,
        reason=reason,
        counts=other,
        limits=lim,
        policy=policy,
        rng=random.Random(seed),
    )
    assert first == second
    assert first.again == (
        reason not in FINAL_REASONS
        and (reason != "gate_failed" or lim.retry_on_gate_failure)
        and c.failed < lim.max_attempts
    )


@given(
    failed=st.integers(0, 100),
    lost=st.integers(0, 100),
    limited=st.integers(0, 100),
    lim=limits,
    policy=policies,
)
def test_failed_attempts_never_count_against_the_lost_or_rate_limited_limits(
    failed: int, lost: int, limited: int, lim: TaskLimits, policy: RetryPolicy
) -> None:
    as_lost = decide(Cause.LOST, counts=Counts(failed=failed, lost=lost), limits=lim, policy=policy)
    assert as_lost.again == (lost <= policy.max_lost)
    assert as_lost.delay_s == 0
    as_limited = decide(
        Cause.RATE_LIMITED,
        counts=Counts(failed=failed, rate_limited=limited),
        limits=lim,
        policy=policy,
        now=NOW,
    )
    assert as_limited.again == (limited <= policy.max_rate_limited)


@given(
    cause=st.sampled_from(list(Cause)),
    reason=reasons,
    c=counts,
    lim=limits,
    policy=policies,
    reset=resets,
)
def test_the_delay_stays_within_its_bounds(
    cause: Cause,
    reason: str,
    c: Counts,
    lim: TaskLimits,
    policy: RetryPolicy,
    reset: datetime | None,
) -> None:
    decision = decide(
        cause, reason=reason, counts=c, limits=lim, policy=policy, now=NOW, reset_at=reset
    )
    if not decision.again:
        assert decision.delay_s == 0 and decision.final_reason
        return
    assert decision.final_reason is None
    if cause == Cause.FAILED:
        ceiling = min(policy.backoff_cap_s, policy.backoff_base_s * 2 ** max(0, c.failed - 1))
        assert ceiling / 2 <= decision.delay_s <= ceiling
    elif cause == Cause.RATE_LIMITED:
        upper = policy.rate_limit_cap_s if reset is not None else policy.backoff_cap_s
        assert 0 < decision.delay_s <= upper
    else:  # given back, lost, retried by a person, rolled back: at once
        assert decision.delay_s == 0 and decision.retry_at(NOW) is None


@given(
    ahead_s=st.integers(0, 7200),
    limited=st.integers(0, 10),
    policy=policies,
    lim=limits,
)
def test_rate_limited_attempts_wait_for_the_reset(
    ahead_s: int, limited: int, policy: RetryPolicy, lim: TaskLimits
) -> None:
    """A reported reset is waited for (a little past it), up to the longest wait allowed."""
    reset = NOW + timedelta(seconds=ahead_s)
    decision = decide(
        Cause.RATE_LIMITED,
        counts=Counts(rate_limited=min(limited, policy.max_rate_limited)),
        limits=lim,
        policy=policy,
        now=NOW,
        reset_at=reset,
    )
    assert decision.again
    retry_at = decision.retry_at(NOW)
    assert retry_at is not None
    if ahead_s + 1 <= policy.rate_limit_cap_s:
        assert retry_at >= reset
    else:
        assert decision.delay_s == policy.rate_limit_cap_s


def test_a_reset_without_a_time_zone_is_read_as_utc() -> None:
    naive = (NOW + timedelta(seconds=30)).replace(tzinfo=None)
    decision = decide(
        Cause.RATE_LIMITED,
        counts=Counts(rate_limited=1),
        policy=RetryPolicy(),
        now=NOW,
        reset_at=naive,
    )
    assert decision.delay_s == 31.0


def test_a_failure_needs_the_tasks_limits() -> None:
    with pytest.raises(ValueError, match="limits"):
        decide(Cause.FAILED, reason="exit_code", counts=Counts(failed=1))
