"""What the benchmarks do over REST, as a user would: start a stack with the limits a bench
needs, wait for its adapters to be live, create a session, wait for it to end, and read its
timeline (`GET /v1/sessions/{id}/events`, paged), whose `created_at` stamps are the
benchmarks' clock."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.stack import Stack  # noqa: E402
from tests.waiting import eventually  # noqa: E402

__all__ = [
    "ORCHESTRATOR_ENV",
    "Event",
    "Run",
    "count",
    "create_session",
    "first_at",
    "last_at",
    "read_timeline",
    "run_session",
    "running",
    "spans",
    "stamp",
    "wait_done",
    "wait_workers",
    "why_failed",
]

Event = dict[str, Any]

ORCHESTRATOR_ENV = {
    # 20,000 tasks in one request (benchmark 2); the default allows 10,000.
    "SWARM_MAX_GRAPH_TASKS": "20000",
    "SWARM_MAX_SESSION_TASKS": "40000",
    # The benches poll and post faster than one user's default budget of requests.
    "SWARM_RATE_LIMIT_PER_S": "0",
}
"""What every bench's orchestrator runs with besides the test stack's settings."""

NO_FINAL_CHECKPOINT = {"checkpoint": {"on_finish": False}}
"""Session settings of a bench: the session ends with its last task (no checkpoint gates)."""


@contextmanager
def running(
    stack: Stack,
    adapters: Iterable[tuple[str, str, int]],
    *,
    orchestrator_env: dict[str, str] | None = None,
    adapter_env: dict[str, str] | None = None,
) -> Iterator[httpx.Client]:
    """Start the orchestrator and the adapters (name, agent kind, concurrency); a client
    of the API, once every adapter is live, for the block."""
    stack.start_orchestrator(timeout_s=60, **{**ORCHESTRATOR_ENV, **(orchestrator_env or {})})
    names = []
    for name, agent, concurrency in adapters:
        stack.start_adapter(name, agent=agent, concurrency=concurrency, **(adapter_env or {}))
        names.append(name)
    with stack.client() as client:
        client.timeout = httpx.Timeout(120)
        wait_workers(client, names, stack)
        yield client


def wait_workers(
    client: httpx.Client, names: list[str], stack: Stack, *, timeout_s: float = 60.0
) -> None:
    """Until the orchestrator lists every named adapter as alive."""

    def live() -> bool:
        for name in names:
            proc = stack.procs.get(name)
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"adapter {name} exited:\n{stack.log(name)}")
        seen = {w["name"] for w in client.get("/v1/workers").json() if w["alive"]}
        return set(names) <= seen

    eventually(live, timeout_s=timeout_s, interval_s=0.1, message="adapters not live")


def create_session(
    client: httpx.Client,
    repo: str,
    tasks: list[dict[str, Any]],
    *,
    settings: dict[str, Any] | None = None,
) -> str:
    body: dict[str, Any] = {
        "title": "bench",
        "repo": repo,
        "tasks": tasks,
        "settings": {**NO_FINAL_CHECKPOINT, **(settings or {})},
    }
    answer = client.post("/v1/sessions", json=body)
    if answer.status_code not in (200, 201):
        raise RuntimeError(f"POST /v1/sessions: {answer.status_code} {answer.text[:500]}")
    return str(answer.json()["id"])


POLL_S = 0.5
"""How often `wait_done` asks. Each `GET /v1/sessions/{id}` counts the session's tasks by
status; at 20,000 tasks that is about 20 ms of PostgreSQL, and asking every 50 ms took a
fifth of benchmark 2's throughput (measured: 603 tasks/s polling every 50 ms, 670 and 705
every 0.5 s, on one machine). The figures do not depend on it: their ends are timeline
stamps (`last_at`), not the moment a poll saw the session done."""


def wait_done(
    client: httpx.Client, session_id: str, *, timeout_s: float, poll_s: float = POLL_S
) -> float:
    """Poll the session until it is done; return `time.time()` when it was first seen
    done. Raise if a task of it did not succeed."""
    deadline = time.monotonic() + timeout_s
    while True:
        session = client.get(f"/v1/sessions/{session_id}").json()
        if session["done"]:
            seen = time.time()
            failed = {k: v for k, v in session["counts"].items() if k != "succeeded" and v}
            if failed:
                raise RuntimeError(
                    f"session ended with tasks that did not succeed: {failed}; "
                    + why_failed(client, session_id)
                )
            return seen
        if time.monotonic() > deadline:
            counts = session.get("counts")
            raise TimeoutError(f"session not done in {timeout_s:.0f} s: {counts}")
        time.sleep(poll_s)


def why_failed(client: httpx.Client, session_id: str) -> str:
    """What the first failed tasks' last attempts said."""
    tasks = client.get(
        f"/v1/sessions/{session_id}/tasks", params={"status": "failed", "limit": 3}
    ).json()
    said = []
    for task in tasks:
        attempts = client.get(f"/v1/tasks/{task['id']}").json().get("attempts") or [{}]
        last = attempts[-1]
        said.append(
            f"{task['key']}: {last.get('reason')} {last.get('error')} "
            f"{(last.get('output_tail') or '')[-300:]}"
        )
    return " | ".join(said)


@dataclass(frozen=True)
class Run:
    """A session run to its end: its timeline, and when it was sent (a Unix time)."""

    session_id: str
    events: list[Event]
    sent: float

    @property
    def seconds(self) -> float:
        """From sending the session until its last task's success was recorded."""
        return last_at(self.events, "task.succeeded") - self.sent


def run_session(
    client: httpx.Client,
    repo: Path,
    tasks: list[dict[str, Any]],
    *,
    timeout_s: float,
    settings: dict[str, Any] | None = None,
) -> Run:
    """Create a session with `tasks`, wait until every one succeeded, read its timeline."""
    sent = time.time()
    session_id = create_session(client, str(repo), tasks, settings=settings)
    wait_done(client, session_id, timeout_s=timeout_s)
    events = read_timeline(client, session_id, until=count("task.succeeded", len(tasks)))
    return Run(session_id=session_id, events=events, sent=sent)


def read_timeline(
    client: httpx.Client,
    session_id: str,
    *,
    until: Callable[[list[Event]], bool],
    timeout_s: float = 60.0,
) -> list[Event]:
    """Every entry of the session's timeline, paged by `after`, read again until `until`
    holds: a page holds only settled entries, so the last ones may show a moment later
    (another transaction of the server still open)."""
    events: list[Event] = []
    after = 0
    deadline = time.monotonic() + timeout_s
    while True:
        page = client.get(
            f"/v1/sessions/{session_id}/events", params={"after": after, "limit": 10000}
        ).json()
        events.extend(page)
        if page:
            after = page[-1]["id"]
            continue
        if until(events):
            return events
        if time.monotonic() > deadline:
            raise TimeoutError(f"timeline incomplete after {timeout_s:.0f} s ({len(events)})")
        time.sleep(0.1)


def count(kind: str, at_least: int) -> Callable[[list[Event]], bool]:
    """A `read_timeline` condition: at least `at_least` entries of type `kind`."""
    return lambda events: sum(e["type"] == kind for e in events) >= at_least


def stamp(event: Event) -> float:
    """The entry's `created_at` as a Unix time."""
    return datetime.fromisoformat(str(event["created_at"])).timestamp()


def last_at(events: list[Event], kind: str) -> float:
    """The time of the latest entry of type `kind`: when the transaction that recorded it
    began (`created_at`), a few milliseconds before it committed."""
    return max(stamp(e) for e in events if e["type"] == kind)


def first_at(events: list[Event], kind: str) -> dict[tuple[str, int], float]:
    """(task id, attempt) → the time of its first entry of type `kind`."""
    found: dict[tuple[str, int], float] = {}
    for e in events:
        if e["type"] == kind and e["task_id"] is not None:
            found.setdefault((str(e["task_id"]), int(e["attempt"] or 0)), stamp(e))
    return found


def stamped_at(events: list[Event], kind: str) -> dict[tuple[str, int], float]:
    """(task id, attempt) → the time the adapter stamped on its first entry of type `kind`
    (`data.at`: when it began the task, when its result was ready) as a Unix time."""
    found: dict[tuple[str, int], float] = {}
    for e in events:
        at = (e.get("data") or {}).get("at")
        if e["type"] == kind and e["task_id"] is not None and at:
            key = (str(e["task_id"]), int(e["attempt"] or 0))
            found.setdefault(key, datetime.fromisoformat(str(at)).timestamp())
    return found


def stamped_spans(events: list[Event], start: str, end: str) -> list[float]:
    """Each attempt's `end` minus its `start` as the adapter stamped them (`stamped_at`)."""
    began = stamped_at(events, start)
    ended = stamped_at(events, end)
    return [ended[k] - began[k] for k in ended if k in began]


def spans(events: list[Event], start: str, end: str) -> list[float]:
    """Each attempt's first `end` entry minus its first `start` entry (s)."""
    began = first_at(events, start)
    ended = first_at(events, end)
    return [ended[k] - began[k] for k in ended if k in began]
