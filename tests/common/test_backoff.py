"""The one back-off helper: waits grow, stay within their bounds, spread with jitter and
start over after a success."""

from __future__ import annotations

import asyncio
import random

from hypothesis import given
from hypothesis import strategies as st

from swarm_common.backoff import Backoff, delay_s, sleep


def test_delays_grow_and_are_capped() -> None:
    delays = [delay_s(n, base_s=2.0, cap_s=30.0) for n in range(1, 10)]
    assert 1.0 <= delays[0] <= 2.0
    assert 8.0 <= delays[3] <= 16.0
    assert all(15.0 <= d <= 30.0 for d in delays[5:])


@given(
    failures=st.integers(min_value=0, max_value=10_000),
    base=st.floats(min_value=0.001, max_value=100.0),
    cap=st.floats(min_value=0.001, max_value=10_000.0),
)
def test_a_delay_stays_within_half_and_all_of_its_ceiling(
    failures: int, base: float, cap: float
) -> None:
    ceiling = min(cap, base * 2 ** max(0, failures - 1)) if failures < 60 else cap
    delay = delay_s(failures, base_s=base, cap_s=cap)
    assert ceiling / 2 <= delay <= ceiling


def test_jitter_spreads_processes_that_failed_together() -> None:
    rng = random.Random(7)
    delays = {delay_s(4, base_s=1.0, cap_s=60.0, rng=rng) for _ in range(50)}
    assert len(delays) == 50  # not in lock step
    assert all(4.0 <= d <= 8.0 for d in delays)


def test_backoff_counts_failures_and_starts_over_after_a_success() -> None:
    backoff = Backoff(base_s=1.0, cap_s=8.0)
    first, second, third = backoff.failed(), backoff.failed(), backoff.failed()
    assert (0.5 <= first <= 1.0) and (1.0 <= second <= 2.0) and (2.0 <= third <= 4.0)
    backoff.succeeded()
    assert backoff.failures == 0
    assert 0.5 <= backoff.failed() <= 1.0


async def test_wait_ends_early_when_stop_is_set() -> None:
    stop = asyncio.Event()
    stop.set()
    backoff = Backoff(base_s=60.0, cap_s=60.0)
    delay = await asyncio.wait_for(backoff.wait(stop), timeout=5)
    assert 30.0 <= delay <= 60.0 and backoff.failures == 1
    await asyncio.wait_for(sleep(60.0, stop), timeout=5)
