"""DAG scheduling (issue 19, benchmark 6): a seeded random graph of 1,000 sleep tasks on 32
adapter slots (4 shell adapters × 8), against the best any scheduler could do.

The graph (`random_dag`, `random.Random(19)`): task `i` depends on 0–3 tasks drawn from the
tasks before it, and sleeps a duration drawn uniformly from 0.1–1 s (`sleep 0.37`; shell
tasks on a one-file repository, each in its own git worktree as every shell task is).

- `makespan_s`: from sending `POST /v1/sessions` with the whole graph until the last
  `task.succeeded` entry of its timeline (`rest.Run.seconds`);
- `ideal_s`: max(critical path, total work ÷ 32), both from the graph's durations: no
  schedule on 32 slots can end sooner;
- `critical_path_s`, `work_per_slot_s`, `span_s` (first `task.started` to last
  `task.succeeded`): for orientation;
- `cpu_s_per_task` and `cpu_<group>_s_per_task`: CPU seconds the run's processes spent per
  task (`bench/cpu.py`; the adapters' group holds the git, shell and sleep processes below
  them), while the session ran and its timeline was read;
- `cpu_bound_s`: those CPU seconds over the machine's cores: no makespan can be shorter, so
  where it passes `ideal_s` the run is bound by the CPU, not by the order of dispatch.

    .venv/bin/python bench/dag_scheduling.py [--quick]     (--quick: 100 tasks)
"""

from __future__ import annotations

import json
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cpu  # noqa: E402
import rest  # noqa: E402
from harness import bench_stack  # noqa: E402
from repos import small_repo  # noqa: E402

__all__ = ["Dag", "once", "random_dag"]

SEED = 19
TASKS, QUICK_TASKS = 1000, 100
ADAPTERS, CONCURRENCY = 4, 8
SLOTS = ADAPTERS * CONCURRENCY


@dataclass(frozen=True)
class Dag:
    durations: list[float]
    depends_on: list[list[int]]

    def tasks(self) -> list[dict[str, object]]:
        return [
            {
                "key": _key(i),
                "prompt": f"sleep {d:.2f}",
                "depends_on": [_key(j) for j in deps],
            }
            for i, (d, deps) in enumerate(zip(self.durations, self.depends_on, strict=True))
        ]

    def critical_path(self) -> float:
        """The longest chain of durations through the dependencies."""
        finish: list[float] = []
        for d, deps in zip(self.durations, self.depends_on, strict=True):
            finish.append(d + max((finish[j] for j in deps), default=0.0))
        return max(finish, default=0.0)

    def ideal(self, slots: int) -> float:
        return max(self.critical_path(), sum(self.durations) / slots)


def _key(i: int) -> str:
    return f"d{i:04d}"


def random_dag(count: int, seed: int = SEED) -> Dag:
    """Task `i` depends on 0–3 tasks before it and lasts 0.1–1 s (hundredths)."""
    rng = random.Random(seed)
    durations, depends_on = [], []
    for i in range(count):
        deps = sorted(rng.sample(range(i), min(i, rng.randint(0, 3))))
        durations.append(round(rng.uniform(0.1, 1.0), 2))
        depends_on.append(deps)
    return Dag(durations=durations, depends_on=depends_on)


def once(quick: bool = False) -> dict[str, float]:
    dag = random_dag(QUICK_TASKS if quick else TASKS)
    with bench_stack("dag") as (stack, root):
        adapters = [(f"shell-{i}", "shell", CONCURRENCY) for i in range(ADAPTERS)]
        with rest.running(stack, adapters) as client:
            repo = small_repo(root / "repo")
            with cpu.stack_meter(stack) as meter:
                meter.start()
                run = rest.run_session(client, repo, dag.tasks(), timeout_s=600)
                spent = meter.stop()
    starts = rest.first_at(run.events, "task.started").values()
    ends = rest.first_at(run.events, "task.succeeded").values()
    per_task = cpu.per_task(spent, len(dag.durations))
    return {
        "makespan_s": run.seconds,
        "ideal_s": dag.ideal(SLOTS),
        "critical_path_s": dag.critical_path(),
        "work_per_slot_s": sum(dag.durations) / SLOTS,
        "span_s": max(ends) - min(starts),
        "cpu_bound_s": per_task["cpu_s_per_task"] * len(dag.durations) / (os.cpu_count() or 1),
        **per_task,
    }


if __name__ == "__main__":
    sys.stdout.write(json.dumps(once(quick="--quick" in sys.argv)) + "\n")
