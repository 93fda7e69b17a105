"""What the order of dispatch alone costs benchmark 6 (DAG scheduling): its graph run by a
simulated list scheduler, with no Swarm at all, under three orders:

- `age`: the ready task that became ready first (Swarm's order before `Task.chain`);
- `chain`: the ready task with the longest line of tasks waiting on it, then age (Swarm's
  order now: it knows the graph, not how long each task runs);
- `critical_path`: the ready task with the longest remaining path of durations (what a
  scheduler that knew each task's duration could do).

Each task holds a slot for its duration plus `overhead_s`; a task whose dependencies ended
becomes ready `hop_s` after the last of them (Swarm's merge, queueing and dispatch). Prints,
per order and setting, the makespan and its ratio to the ideal the benchmark uses.

    .venv/bin/python bench/dag_orders.py [--tasks N] [--slots S]
"""

from __future__ import annotations

import argparse
import heapq
import json
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dag_scheduling import SLOTS, TASKS, Dag, random_dag  # noqa: E402

__all__ = ["ORDERS", "chains", "makespan", "remaining"]

Key = Callable[[int, float], tuple[float, ...]]
"""A ready task's place in line (lower first), from its index and when it became ready."""

SETTINGS = ((0.0, 0.0), (0.01, 0.03), (0.03, 0.1), (0.1, 0.2))
"""(overhead_s, hop_s) pairs the report shows: none, then more of both."""


def _children(dag: Dag) -> list[list[int]]:
    children: list[list[int]] = [[] for _ in dag.durations]
    for task, deps in enumerate(dag.depends_on):
        for dep in deps:
            children[dep].append(task)
    return children


def _to_end(dag: Dag, weights: list[float]) -> list[float]:
    """Each task's heaviest path to the graph's end, its own weight included (the graph
    lists parents before children)."""
    children = _children(dag)
    rest = [0.0] * len(weights)
    for task in reversed(range(len(rest))):
        rest[task] = weights[task] + max((rest[c] for c in children[task]), default=0.0)
    return rest


def chains(dag: Dag) -> list[int]:
    """Each task's chain, as `Task.chain` counts it: itself and the longest line of tasks
    waiting on it."""
    return [int(n) for n in _to_end(dag, [1.0] * len(dag.durations))]


def remaining(dag: Dag) -> list[float]:
    """Each task's longest path of durations to the graph's end, its own included."""
    return _to_end(dag, dag.durations)


def _orders(dag: Dag) -> dict[str, Key]:
    chain, rest = chains(dag), remaining(dag)
    return {
        "age": lambda task, ready_at: (ready_at, task),
        "chain": lambda task, ready_at: (-chain[task], ready_at, task),
        "critical_path": lambda task, ready_at: (-rest[task], ready_at, task),
    }


ORDERS = ("age", "chain", "critical_path")


def makespan(
    dag: Dag, slots: int, order: str, *, overhead_s: float = 0.0, hop_s: float = 0.0
) -> float:
    """When the last task of `dag` ends on `slots` slots, free slots taking ready tasks in
    `order` (one of `ORDERS`)."""
    key = _orders(dag)[order]
    children = _children(dag)
    unmet = [len(deps) for deps in dag.depends_on]
    coming = [(0.0, task) for task, n in enumerate(unmet) if not n]  # (ready at, task)
    heapq.heapify(coming)
    ready: list[tuple[tuple[float, ...], int]] = []
    running: list[tuple[float, int]] = []  # (ends at, task)
    now, free, ended, last = 0.0, slots, 0, 0.0
    while ended < len(unmet):
        while coming and coming[0][0] <= now:
            at, task = heapq.heappop(coming)
            heapq.heappush(ready, (key(task, at), task))
        while free and ready:
            _, task = heapq.heappop(ready)
            free -= 1
            heapq.heappush(running, (now + dag.durations[task] + overhead_s, task))
        next_times = [q[0][0] for q in (running, coming) if q]
        if not next_times:
            raise ValueError("some tasks never become ready: the graph has a cycle")
        now = min(next_times)
        while running and running[0][0] <= now:
            ends, task = heapq.heappop(running)
            free, ended, last = free + 1, ended + 1, max(last, ends)
            for child in children[task]:
                unmet[child] -= 1
                if not unmet[child]:
                    heapq.heappush(coming, (ends + hop_s, child))
    return last


def report(tasks: int, slots: int) -> list[dict[str, float | str]]:
    dag = random_dag(tasks)
    ideal = dag.ideal(slots)
    rows: list[dict[str, float | str]] = []
    for overhead_s, hop_s in SETTINGS:
        for order in ORDERS:
            span = makespan(dag, slots, order, overhead_s=overhead_s, hop_s=hop_s)
            rows.append(
                {
                    "order": order,
                    "overhead_s": overhead_s,
                    "hop_s": hop_s,
                    "makespan_s": round(span, 3),
                    "ratio_to_ideal": round(span / ideal, 3),
                }
            )
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=TASKS)
    parser.add_argument("--slots", type=int, default=SLOTS)
    args = parser.parse_args()
    for row in report(args.tasks, args.slots):
        sys.stdout.write(json.dumps(row) + "\n")
