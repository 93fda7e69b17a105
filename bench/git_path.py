"""Git path (issue 19, benchmark 4a): trivial shell tasks (`true`) on a small repository,
two shell adapters × 2, against the floor of plain git measured in the same run.

- `started_to_succeeded_s`: the median over the tasks of `task.succeeded` minus
  `task.started` as the adapter stamped them (`data.at` of each: when it began the task,
  when its result was ready): worktree, agent, escape check, commit. Not the timeline's
  `created_at`, which is when the orchestrator applied each report: reports applied in one
  batch share that time, so a task both of whose reports came in one batch took 0 s there;
- `started_to_succeeded_p99_s`, `tasks_per_s` (POST → done), `applied_span_p50_s` (the
  same median from the timeline's `created_at`): for orientation;
- `floor_s`: the median of, in Python subprocess calls on a clone of the same repository,
  `git worktree add -b <new> <dir> main`, write one file, `git add` + `git commit`,
  `git worktree remove --force` (`repos.worktree_floor`).

    .venv/bin/python bench/git_path.py [--quick]     (--quick: 10 tasks, 3 floors)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import rest  # noqa: E402
from harness import bench_stack  # noqa: E402
from repos import small_repo, worktree_floor  # noqa: E402
from stats import percentile  # noqa: E402

__all__ = ["once", "true_tasks"]

TASKS, QUICK_TASKS = 40, 10
FLOORS, QUICK_FLOORS = 10, 3
ADAPTERS, CONCURRENCY = 2, 2


def true_tasks(count: int) -> list[dict[str, object]]:
    return [{"key": f"t{i}", "prompt": "true"} for i in range(count)]


def once(quick: bool = False) -> dict[str, float]:
    count = QUICK_TASKS if quick else TASKS
    with bench_stack("gitpath") as (stack, root):
        adapters = [(f"shell-{i}", "shell", CONCURRENCY) for i in range(ADAPTERS)]
        with rest.running(stack, adapters) as client:
            repo = small_repo(root / "repo")
            run = rest.run_session(client, repo, true_tasks(count), timeout_s=60 + 5 * count)
        floors = worktree_floor(repo, root / "floor", QUICK_FLOORS if quick else FLOORS)
    runs = rest.stamped_spans(run.events, "task.started", "task.succeeded")
    applied = rest.spans(run.events, "task.started", "task.succeeded")
    return {
        "started_to_succeeded_s": percentile(runs, 50),
        "started_to_succeeded_p99_s": percentile(runs, 99),
        "applied_span_p50_s": percentile(applied, 50),
        "tasks_per_s": count / run.seconds,
        "floor_s": percentile(floors, 50),
    }


if __name__ == "__main__":
    sys.stdout.write(json.dumps(once(quick="--quick" in sys.argv)) + "\n")
