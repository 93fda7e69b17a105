"""The few statistics the benchmarks report: a percentile (linear between the two nearest
ranks, as numpy's default) and the median, minimum and maximum of a figure's repetitions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Spread", "percentile", "spread"]


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0–100) of `values`, interpolated linearly between ranks."""
    if not values:
        raise ValueError("no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not within 0-100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Spread:
    """One figure over a benchmark's repetitions."""

    median: float
    min: float
    max: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return {"median": self.median, "min": self.min, "max": self.max, "n": self.n}


def spread(values: Sequence[float]) -> Spread:
    return Spread(median=percentile(values, 50), min=min(values), max=max(values), n=len(values))
