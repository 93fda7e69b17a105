"""Priorities that hold: how soon a high-priority task starts behind a backlog, how two
sessions of different weights share one agent kind, and what a dispatch pass costs with
10,000 task messages held — with real processes on real servers.

    .venv/bin/python bench/priority.py                  # all three
    .venv/bin/python bench/priority.py --only priority --headroom 1000   # as before dispatch

`priority`: one shell adapter with 2 slots, 200 low-priority tasks ready, then a high one;
prints at which start after it became ready the high one started (the goal: within the next
two). `weights`: two sessions (weights 2 and 1) of the same kind; prints how many tasks
each had finished when 90 had. `held`: 10,000 tasks held; prints the median time of the
relay's dispatch decision with no free slot (every poll) and with free slots (a pick).
Uses the servers the tests use (SWARM_TEST_* URLs, else 127.0.0.1, else embedded), a fresh
database and Redis prefix; prints one JSON line per run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import bench_stack  # noqa: E402
from tests.conftest import init_repo  # noqa: E402
from tests.e2e.stack import Stack  # noqa: E402

from swarm_common.streams import Keys  # noqa: E402
from swarm_orchestrator.db.engine import make_engine, make_sessionmaker  # noqa: E402
from swarm_orchestrator.graph import fleet  # noqa: E402
from swarm_orchestrator.runtime.dispatch import Dispatcher  # noqa: E402

Event = dict[str, Any]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["priority", "weights", "held"])
    parser.add_argument("--headroom", type=int, default=1, help="SWARM_DISPATCH_HEADROOM")
    parser.add_argument("--task-s", type=float, default=0.2, help="how long each task sleeps")
    args = parser.parse_args()
    runs: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
        "priority": priority,
        "weights": weights,
        "held": held,
    }
    for name, run in runs.items():
        if args.only in (None, name):
            sys.stdout.write(json.dumps({"run": name, **run(args)}) + "\n")
            sys.stdout.flush()


def priority(args: argparse.Namespace) -> dict[str, Any]:
    """200 low-priority tasks ready on 2 slots, then a high one: where did it start?"""
    with bench_stack("prio") as (stack, root), _started(stack, args) as client:
        sid = _session(client, root, "backlog", [_task(f"low{i}", args, "low") for i in range(200)])
        _wait(lambda: _count(client, sid, "task.started") >= 4, "the backlog to be under way")
        added = client.post(f"/v1/sessions/{sid}/tasks", json=[_task("high", args, "high")])
        added.raise_for_status()
        high = added.json()[0]["id"]
        _wait(lambda: _status(client, high) in ("succeeded", "failed"), "the high task to run")
        events = _events(client, sid)
        client.post(f"/v1/sessions/{sid}/cancel")
    queued = _first(events, high, "task.queued")
    order = [e["task_id"] for e in events if e["type"] == "task.started" and e["id"] > queued["id"]]
    return {
        "headroom": args.headroom,
        "slots": 2,
        "backlog": 200,
        "high_started_at_start": order.index(high) + 1,
        "goal": "<= 2",
        "queued_to_started_s": round(
            _time(_first(events, high, "task.started")) - _time(queued), 3
        ),
    }


def weights(args: argparse.Namespace) -> dict[str, Any]:
    """Two sessions of weights 2 and 1 sharing 2 slots: tasks finished by each."""
    n, first = 90, 90
    with bench_stack("wrr") as (stack, root), _started(stack, args) as client:
        heavy = _session(client, root, "heavy", [_task(f"h{i}", args) for i in range(n)], 2)
        light = _session(client, root, "light", [_task(f"l{i}", args) for i in range(n)], 1)
        both = (heavy, light)
        _wait(
            lambda: sum(_count(client, sid, "task.succeeded") for sid in both) >= first,
            f"{first} tasks to finish",
            timeout_s=300,
        )
        events = {sid: _events(client, sid) for sid in both}
        for sid in both:
            client.post(f"/v1/sessions/{sid}/cancel")
    finished = sorted(
        (e["id"], sid)
        for sid, found in events.items()
        for e in found
        if e["type"] == "task.succeeded"
    )[:first]
    count = Counter(sid for _, sid in finished)
    return {
        "headroom": args.headroom,
        "slots": 2,
        "weights": "2:1",
        "finished_of_first_90": {"heavy": count[heavy], "light": count[light]},
        "ratio": round(count[heavy] / max(count[light], 1), 2),
    }


def held(args: argparse.Namespace) -> dict[str, Any]:
    """10,000 task messages held: the cost of one dispatch decision."""
    with bench_stack("held") as (stack, root), _started(stack, args, adapter=False) as client:
        for part in range(2):
            tasks = [_task(f"t{part}-{i}", args) for i in range(5000)]
            _session(client, root, f"held{part}", tasks)
        return asyncio.run(_time_dispatch(stack, args.headroom))


async def _time_dispatch(stack: Stack, headroom: int) -> dict[str, Any]:
    keys = Keys(stack.redis_prefix)
    engine = make_engine(stack.database_url)
    sessionmaker = make_sessionmaker(engine)
    dispatcher = Dispatcher(headroom=headroom)

    async def median_ms(runs: int = 20) -> float:
        took = []
        for _ in range(runs):
            async with sessionmaker() as db, db.begin():
                began = time.perf_counter()
                await dispatcher.take(db, keys)
                took.append(time.perf_counter() - began)
                await db.rollback()  # a measurement: nothing is published
        return round(statistics.median(took) * 1000, 1)

    try:
        idle = await median_ms()
        async with sessionmaker() as db, db.begin():
            await fleet.mirror(db, [fleet.Sighting(name="bench", agent="shell", concurrency=8)])
        picking = await median_ms()
    finally:
        await engine.dispose()
    return {"held": 10_000, "no_free_slot_ms": idle, "eight_free_slots_ms": picking}


# -- helpers -------------------------------------------------------------------------------------


class _started:
    """The orchestrator (and one shell adapter with 2 slots) started; a client of it."""

    def __init__(self, stack: Stack, args: argparse.Namespace, *, adapter: bool = True) -> None:
        self.stack, self.args, self.adapter = stack, args, adapter

    def __enter__(self) -> httpx.Client:
        self.stack.start_orchestrator(SWARM_DISPATCH_HEADROOM=str(self.args.headroom))
        if self.adapter:
            self.stack.start_adapter("bench-shell", concurrency=2)
        self.client = self.stack.client()
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.close()


def _task(key: str, args: argparse.Namespace, priority: str = "normal") -> dict[str, Any]:
    return {"key": key, "prompt": f"sleep {args.task_s}", "priority": priority}


def _session(
    client: httpx.Client, root: Path, name: str, tasks: list[dict[str, Any]], weight: int = 1
) -> str:
    repo = root / f"repo-{name}"
    if not repo.exists():
        init_repo(repo)
    body = {"title": name, "repo": str(repo), "tasks": tasks, "settings": {"weight": weight}}
    made = client.post("/v1/sessions", json=body)
    made.raise_for_status()
    return str(made.json()["id"])


def _events(client: httpx.Client, sid: str) -> list[Event]:
    found: list[Event] = []
    after = 0
    while page := client.get(
        f"/v1/sessions/{sid}/events", params={"after": after, "limit": 10000}
    ).json():
        found.extend(page)
        after = page[-1]["id"]
    return found


def _count(client: httpx.Client, sid: str, type: str) -> int:
    return sum(1 for e in _events(client, sid) if e["type"] == type)


def _status(client: httpx.Client, task_id: str) -> str:
    return str(client.get(f"/v1/tasks/{task_id}").json()["status"])


def _time(event: Event) -> float:
    return datetime.fromisoformat(str(event["created_at"])).timestamp()


def _first(events: list[Event], task_id: str, type: str) -> Event:
    return next(e for e in events if e["task_id"] == task_id and e["type"] == type)


def _wait(condition: Callable[[], bool], what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what}")
        time.sleep(0.1)


if __name__ == "__main__":
    main()
