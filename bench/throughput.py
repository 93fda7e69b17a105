"""Backbone throughput: how fast trivial shell tasks flow REST → PostgreSQL → Redis →
adapters → git → events, with real processes on real servers.

    .venv/bin/python bench/throughput.py --tasks 200 --adapters 2 --concurrency 2

Uses the servers the tests use (SWARM_TEST_* URLs, else 127.0.0.1, else embedded), a fresh
database and Redis prefix, and prints one JSON line: tasks, seconds, tasks per second, and
the median queue-to-start and start-to-finish latencies read from the timeline.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import bench_stack  # noqa: E402
from tests.conftest import init_repo  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--adapters", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--chain", action="store_true", help="one long chain, not a fan-out")
    args = parser.parse_args()

    with bench_stack() as (stack, root):
        stack.start_orchestrator()
        for i in range(args.adapters):
            stack.start_adapter(f"bench-{i}", concurrency=args.concurrency)
        repo = init_repo(root / "repo")
        tasks = [
            {
                "key": f"t{i}",
                "prompt": "true",
                "depends_on": [f"t{i - 1}"] if args.chain and i else [],
            }
            for i in range(args.tasks)
        ]
        with stack.client() as client:
            started = time.monotonic()
            session = client.post(
                "/v1/sessions", json={"title": "bench", "repo": str(repo), "tasks": tasks}
            ).json()
            while not client.get(f"/v1/sessions/{session['id']}").json()["done"]:
                time.sleep(0.05)
            elapsed = time.monotonic() - started
            events = []
            after = 0
            while page := client.get(
                f"/v1/sessions/{session['id']}/events", params={"after": after, "limit": 10000}
            ).json():
                events.extend(page)
                after = page[-1]["id"]
        sys.stdout.write(
            json.dumps(
                {
                    "tasks": args.tasks,
                    "adapters": args.adapters,
                    "concurrency": args.concurrency,
                    "chain": args.chain,
                    "seconds": round(elapsed, 2),
                    "tasks_per_s": round(args.tasks / elapsed, 1),
                    **_latencies(events),
                }
            )
            + "\n"
        )


def _latencies(events: list[dict[str, object]]) -> dict[str, float]:
    at: dict[tuple[object, object], datetime] = {}
    for e in events:
        at[(e["task_id"], e["type"])] = datetime.fromisoformat(str(e["created_at"]))
    waits, runs = [], []
    for (task, kind), when in at.items():
        if kind == "task.started" and (task, "task.queued") in at:
            waits.append((when - at[(task, "task.queued")]).total_seconds())
        if kind == "task.succeeded" and (task, "task.started") in at:
            runs.append((when - at[(task, "task.started")]).total_seconds())
    return {
        "median_queued_to_started_s": round(statistics.median(waits), 3),
        "median_started_to_succeeded_s": round(statistics.median(runs), 3),
    }


if __name__ == "__main__":
    main()
