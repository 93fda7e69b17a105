"""Merge queue (issue 19, benchmark 5): 200 finished shell tasks, each of which wrote a new
file of its own, merged one by one into the integration branch of a 5,000-file repository,
against the floor of plain git plumbing doing the same 200 merges in the same run.

The tasks say `requires_approval`, so each waits in `awaiting_approval` once its work is
done; when all 200 wait, they are approved (4 clients at once) and the merge queue takes
them: what is timed is merging finished work, not running it.

- `s_per_merge`: the merge queue's busy time per merge, from the timeline: with the
  `task.merged` entries in order, each merge counts from the later of the previous merge
  and its own `task.approved` to its own `task.merged` (so time the queue sat empty,
  waiting for an approval, is not counted); the sum over the merges ÷ 200;
- `merges_per_s`: 1 ÷ that;
- `floor_s_per_merge`: the same 200 merges by hand in a bare clone of the repository, each
  `git merge-tree --write-tree`, `git commit-tree` with both parents, `git update-ref`
  (`repos.merge_floor`), total time ÷ 200.

    .venv/bin/python bench/merge_queue.py [--quick]     (--quick: 20 tasks)
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import rest  # noqa: E402
from harness import bench_stack  # noqa: E402
from repos import large_repo, merge_floor  # noqa: E402

__all__ = ["busy_per_merge", "once"]

TASKS, QUICK_TASKS = 200, 20
ADAPTERS, CONCURRENCY = 2, 4


def _tasks(count: int) -> list[dict[str, object]]:
    return [
        {
            "key": f"m{i:03d}",
            "prompt": f"mkdir -p bench-merge && echo {i} > bench-merge/m{i:03d}.txt",
            "requires_approval": True,
        }
        for i in range(count)
    ]


def busy_per_merge(ready: dict[str, float], merged: dict[str, float]) -> float:
    """The mean busy time of a serial queue: items taken in the order they left
    (`merged`), each busy from the later of the previous departure and its own arrival
    (`ready`) to its departure."""
    order = sorted(merged, key=merged.__getitem__)
    busy, last = 0.0, float("-inf")
    for key in order:
        busy += merged[key] - max(last, ready[key])
        last = merged[key]
    return busy / len(order)


def once(quick: bool = False) -> dict[str, float]:
    count = QUICK_TASKS if quick else TASKS
    with bench_stack("merge") as (stack, root):
        repo = large_repo(root / "repo")
        adapters = [(f"shell-{i}", "shell", CONCURRENCY) for i in range(ADAPTERS)]
        with rest.running(stack, adapters) as client:
            session_id = rest.create_session(client, str(repo), _tasks(count))
            _wait_awaiting(client, session_id, count, timeout_s=60 + 3 * count)
            _approve_all(client, session_id)
            rest.wait_done(client, session_id, timeout_s=60 + count)
            events = rest.read_timeline(client, session_id, until=rest.count("task.merged", count))
        floor = merge_floor(repo, root / "floor", count)
    ready = {k[0]: t for k, t in rest.first_at(events, "task.approved").items()}
    merged = {k[0]: t for k, t in rest.first_at(events, "task.merged").items()}
    statuses = {e["data"].get("merge_status") for e in events if e["type"] == "task.merged"}
    if statuses != {"merged"}:
        raise RuntimeError(f"merges ended {statuses}, not all merged")
    per_merge = busy_per_merge(ready, merged)
    return {
        "s_per_merge": per_merge,
        "merges_per_s": 1 / per_merge,
        "floor_s_per_merge": sum(floor) / len(floor),
    }


def _wait_awaiting(client: httpx.Client, session_id: str, count: int, timeout_s: float) -> None:
    """Until `count` tasks await approval; raise as soon as one ended otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        counts = client.get(f"/v1/sessions/{session_id}").json()["counts"]
        if counts.get("awaiting_approval", 0) >= count:
            return
        if {k for k, v in counts.items() if v} - {"awaiting_approval", "queued", "running"}:
            why = rest.why_failed(client, session_id)
            raise RuntimeError(f"tasks ended otherwise: {counts}; {why}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"not all awaiting approval in {timeout_s:.0f} s: {counts}")
        time.sleep(0.2)


def _approve_all(client: httpx.Client, session_id: str) -> None:
    tasks = client.get(
        f"/v1/sessions/{session_id}/tasks", params={"status": "awaiting_approval"}
    ).json()

    def approve(task_id: str) -> None:
        answer = client.post(f"/v1/tasks/{task_id}/approve")
        if answer.status_code != 200:
            raise RuntimeError(f"approve {task_id}: {answer.status_code} {answer.text[:300]}")

    with ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(approve, t["id"]) for t in tasks]:
            future.result()


if __name__ == "__main__":
    sys.stdout.write(json.dumps(once(quick="--quick" in sys.argv)) + "\n")
