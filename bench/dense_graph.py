"""Whether one caller's heavy requests stall everyone else's: a real orchestrator process, a
process of its own pinging `GET /v1/whoami` every 20 ms, and beside it, one at a time,

- `dense`: a dense graph (`--tasks` tasks, each depending on the `--deps` before it);
- `at_limit`: graphs at the per-request edge limit (5000 tasks, ten edges each), added
  until the session holds 20,000 tasks and 200,000 edges;
- `list`: `GET /v1/sessions/{id}/tasks` of that full session;
- `deep_N`: a body nested N levels deep;
- `idle`: nothing for three seconds (what the pings cost on this machine as it is).

    .venv/bin/python bench/dense_graph.py --tasks 2700 --deps 815

Prints one JSON line per phase: the heavy request's status, error code and seconds, and the
whoami latencies while it ran (count, median, max in ms). The goal is a max well under
200 ms whatever the heavy request does.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import bench_stack  # noqa: E402
from tests.conftest import init_repo  # noqa: E402
from tests.e2e.stack import AUTH, Stack  # noqa: E402

PING_INTERVAL_S = 0.02
JSON = {"content-type": "application/json"}


def _ping(url: str, conn: Connection) -> None:
    """In a process of its own (the heavy client's work cannot delay it): GET whoami until
    told to stop, then send back the latencies (s)."""
    latencies: list[float] = []
    with httpx.Client(base_url=url, headers=AUTH, timeout=120) as client:
        client.get("/v1/whoami").raise_for_status()  # connected before the heavy request
        conn.send("ready")
        while not conn.poll(PING_INTERVAL_S):
            started = time.perf_counter()
            client.get("/v1/whoami").raise_for_status()
            latencies.append(time.perf_counter() - started)
    conn.send(latencies)


@contextmanager
def pinged(stack: Stack) -> Iterator[list[float]]:
    """Ping whoami while the block runs; the list holds the latencies (s) afterwards."""
    latencies: list[float] = []
    ours, theirs = multiprocessing.Pipe()
    pinger = multiprocessing.Process(target=_ping, args=(stack.api_url, theirs), daemon=True)
    pinger.start()
    ours.recv()
    try:
        yield latencies
    finally:
        ours.send("stop")
        latencies.extend(ours.recv())
        pinger.join(60)


def phase(stack: Stack, name: str, request: Callable[[httpx.Client], httpx.Response]) -> None:
    """Run one heavy request under the pinger and print what it did to the pings."""
    with stack.client() as client:
        client.timeout = httpx.Timeout(600)
        with pinged(stack) as latencies:
            started = time.perf_counter()
            response = request(client)
            seconds = time.perf_counter() - started
    ms = sorted(x * 1000 for x in latencies) or [0.0]
    code = response.json().get("code") if response.status_code >= 400 else None
    line = {
        "phase": name,
        "status": response.status_code,
        "code": code,
        "seconds": round(seconds, 2),
        "sent_mb": round(len(response.request.content or b"") / 1e6, 1),
        "received_mb": round(len(response.content) / 1e6, 1),
        "whoami_count": len(latencies),
        "whoami_median_ms": round(statistics.median(ms), 1),
        "whoami_max_ms": round(ms[-1], 1),
    }
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def graph(prefix: str, tasks: int, deps: int) -> bytes:
    """`tasks` tasks, each depending on (up to) the `deps` tasks before it, as JSON (encoded
    before the pinger starts)."""
    nodes: list[dict[str, Any]] = [
        {
            "key": f"{prefix}{i}",
            "prompt": "true",
            "depends_on": [f"{prefix}{j}" for j in range(max(0, i - deps), i)],
        }
        for i in range(tasks)
    ]
    return json.dumps(nodes).encode()


def nested(depth: int) -> bytes:
    """A task list whose one task's `output_schema` makes the body `depth` levels deep."""
    inner = b'{"a":' * (depth - 2) + b"1" + b"}" * (depth - 2)
    return b'[{"key":"deep","prompt":"true","output_schema":' + inner + b"}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2700)
    parser.add_argument("--deps", type=int, default=815)
    parser.add_argument("--limit-tasks", type=int, default=5000, help="tasks per at-limit graph")
    parser.add_argument("--limit-graphs", type=int, default=4, help="at-limit graphs to add")
    args = parser.parse_args()

    with bench_stack("densegraph") as (stack, root):
        stack.start_orchestrator(SWARM_RATE_LIMIT_PER_S="0", SWARM_RUN_LOOPS="false")
        repo = init_repo(root / "repo")
        with stack.client() as client:
            one = client.post("/v1/sessions", json={"title": "dense", "repo": str(repo)})
            full = client.post("/v1/sessions", json={"title": "full", "repo": str(repo)})
        dense_url = f"/v1/sessions/{one.json()['id']}/tasks"
        full_url = f"/v1/sessions/{full.json()['id']}/tasks"

        def post(url: str, body: bytes) -> Callable[[httpx.Client], httpx.Response]:
            return lambda client: client.post(url, content=body, headers=JSON)

        def idle(client: httpx.Client) -> httpx.Response:
            time.sleep(3)
            return client.get("/readyz")

        phase(stack, "idle", idle)
        phase(stack, "dense", post(dense_url, graph("t", args.tasks, args.deps)))
        for g in range(args.limit_graphs):
            phase(stack, "at_limit", post(full_url, graph(f"g{g}-", args.limit_tasks, 10)))
        phase(stack, "list", lambda client: client.get(full_url))
        for depth in (255, 100_000):
            phase(stack, f"deep_{depth}", post(dense_url, nested(depth)))


if __name__ == "__main__":
    main()
