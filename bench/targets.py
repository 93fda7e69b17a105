"""What `make bench` runs and what it holds Swarm to (issue 19): the benchmarks, each a module
with `once(quick) -> {figure: value}`, and the targets, each a figure of Swarm against a
baseline figure of the same run (Celery, a plain git floor, an ideal schedule) or against a
fixed bound.

A target's ratio is Swarm's median over the baseline's median (or over the bound); it is met
when that ratio is at most (`lower` is better) or at least (`higher`) the target's factor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["BENCHMARKS", "TARGETS", "Benchmark", "Figure", "Target", "needed"]


@dataclass(frozen=True)
class Benchmark:
    name: str
    """What `--only` calls it."""
    module: str
    """The module under bench/ whose `once(quick)` runs one repetition."""
    title: str
    owner: str = ""
    """Who writes the module when it is not the runner's own (it may be missing for now)."""


@dataclass(frozen=True)
class Figure:
    benchmark: str
    key: str

    def __str__(self) -> str:
        return f"{self.benchmark}.{self.key}"


@dataclass(frozen=True)
class Target:
    key: str
    title: str
    unit: str
    """`s`, `tasks/s`, `MB`: how the figures are shown."""
    swarm: Figure
    baseline: Figure | None = None
    baseline_label: str = ""
    bound: float | None = None
    """A fixed bound instead of a baseline (then the factor is 1)."""
    factor: float | None = 1.0
    """The ratio allowed; None: reported only, no target."""
    better: Literal["lower", "higher"] = "lower"

    def text(self) -> str:
        """The target as the table shows it (`≤ 0.5× Celery`, `≤ 2 s`)."""
        if self.factor is None:
            return "reported"
        sign = "≤" if self.better == "lower" else "≥"
        if self.bound is not None:
            return f"{sign} {self.bound:g} {self.unit}"
        return f"{sign} {self.factor:g}× {self.baseline_label}"


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("celery", "celery_baseline", "Celery 5 baseline (Redis broker, prefork -c 2)"),
    Benchmark(
        "accept",
        "accept_cancel",
        "Accept and cancel a 10,000-task graph",
        owner="HELPER ACCEPT",
    ),
    Benchmark("throughput", "durable_throughput", "Durable throughput, 20,000 noop tasks"),
    Benchmark("dispatch", "dispatch_latency", "Dispatch latency at 200 noop tasks/s"),
    Benchmark("git", "git_path", "Git path, trivial shell tasks on a small repository"),
    Benchmark("worktree", "worktree_ready", "Worktree ready, 5,000-file repository"),
    Benchmark("merge", "merge_queue", "Merge queue, 200 tasks into a 5,000-file repository"),
    Benchmark("dag", "dag_scheduling", "DAG scheduling, 1,000 sleep tasks on 32 slots"),
    Benchmark("recovery", "recovery", "Recovery after kill -9 of an adapter"),
    Benchmark("growth", "growth", "Growth, noop throughput at 1,000 and 10,000 tasks"),
)

CELERY = "Celery"

TARGETS: tuple[Target, ...] = (
    Target(
        "accept_independent",
        "1. Accept 10,000 independent tasks",
        "s",
        Figure("accept", "accept_independent_s"),
        bound=2.0,
    ),
    Target(
        "accept_layers",
        "1. Accept 10,000 tasks, 100 layers × 100",
        "s",
        Figure("accept", "accept_layers_s"),
        bound=2.0,
    ),
    Target(
        "cancel_answer",
        "1. Cancel 10,000 queued tasks: answer",
        "s",
        Figure("accept", "cancel_answer_s"),
        bound=2.0,
    ),
    Target(
        "peak_rss",
        "1. Orchestrator peak memory",
        "MB",
        Figure("accept", "peak_rss_mb"),
        factor=None,
    ),
    Target(
        "throughput",
        "2. Durable throughput, 20,000 noop tasks",
        "tasks/s",
        Figure("throughput", "tasks_per_s"),
        Figure("celery", "tasks_per_s"),
        baseline_label=CELERY,
        factor=1.0,
        better="higher",
    ),
    Target(
        "throughput_cpu",
        "2. CPU per task, every process of the run",
        "s",
        Figure("throughput", "cpu_s_per_task"),
        Figure("celery", "cpu_s_per_task"),
        baseline_label=CELERY,
        factor=None,
    ),
    Target(
        "dispatch_p99",
        "3. Dispatch latency p99 at 200 tasks/s (queued → the adapter starts it)",
        "s",
        Figure("dispatch", "queued_to_adapter_start_p99_s"),
        Figure("celery", "enqueue_to_start_p99_s"),
        baseline_label=CELERY,
        factor=0.5,
    ),
    Target(
        "git_path",
        "4. Trivial shell task, started → succeeded",
        "s",
        Figure("git", "started_to_succeeded_s"),
        Figure("git", "floor_s"),
        baseline_label="git floor",
        factor=3.0,
    ),
    Target(
        "worktree_p50",
        "4. Worktree ready p50, 5,000 files",
        "s",
        Figure("worktree", "ready_p50_s"),
        Figure("worktree", "worktree_add_s"),
        baseline_label="git worktree add",
        factor=0.2,
    ),
    Target(
        "worktree_p99",
        "4. Worktree ready p99, 5,000 files",
        "s",
        Figure("worktree", "ready_p99_s"),
        Figure("worktree", "worktree_add_s"),
        baseline_label="git worktree add",
        factor=1.0,
    ),
    Target(
        "merge",
        "5. Merge queue, time per merge",
        "s",
        Figure("merge", "s_per_merge"),
        Figure("merge", "floor_s_per_merge"),
        baseline_label="git floor",
        factor=2.0,
    ),
    Target(
        "dag",
        "6. DAG makespan, 1,000 tasks on 32 slots",
        "s",
        Figure("dag", "makespan_s"),
        Figure("dag", "ideal_s"),
        baseline_label="ideal",
        factor=1.05,
    ),
    Target(
        "recovery",
        "7. Recovery after kill -9",
        "s",
        Figure("recovery", "rerun_after_kill_s"),
        bound=15.0,
    ),
    Target(
        "growth",
        "8. Growth, tasks/s at 10,000 vs 1,000",
        "tasks/s",
        Figure("growth", "tasks_per_s_10000"),
        Figure("growth", "tasks_per_s_1000"),
        baseline_label="1,000 tasks",
        factor=0.8,
        better="higher",
    ),
)


def needed(selected: list[str]) -> list[str]:
    """The benchmarks to run for `selected` (in the catalogue's order): those named, and
    those whose figures their targets compare against (`throughput` brings `celery`)."""
    wanted = set(selected)
    for target in TARGETS:
        if target.swarm.benchmark in wanted and target.baseline is not None:
            wanted.add(target.baseline.benchmark)
    unknown = wanted - {b.name for b in BENCHMARKS}
    if unknown:
        raise ValueError(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    return [b.name for b in BENCHMARKS if b.name in wanted]
