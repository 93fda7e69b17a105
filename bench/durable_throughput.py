"""Durable throughput (issue 19, benchmark 2): 20,000 independent `noop` tasks in one graph
through the whole path, API → PostgreSQL → stream → adapter → event → PostgreSQL, on two
`noop` adapters that are live before the clock starts, each with the slots every deployment
gives one (`swarm up`, compose and Kubernetes: 256, one batch read at a time).

- `tasks_per_s`: tasks ÷ seconds from sending `POST /v1/sessions` (all 20,000 tasks in the
  body) until the last `task.succeeded` entry of its timeline (`rest.last_at`): every task
  succeeded and its outcome is in PostgreSQL. The client waits for `done` polling every
  0.5 s (`rest.POLL_S`, which says why not faster).
- `accept_s`: how long that POST took to answer (part of the above).
- `queued_to_started_p50_s`: the median wait of a task from `task.queued` to `task.started`
  (timeline `created_at`), for orientation.
- `cpu_s_per_task`: CPU seconds every process of the run spent (`bench/cpu.py`: the
  orchestrator, the adapters, the database's PostgreSQL backends, Redis, this client) from
  sending the POST until the session was seen done, divided by the tasks;
  `cpu_<group>_s_per_task` for each of those groups.

    .venv/bin/python bench/durable_throughput.py [--quick]     (--quick: 2,000 tasks)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cpu  # noqa: E402
import rest  # noqa: E402
from harness import bench_stack  # noqa: E402
from repos import small_repo  # noqa: E402
from stats import percentile  # noqa: E402

from swarm_cli.local.plan import NOOP_CONCURRENCY  # noqa: E402

__all__ = ["noop_graph", "noop_rate", "once"]

TASKS, QUICK_TASKS = 20_000, 2_000
ADAPTERS, CONCURRENCY = 2, NOOP_CONCURRENCY


def noop_graph(count: int) -> list[dict[str, object]]:
    return [{"key": f"t{i}", "agent": "noop", "prompt": "noop"} for i in range(count)]


def noop_rate(count: int, *, name: str = "throughput") -> dict[str, float]:
    """Run `count` independent noop tasks in one session on a fresh stack; the figures of
    the module docstring."""
    with bench_stack(name) as (stack, root):
        adapters = [(f"noop-{i}", "noop", CONCURRENCY) for i in range(ADAPTERS)]
        with rest.running(stack, adapters) as client:
            repo = small_repo(root / "repo")
            with cpu.stack_meter(stack) as meter:
                meter.start()
                started = time.time()
                session_id = rest.create_session(client, str(repo), noop_graph(count))
                accepted = time.time()
                rest.wait_done(client, session_id, timeout_s=max(120, count / 10))
                spent = meter.stop()
            events = rest.read_timeline(
                client, session_id, until=rest.count("task.succeeded", count)
            )
    queued = rest.first_at(events, "task.queued")
    began = rest.first_at(events, "task.started")
    waits = [began[k] - queued[k] for k in began if k in queued]
    done = rest.last_at(events, "task.succeeded")
    return {
        "tasks_per_s": count / (done - started),
        "seconds": done - started,
        "accept_s": accepted - started,
        "queued_to_started_p50_s": percentile(waits, 50),
        **cpu.per_task(spent, count),
    }


def once(quick: bool = False) -> dict[str, float]:
    return noop_rate(QUICK_TASKS if quick else TASKS)


if __name__ == "__main__":
    sys.stdout.write(json.dumps(once(quick="--quick" in sys.argv)) + "\n")
