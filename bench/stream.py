"""Live timeline latency: how soon an entry reaches an open SSE stream after the request that
wrote it has answered, with a real orchestrator process on real servers.

    .venv/bin/python bench/stream.py --entries 200 --writers 1

Each writer adds one-task graphs one at a time; a reader holds the session's stream open.
Prints one JSON line: entries, median / p95 / max latency (ms) from a POST's answer to its
`task.created` entry arriving on the stream.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import bench_stack  # noqa: E402
from tests.conftest import init_repo  # noqa: E402
from tests.e2e.stack import AUTH  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200)
    parser.add_argument("--writers", type=int, default=1)
    args = parser.parse_args()

    with bench_stack() as (stack, root):
        stack.start_orchestrator(SWARM_RATE_LIMIT_PER_S="0")
        repo = init_repo(root / "repo")
        with stack.client() as client:
            sid = client.post("/v1/sessions", json={"title": "b", "repo": str(repo)}).json()["id"]
            arrived: dict[str, float] = {}
            answered: dict[str, float] = {}
            ready = threading.Event()

            def read() -> None:
                headers = {**AUTH, "Accept": "text/event-stream"}
                with httpx.stream(
                    "GET",
                    f"{stack.api_url}/v1/sessions/{sid}/events",
                    headers=headers,
                    timeout=None,
                ) as response:
                    ready.set()
                    for line in response.iter_lines():
                        if line.startswith("data:"):
                            entry = json.loads(line[5:])
                            if entry["type"] == "task.created":
                                arrived[entry["data"]["key"]] = time.perf_counter()
                                if len(arrived) >= args.entries:
                                    return

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            ready.wait(10)

            def write(w: int) -> None:
                with stack.client() as mine:
                    for i in range(w, args.entries, args.writers):
                        key = f"t{i}"
                        response = mine.post(
                            f"/v1/sessions/{sid}/tasks", json=[{"key": key, "prompt": "true"}]
                        )
                        response.raise_for_status()
                        answered[key] = time.perf_counter()

            writers = [threading.Thread(target=write, args=(w,)) for w in range(args.writers)]
            for t in writers:
                t.start()
            for t in writers:
                t.join()
            reader.join(60)
        lat = sorted(max(0.0, arrived[k] - answered[k]) * 1000 for k in answered if k in arrived)
        sys.stdout.write(
            json.dumps(
                {
                    "entries": args.entries,
                    "writers": args.writers,
                    "received": len(lat),
                    "median_ms": round(statistics.median(lat), 1),
                    "p95_ms": round(lat[int(0.95 * (len(lat) - 1))], 1),
                    "max_ms": round(lat[-1], 1),
                }
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
