"""What a `make bench` run found, and how it is written down: each benchmark's raw
repetitions and the median, minimum and maximum of each figure; each target's ratio and
whether it is met; the Markdown table and the JSON record of bench/results/."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stats import Spread, spread
from targets import Target

__all__ = [
    "Outcome",
    "Runs",
    "evaluate",
    "fmt_value",
    "markdown_table",
    "record",
    "runs_from",
    "summarise",
    "write_json",
]


@dataclass
class Runs:
    """One benchmark's repetitions: the figures of each, how long each took, what failed."""

    name: str
    title: str
    runs: list[dict[str, float]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "runs": self.runs,
            "seconds": [round(s, 2) for s in self.seconds],
            "errors": self.errors,
            "skipped": self.skipped,
            "summary": {k: v.as_dict() for k, v in summarise(self).items()},
        }


def runs_from(data: dict[str, Any]) -> dict[str, Runs]:
    """The benchmarks' repetitions as a recorded run (`record`) holds them."""
    return {
        name: Runs(
            name=name,
            title=b["title"],
            runs=[{k: float(v) for k, v in run.items()} for run in b["runs"]],
            seconds=list(b["seconds"]),
            errors=list(b["errors"]),
            skipped=b["skipped"],
        )
        for name, b in data["benchmarks"].items()
    }


def summarise(runs: Runs) -> dict[str, Spread]:
    """Each figure's spread over the repetitions that gave it (NaN values left out)."""
    keys = sorted({k for run in runs.runs for k in run})
    found: dict[str, Spread] = {}
    for key in keys:
        values = [run[key] for run in runs.runs if key in run and not math.isnan(run[key])]
        if values:
            found[key] = spread(values)
    return found


@dataclass(frozen=True)
class Outcome:
    target: Target
    swarm: Spread | None
    baseline: Spread | None
    """The baseline's spread; for a bound, the bound itself."""
    ratio: float | None
    met: bool | None
    """None: reported only, or a figure is missing (a benchmark failed or was skipped)."""

    def as_dict(self) -> dict[str, Any]:
        t = self.target
        return {
            "key": t.key,
            "title": t.title,
            "unit": t.unit,
            "swarm": str(t.swarm),
            "baseline": str(t.baseline) if t.baseline else None,
            "bound": t.bound,
            "factor": t.factor,
            "better": t.better,
            "target": t.text(),
            "swarm_spread": self.swarm.as_dict() if self.swarm else None,
            "baseline_spread": self.baseline.as_dict() if self.baseline else None,
            "ratio": self.ratio,
            "met": self.met,
        }


def evaluate(target: Target, results: dict[str, Runs]) -> Outcome:
    swarm = _figure(results, target.swarm.benchmark, target.swarm.key)
    if target.bound is not None:
        baseline: Spread | None = Spread(target.bound, target.bound, target.bound, 0)
    elif target.baseline is not None:
        baseline = _figure(results, target.baseline.benchmark, target.baseline.key)
    else:
        baseline = None
    ratio = None
    if swarm is not None and baseline is not None and baseline.median > 0:
        ratio = swarm.median / baseline.median
    met = None
    if ratio is not None and target.factor is not None:
        met = ratio <= target.factor if target.better == "lower" else ratio >= target.factor
    return Outcome(target=target, swarm=swarm, baseline=baseline, ratio=ratio, met=met)


def _figure(results: dict[str, Runs], benchmark: str, key: str) -> Spread | None:
    runs = results.get(benchmark)
    return summarise(runs).get(key) if runs is not None else None


def fmt_value(value: float, unit: str) -> str:
    """`0.0079` s → `7.9 ms`; `1234.5` tasks/s → `1,234 tasks/s`."""
    if unit == "s" and abs(value) < 1:
        return f"{_sig(value * 1000)} ms"
    return f"{_sig(value)} {unit}"


def _sig(value: float) -> str:
    """Three significant figures, thousands separated."""
    if value == 0:
        return "0"
    digits = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:,.{digits}f}"


def _cell(outcome: Outcome, which: str) -> str:
    s = outcome.swarm if which == "swarm" else outcome.baseline
    unit = outcome.target.unit
    if s is None:
        return "—"
    if which == "baseline" and outcome.target.bound is not None:
        return f"bound {fmt_value(s.median, unit)}"
    if s.n <= 1:
        return fmt_value(s.median, unit)
    return (
        f"{fmt_value(s.median, unit)} ({_sig(_scaled(s.min, unit))}–{_sig(_scaled(s.max, unit))})"
    )


def _scaled(value: float, unit: str) -> float:
    """The min and max are shown in the median's unit (ms when the median is)."""
    return value * 1000 if unit == "s" and abs(value) < 1 else value


def _cell_range(outcome: Outcome) -> str:
    return _cell(outcome, "swarm")


def markdown_table(outcomes: list[Outcome], results: dict[str, Runs]) -> str:
    rows = [
        "| benchmark | Swarm median (min–max) | baseline median | ratio | target | met? |",
        "|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        swarm = _cell_range(o)
        if o.swarm is None:
            swarm = _why_missing(o.target, results)
        compared = o.target.factor is not None or o.target.baseline is not None
        baseline = _cell(o, "baseline") if compared else "—"
        if o.baseline is not None and o.target.baseline_label and o.target.bound is None:
            baseline = f"{baseline} ({o.target.baseline_label})"
        ratio = f"{o.ratio:.2f}×" if o.ratio is not None else "—"
        met = {True: "yes", False: "**no**", None: "—"}[o.met]
        rows.append(
            f"| {o.target.title} | {swarm} | {baseline} | {ratio} | {o.target.text()} | {met} |"
        )
    return "\n".join(rows) + "\n"


def _why_missing(target: Target, results: dict[str, Runs]) -> str:
    runs = results.get(target.swarm.benchmark)
    if runs is None:
        return "not run"
    if runs.skipped:
        return f"skipped: {runs.skipped}"
    if runs.errors:
        return "failed (see JSON)"
    return "no figure"


def record(
    *,
    results: dict[str, Runs],
    outcomes: list[Outcome],
    machine: dict[str, Any],
    options: dict[str, Any],
    started_at: str,
    elapsed_s: float,
) -> dict[str, Any]:
    return {
        "started_at": started_at,
        "elapsed_s": round(elapsed_s, 1),
        "options": options,
        "machine": machine,
        "benchmarks": {name: runs.as_dict() for name, runs in results.items()},
        "targets": [o.as_dict() for o in outcomes],
        "met": sum(o.met is True for o in outcomes),
        "missed": sum(o.met is False for o in outcomes),
        "unknown": sum(o.met is None and o.target.factor is not None for o in outcomes),
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
