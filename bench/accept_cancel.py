"""Accept and cancel (issue 19, benchmark 1): how long the API takes to answer for a
10,000-task graph, from outside, over REST, on a real orchestrator process with its loops
running and no adapter (so every ready task stays queued). Each request is sent to a
server with nothing left to do:

- `accept_layers_s`: `POST /v1/sessions` with 100 layers of 100 tasks (`layered_graph`):
  task `i` of layer `l` depends on tasks `i` and `(i + 1) % 100` of layer `l - 1` (so the
  graph holds 9,900 × 2 = 19,800 edges, and its first layer, 100 tasks, is queued);
- `accept_independent_s`: `POST /v1/sessions` with 10,000 tasks that depend on nothing
  (the answer stores them all and queues the first 500; the scheduler queues the others
  after it: `independent_all_queued_s` is how long until all 10,000 are queued, from the
  request);
- `cancel_answer_s`: `POST /v1/sessions/{id}/cancel` of that session once its 10,000 tasks
  are queued; the answer comes before they are all cancelled (`graph.cancelling`), and
  `cancel_all_done_s` is how long until they are, from the cancel's request;
- `peak_rss_mb`: the orchestrator process's peak resident memory (`VmHWM`) at the end.

    .venv/bin/python bench/accept_cancel.py [--quick]

`--quick` uses 1,000 tasks (10 layers of 100) while developing. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import bench_stack  # noqa: E402
from tests.conftest import init_repo  # noqa: E402
from tests.e2e.stack import Stack  # noqa: E402
from tests.waiting import eventually  # noqa: E402

__all__ = ["independent_graph", "layered_graph", "once"]

WIDTH = 100
"""Tasks in each layer of the layered graph."""
JSON = {"content-type": "application/json"}


def independent_graph(tasks: int) -> list[dict[str, Any]]:
    """`tasks` tasks that depend on nothing."""
    return [{"key": f"t{i}", "prompt": "true"} for i in range(tasks)]


def layered_graph(layers: int, width: int = WIDTH) -> list[dict[str, Any]]:
    """`layers` layers of `width` tasks: task `L{l}-{i}` depends on `L{l-1}-{i}` and
    `L{l-1}-{(i+1) % width}` (the first layer on nothing)."""
    return [
        {
            "key": f"L{layer}-{i}",
            "prompt": "true",
            "depends_on": (
                [f"L{layer - 1}-{i}", f"L{layer - 1}-{(i + 1) % width}"] if layer else []
            ),
        }
        for layer in range(layers)
        for i in range(width)
    ]


def peak_rss_mb(pid: int) -> float:
    """`VmHWM` (peak resident set) of process `pid`, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def _accept(
    client: httpx.Client, repo: Path, title: str, tasks: list[dict[str, Any]]
) -> tuple[float, str]:
    """Post a session with its graph (encoded before the clock starts); the seconds until
    the answer, and the session's id."""
    body = json.dumps({"title": title, "repo": str(repo), "tasks": tasks}).encode()
    started = time.perf_counter()
    response = client.post("/v1/sessions", content=body, headers=JSON)
    seconds = time.perf_counter() - started
    if response.status_code != 201:
        raise RuntimeError(f"{title}: {response.status_code} {response.text[:500]}")
    return seconds, str(response.json()["id"])


def _counts(client: httpx.Client, session_id: str) -> dict[str, int]:
    counts: dict[str, int] = client.get(f"/v1/sessions/{session_id}").json()["counts"]
    return counts


def _wait_for(client: httpx.Client, session_id: str, status: str, tasks: int) -> None:
    """Until all `tasks` tasks of the session are `status`."""
    eventually(
        lambda: _counts(client, session_id).get(status, 0) == tasks,
        timeout_s=600,
        interval_s=0.2,
        message=lambda: f"not all {status}: {_counts(client, session_id)}",
    )


def _cancel(client: httpx.Client, session_id: str) -> float:
    """Cancel the session; the seconds until the answer."""
    started = time.perf_counter()
    response = client.post(f"/v1/sessions/{session_id}/cancel")
    seconds = time.perf_counter() - started
    response.raise_for_status()
    return seconds


def _measure(stack: Stack, repo: Path, quick: bool) -> dict[str, float]:
    """Each request on a server with nothing left to do: the layers first, then the
    independent tasks; once all of them are queued (the scheduler queues those the accept
    left), the cancel; then until every task is cancelled."""
    layers = 10 if quick else 100
    tasks = layers * WIDTH
    with stack.client() as client:
        client.timeout = httpx.Timeout(600)
        layers_s, _ = _accept(client, repo, "layers", layered_graph(layers))
        started = time.perf_counter()
        independent_s, independent = _accept(client, repo, "independent", independent_graph(tasks))
        _wait_for(client, independent, "queued", tasks)
        all_queued_s = time.perf_counter() - started
        started = time.perf_counter()
        cancel_s = _cancel(client, independent)
        _wait_for(client, independent, "cancelled", tasks)
        all_cancelled_s = time.perf_counter() - started
    return {
        "accept_independent_s": independent_s,
        "accept_layers_s": layers_s,
        "cancel_answer_s": cancel_s,
        "peak_rss_mb": peak_rss_mb(stack.procs["orchestrator"].pid),
        "independent_all_queued_s": all_queued_s,
        "cancel_all_done_s": all_cancelled_s,
    }


def once(quick: bool = False) -> dict[str, float]:
    """One repetition on a fresh stack: an orchestrator with the default settings (but no
    rate limit), no adapter."""
    with bench_stack("acceptcancel") as (stack, root):
        stack.start_orchestrator(SWARM_RATE_LIMIT_PER_S="0")
        repo = init_repo(root / "repo")
        return _measure(stack, repo, quick)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 tasks instead of 10,000")
    args = parser.parse_args()
    result = once(quick=args.quick)
    sys.stdout.write(json.dumps({k: round(v, 3) for k, v in result.items()}) + "\n")


if __name__ == "__main__":
    main()
