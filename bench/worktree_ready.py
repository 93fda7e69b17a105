"""Worktree ready (issue 19, benchmark 4b): trivial shell tasks (`true`) on a 5,000-file
repository (`repos.large_repo`), two shell adapters × 2, and how long each attempt waited
for its worktree, against a plain `git worktree add` of the same repository in the same run.

The adapter logs one line per attempt, message `worktree ready`, with `elapsed_ms` (from the
attempt's start to a worktree at the task's base commit, ready to run) and `reused`
(whether a prepared worktree was moved to the commit rather than a new one added); the
figures are read from the adapters' logs (key=value lines of `swarm_common.logs`, or JSON).

A repository's first worktrees are full checkouts: no adapter has one of it yet. So the
session opens with one warm-up task per slot (`warm0`…), and the measured tasks depend on
them all; the figures are over the measured tasks (the warm-up takes are reported apart).

- `ready_p50_s`, `ready_p99_s`: percentiles of `elapsed_ms` over the measured attempts;
- `cold_max_s`: the slowest warm-up take (a full checkout, several at once);
- `reused_share`: the share of measured attempts that reused a prepared worktree;
- `ready_lines`: how many such lines were found (0: the adapter does not log them);
- `worktree_add_s`: the median of `git worktree add -b <new> <dir> main` in a clone of the
  same repository, 5 times (`repos.worktree_add_times`);
- `started_to_succeeded_s`: the median task from `task.started` to `task.succeeded`.

    .venv/bin/python bench/worktree_ready.py [--quick]     (--quick: 8 tasks, 2 adds)
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import rest  # noqa: E402
from git_path import true_tasks  # noqa: E402
from harness import bench_stack  # noqa: E402
from repos import large_repo, worktree_add_times  # noqa: E402
from stats import percentile  # noqa: E402

__all__ = ["MESSAGE", "once", "ready_lines"]

MESSAGE = "worktree ready"
TASKS, QUICK_TASKS = 40, 8
ADDS, QUICK_ADDS = 5, 2
ADAPTERS, CONCURRENCY = 2, 2
_FIELDS_START = re.compile(r" \w+=")
_FIELD = re.compile(r"""(\w+)=('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\S+)""")


def ready_lines(text: str) -> list[dict[str, str]]:
    """The fields of every `worktree ready` line of a log: `time LEVEL logger message
    key=value …` (values with spaces quoted by `repr`), or one JSON object a line."""
    found = []
    for line in text.splitlines():
        if MESSAGE not in line:
            continue
        if line.lstrip().startswith("{"):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("message") == MESSAGE:
                found.append({k: str(v) for k, v in record.items()})
            continue
        head, _, rest_of_line = line.partition(f" {MESSAGE}")
        if not head or (rest_of_line and not _FIELDS_START.match(rest_of_line)):
            continue  # another message that merely begins with these words
        found.append({key: _unquote(value) for key, value in _FIELD.findall(rest_of_line)})
    return found


def _unquote(value: str) -> str:
    if value[:1] in "'\"" and value[-1:] == value[:1]:
        try:
            return str(ast.literal_eval(value))
        except (ValueError, SyntaxError):
            return value[1:-1]
    return value


def once(quick: bool = False) -> dict[str, float]:
    count = QUICK_TASKS if quick else TASKS
    with bench_stack("worktree") as (stack, root):
        repo = large_repo(root / "repo")
        names = [f"shell-{i}" for i in range(ADAPTERS)]
        with rest.running(stack, [(n, "shell", CONCURRENCY) for n in names]) as client:
            run = rest.run_session(client, repo, _tasks(count), timeout_s=120 + 10 * count)
        every = [fields for n in names for fields in ready_lines(_log(stack.logs / f"{n}.log"))]
        lines = [f for f in every if not str(f.get("task_key", "")).startswith(WARM)]
        adds = worktree_add_times(repo, root / "floor", QUICK_ADDS if quick else ADDS)
    figures = {
        "worktree_add_s": percentile(adds, 50),
        "started_to_succeeded_s": percentile(
            rest.spans(run.events, "task.started", "task.succeeded"), 50
        ),
        "ready_lines": float(len(lines)),
    }
    cold = [float(f["elapsed_ms"]) / 1000 for f in every if f not in lines and "elapsed_ms" in f]
    if cold:
        figures["cold_max_s"] = max(cold)
    elapsed = [float(f["elapsed_ms"]) / 1000 for f in lines if "elapsed_ms" in f]
    if elapsed:
        figures["ready_p50_s"] = percentile(elapsed, 50)
        figures["ready_p99_s"] = percentile(elapsed, 99)
        reused = [f.get("reused", "").lower() in ("true", "1", "yes") for f in lines]
        figures["reused_share"] = sum(reused) / len(reused)
    return figures


WARM = "warm"


def _tasks(count: int) -> list[dict[str, object]]:
    """One warm-up task per slot, then `count` tasks that wait for them all."""
    warm = [f"{WARM}{i}" for i in range(ADAPTERS * CONCURRENCY)]
    return [
        *({"key": key, "prompt": "true"} for key in warm),
        *({**t, "depends_on": warm} for t in true_tasks(count)),
    ]


def _log(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


if __name__ == "__main__":
    sys.stdout.write(json.dumps(once(quick="--quick" in sys.argv)) + "\n")
