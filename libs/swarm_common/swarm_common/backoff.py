"""Back-off with jitter, written once: every retry loop of every process and the delay
before a failed task runs again take their waits from here.

Jitter spreads the retries of many processes that failed together (a Redis restart wakes
every adapter at once) so they do not come back in lock step. The delay after the n-th
failure in a row is drawn uniformly from [ceiling / 2, ceiling], the ceiling being
`base_s · 2^(n-1)` capped at `cap_s`: it never waits less than half the plain exponential
step, so a loop still backs off, and never more than the cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field

__all__ = ["Backoff", "delay_s", "sleep"]


def delay_s(
    failures: int, *, base_s: float, cap_s: float, rng: random.Random | None = None
) -> float:
    """The wait after `failures` failures in a row (1 for the first), with jitter."""
    ceiling = min(cap_s, base_s * 2 ** min(max(0, failures - 1), 62))
    return (rng or random).uniform(ceiling / 2, ceiling)


@dataclass
class Backoff:
    """The state of one retry loop: how many failures in a row, and the next wait.

    `failed()` counts a failure and returns how long to wait; `succeeded()` starts over.
    `wait(stop)` sleeps that long, or until `stop` is set."""

    base_s: float = 0.5
    cap_s: float = 10.0
    failures: int = field(default=0, init=False)

    def failed(self) -> float:
        self.failures += 1
        return delay_s(self.failures, base_s=self.base_s, cap_s=self.cap_s)

    def succeeded(self) -> None:
        self.failures = 0

    async def wait(self, stop: asyncio.Event | None = None) -> float:
        """Count a failure and wait its delay (less when `stop` is set meanwhile); return
        the delay."""
        delay = self.failed()
        await sleep(delay, stop)
        return delay


async def sleep(seconds: float, stop: asyncio.Event | None = None) -> None:
    """Sleep `seconds`, or less when `stop` is set meanwhile."""
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
