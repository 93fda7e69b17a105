"""Dispatch latency (issue 19, benchmark 3): `noop` tasks arriving at a steady 200/s on two
noop adapters (the slots every deployment gives one, 256), and how long each waits from queued
to started.

One session is opened with a holder task that never runs (a `claude` task, no claude
adapter; the session's suspension grace is raised past the run), so the session stays open
and the steady stream is not a series of sessions finishing and reopening. Then
`POST /v1/sessions/{id}/tasks` adds 10 noop tasks every 50 ms for 15 s (3,000 tasks; the
POSTs go out on schedule from 4 threads, so a slow answer does not delay the next batch).

- `queued_to_adapter_start_p99_s` (the target's figure): the 99th percentile over the
  tasks of the start as the adapter stamped it (`data.at` of `task.started`: when it began
  the task, as Celery's worker stamps its task's start) minus `task.queued`'s `created_at`
  (the transaction that queued it began: before it committed and before the answer);
- `queued_to_started_p99_s`: the same with the start as the orchestrator recorded it (the
  timeline's `task.started` `created_at`: the report applied), for orientation;
- `queued_to_started_p50_s`: the median of that;
- `rate_per_s`: the rate the tasks were actually sent at;
- `queued_to_published_p99_s` and `published_to_adapter_start_p99_s`: the target's span cut
  where the relay published the task's message (`outbox.sent_at`, stamped as its `XADD`
  returned; read from the database before it is dropped): PostgreSQL's side, then Redis's
  and the adapter's, the hop Celery's figure is all of;
- `idle_queued_to_adapter_start_p50_s` and `..._min_s`: the same span for tasks sent one to a
  POST, one POST at a time, 10 a second, before the steady stream, while nothing else runs:
  the floor of the path (the transaction that queues a task, the relay, the stream, the
  adapter), which no load adds to. Their tasks are left out of the figures above.

    .venv/bin/python bench/dispatch_latency.py [--quick]     (--quick: 4 s)
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import rest  # noqa: E402
from harness import bench_stack  # noqa: E402
from repos import small_repo  # noqa: E402
from stats import percentile  # noqa: E402

from swarm_cli.local.plan import NOOP_CONCURRENCY  # noqa: E402
from swarm_orchestrator.db.engine import make_engine  # noqa: E402
from swarm_orchestrator.db.models import Outbox  # noqa: E402

__all__ = ["once"]

RATE_PER_S, BATCH = 200, 10
IDLE_TASKS, IDLE_RATE_PER_S = 40, 10
SECONDS, QUICK_SECONDS = 15.0, 4.0
ADAPTERS, CONCURRENCY = 2, NOOP_CONCURRENCY
HOLDER = {"key": "holder", "agent": "claude", "prompt": "holds the session open; never runs"}


def once(quick: bool = False) -> dict[str, float]:
    seconds = QUICK_SECONDS if quick else SECONDS
    batches = int(seconds * RATE_PER_S / BATCH)
    with bench_stack("dispatch") as (stack, root):
        adapters = [(f"noop-{i}", "noop", CONCURRENCY) for i in range(ADAPTERS)]
        env = {"SWARM_SUSPEND_GRACE_S": "3600"}
        with rest.running(stack, adapters, orchestrator_env=env) as client:
            repo = small_repo(root / "repo")
            session_id = rest.create_session(client, str(repo), [HOLDER])
            idle = _send_idle(client, session_id)
            rest.read_timeline(
                client, session_id, until=rest.count("task.started", len(idle)), timeout_s=60
            )
            sent_s = _send(client, session_id, batches)
            total = batches * BATCH + len(idle)
            events = rest.read_timeline(
                client, session_id, until=rest.count("task.started", total), timeout_s=120
            )
            client.post(f"/v1/sessions/{session_id}/cancel").raise_for_status()
            published = asyncio.run(_published(stack.database_url))
    queued = rest.first_at(events, "task.queued")
    started = rest.first_at(events, "task.started")
    at = {
        (str(e["task_id"]), int(e["attempt"])): datetime.fromisoformat(e["data"]["at"]).timestamp()
        for e in events
        if e["type"] == "task.started" and "at" in (e.get("data") or {})
    }
    steady = {k for k in queued if k[0] not in idle}  # the tasks of the steady stream
    waits = [started[k] - queued[k] for k in started if k in steady]
    adapter_waits = [at[k] - queued[k] for k in at if k in steady]
    idle_waits = [at[k] - queued[k] for k in at if k in queued and k not in steady]
    figures = {
        "queued_to_started_p99_s": percentile(waits, 99),
        "queued_to_started_p50_s": percentile(waits, 50),
        "rate_per_s": (total - len(idle)) / sent_s,
    }
    if adapter_waits:
        figures["queued_to_adapter_start_p99_s"] = percentile(adapter_waits, 99)
    cut = [k for k in at if k in steady and k in published]
    if cut:
        figures["queued_to_published_p99_s"] = percentile(
            [published[k] - queued[k] for k in cut], 99
        )
        figures["published_to_adapter_start_p99_s"] = percentile(
            [at[k] - published[k] for k in cut], 99
        )
    if idle_waits:
        figures["idle_queued_to_adapter_start_p50_s"] = percentile(idle_waits, 50)
        figures["idle_queued_to_adapter_start_min_s"] = min(idle_waits)
    return figures


async def _published(database_url: str) -> dict[tuple[str, int], float]:
    """(task id, attempt) → when the relay published its message (`outbox.sent_at`)."""
    engine = make_engine(database_url)
    try:
        async with engine.connect() as db:
            rows = await db.execute(
                select(Outbox.task_id, Outbox.attempt, Outbox.sent_at).where(
                    Outbox.task_id.is_not(None), Outbox.sent_at.is_not(None)
                )
            )
            return {(str(r.task_id), int(r.attempt)): r.sent_at.timestamp() for r in rows}
    finally:
        await engine.dispose()


def _send_idle(client: httpx.Client, session_id: str) -> set[str]:
    """Add `IDLE_TASKS` noop tasks one to a POST, `IDLE_RATE_PER_S` POSTs a second, each
    after the answer to the one before; return their task ids."""
    url = f"/v1/sessions/{session_id}/tasks"
    ids: set[str] = set()
    began = time.monotonic()
    for k in range(IDLE_TASKS):
        pause = began + k / IDLE_RATE_PER_S - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        answer = client.post(url, json=[{"key": f"idle-{k}", "agent": "noop", "prompt": "noop"}])
        if answer.status_code != 201:
            raise RuntimeError(f"POST {url}: {answer.status_code} {answer.text[:300]}")
        ids.update(str(task["id"]) for task in answer.json())
    return ids


def _send(client: httpx.Client, session_id: str, batches: int) -> float:
    """Add `batches` batches of `BATCH` noop tasks, one batch every `BATCH / RATE_PER_S`
    seconds; return how long sending took."""
    interval = BATCH / RATE_PER_S
    url = f"/v1/sessions/{session_id}/tasks"

    def post(k: int) -> None:
        batch = [{"key": f"b{k}-{j}", "agent": "noop", "prompt": "noop"} for j in range(BATCH)]
        answer = client.post(url, json=batch)
        if answer.status_code != 201:
            raise RuntimeError(f"POST {url}: {answer.status_code} {answer.text[:300]}")

    began = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        futures = []
        for k in range(batches):
            pause = began + k * interval - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            futures.append(pool.submit(post, k))
        for future in futures:
            future.result()
    return time.monotonic() - began


if __name__ == "__main__":
    sys.stdout.write(json.dumps(once(quick="--quick" in sys.argv)) + "\n")
