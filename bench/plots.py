"""The PNG plots of a run (matplotlib, Agg: no display needed).

- `<stem>-figures.png`: one panel per target: Swarm's median and its baseline's (or the
  bound), with min–max error bars over the repetitions, and the target's line.
- `<stem>-margins.png`: every target on one axis as Swarm's median over what the target
  allows (1 = exactly on target; left of the line is met), min–max of Swarm as error bars.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402
from report import Outcome  # noqa: E402
from stats import Spread  # noqa: E402

__all__ = ["plot_figures", "plot_margins"]

MET, MISSED, NEUTRAL, BASE = "#2e7d32", "#c62828", "#546e7a", "#90a4ae"


def _scale(outcome: Outcome) -> tuple[float, str]:
    """Seconds shown as ms when the figures are under a second."""
    unit = outcome.target.unit
    values = [s.median for s in (outcome.swarm, outcome.baseline) if s is not None]
    if unit == "s" and values and max(values) < 1:
        return 1000.0, "ms"
    return 1.0, unit


def _bar(ax: Axes, x: int, s: Spread, scale: float, color: str) -> None:
    ax.bar(
        x,
        s.median * scale,
        color=color,
        yerr=[[(s.median - s.min) * scale], [(s.max - s.median) * scale]],
        capsize=6,
        width=0.6,
    )


def plot_figures(outcomes: list[Outcome], path: Path, title: str) -> Path | None:
    shown = [o for o in outcomes if o.swarm is not None]
    if not shown:
        return None
    cols = min(4, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, o in zip(axes.flat, shown, strict=False):
        assert o.swarm is not None
        scale, unit = _scale(o)
        color = {True: MET, False: MISSED, None: NEUTRAL}[o.met]
        _bar(ax, 0, o.swarm, scale, color)
        labels = ["Swarm"]
        if o.baseline is not None and o.target.bound is None:
            _bar(ax, 1, o.baseline, scale, BASE)
            labels.append(o.target.baseline_label)
        if o.baseline is not None and o.target.factor is not None:
            allowed = o.baseline.median * (o.target.factor or 1.0) * scale
            ax.axhline(allowed, color="black", linestyle="--", linewidth=1)
            ax.annotate(
                o.target.text(),
                (0.98, allowed),
                xycoords=("axes fraction", "data"),
                ha="right",
                va="bottom",
                fontsize=8,
            )
        if o.baseline is not None and o.target.bound is None and o.baseline.median > 0:
            spread_of = max(o.swarm.median, o.baseline.median) / max(
                min(o.swarm.median, o.baseline.median), 1e-12
            )
            if spread_of > 20:  # one bar would vanish beside the other
                ax.set_yscale("log")
        ax.set_xticks(range(len(labels)), labels)
        ax.set_xlim(-0.6, 1.6)
        ax.set_ylabel(unit)
        ax.set_title(o.target.title, fontsize=9)
    for ax in list(axes.flat)[len(shown) :]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_margins(outcomes: list[Outcome], path: Path, title: str) -> Path | None:
    """Swarm's median / what the target allows, for each target with a verdict; for a
    `higher is better` target the inverse, so that below 1 is always met."""
    rows = []
    for o in outcomes:
        if o.swarm is None or o.baseline is None or o.target.factor is None:
            continue
        allowed = o.baseline.median * o.target.factor
        if allowed <= 0 or o.swarm.median <= 0:
            continue
        if o.target.better == "lower":
            mid, low, high = (v / allowed for v in (o.swarm.median, o.swarm.min, o.swarm.max))
        else:
            mid, low, high = (allowed / v for v in (o.swarm.median, o.swarm.max, o.swarm.min))
        rows.append((o.target.title, mid, low, high, o.met))
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.4))
    for i, (_, mid, low, high, met) in enumerate(rows):
        color = MET if met else MISSED
        ax.errorbar(mid, i, xerr=[[mid - low], [high - mid]], fmt="o", color=color, capsize=4)
        ax.annotate(f"{mid:.2f}", (mid, i), xytext=(6, 4), textcoords="offset points", fontsize=8)
    lows = [r[2] for r in rows] + [0.5]
    highs = [r[3] for r in rows] + [2.0]
    low_x, high_x = min(lows) / 1.3, max(highs) * 1.3
    ax.set_xlim(low_x, high_x)
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=8)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xscale("log")
    ticks = [2.0**k for k in range(-10, 11) if low_x <= 2.0**k <= high_x]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.set_xlabel("Swarm ÷ what the target allows (< 1: met; log scale)")
    ax.set_title(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
