"""Sandbox start-up (issue 20): what an attempt's sandbox (`swarm_adapter.sandbox`) adds to
each command it runs, next to what preparing the attempt's worktree takes, in one run.

Each figure is over `--runs` runs, the kinds interleaved so that a noisy machine weighs on
all of them alike:

- `run_off_s`: `true` through `procs.run_process` (the adapter's own path: its process
  group, the watchdog's mark, the pipes), no sandbox;
- `run_bwrap_s`: the same inside a cell without network (a shell task whose session
  allows no host): bubblewrap and `env`;
- `run_bwrap_net_s`: inside a cell with the proxy (`sandbox_init` in front, its relay
  listening);
- `cell_s`: making and closing an attempt's cell (its files, its egress sockets);
- `worktree_ready_s`: `Worktrees.prepare` of a 5,000-file repository's worktree, reused
  from the pool (what an attempt waits for before its agent starts);
- `worktree_add_s`: a plain `git worktree add` of the same repository.

Medians (and the 90th percentile of each run kind), in seconds; the result goes to
`bench/results/sandbox-<date>.json` and the table to stdout.

    .venv/bin/python bench/sandbox.py [--runs 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from repos import large_repo, worktree_add_times  # noqa: E402
from stats import percentile  # noqa: E402
from tests.adapter.helpers import Mirror, message  # noqa: E402

from swarm_adapter.sandbox import Sandboxing  # noqa: E402
from swarm_adapter.worktree import Worktrees  # noqa: E402
from swarm_common import git  # noqa: E402
from swarm_common.procs import run_process  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


async def _run(argv: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    done = await run_process(
        argv, cwd=cwd, env={"PATH": os.environ["PATH"]}, timeout_s=30, cancel=asyncio.Event()
    )
    if done.exit_code != 0:
        raise RuntimeError(f"{argv[:3]}… exited {done.exit_code}: {done.tail}")
    return time.perf_counter() - started


async def measure(runs: int, scratch: Path) -> dict[str, Any]:
    sandboxing = Sandboxing.detect("required", environ=os.environ)
    workspace = scratch / "workspace"
    repo = large_repo(scratch / "large")
    session = uuid.uuid4()
    mirror_path = workspace / "repos" / f"{session}.git"
    git.clone_bare(str(repo), mirror_path)
    mirror = Mirror(session, mirror_path, git.resolve_commit(mirror_path, "main"))
    worktrees = Worktrees(workspace)
    figures: dict[str, list[float]] = {
        k: [] for k in ("run_off_s", "run_bwrap_s", "run_bwrap_net_s", "cell_s", "worktree_ready_s")
    }
    for i in range(runs + 2):  # the first two: warm-up (a cold checkout, caches)
        msg = message(mirror, "true", key=f"t{i}")
        started = time.perf_counter()
        worktree = await worktrees.prepare(msg)
        ready = time.perf_counter() - started
        started = time.perf_counter()
        plain = await sandboxing.cell(
            worktree=worktree,
            home=worktrees.home(msg),
            repo=mirror_path,
            models=[],
            allow_hosts=[],
            context={},
        )
        made = time.perf_counter() - started
        net = await sandboxing.cell(
            worktree=worktree,
            home=worktrees.home(msg),
            repo=mirror_path,
            models=[],
            allow_hosts=["registry.npmjs.org"],
            context={},
        )
        try:
            off = await _run(["true"], worktree)
            boxed = await _run(plain.wrap(["true"]), worktree)
            boxed_net = await _run(net.wrap(["true"]), worktree)
        finally:
            started = time.perf_counter()
            await plain.close()
            closed = time.perf_counter() - started
            await net.close()
            await worktrees.remove(msg)
        if i >= 2:
            figures["worktree_ready_s"].append(ready)
            figures["cell_s"].append(made + closed)
            figures["run_off_s"].append(off)
            figures["run_bwrap_s"].append(boxed)
            figures["run_bwrap_net_s"].append(boxed_net)
    await worktrees.idle(30)
    adds = worktree_add_times(repo, scratch / "adds", max(3, runs // 8))
    result: dict[str, Any] = {
        name: {
            "median": statistics.median(values),
            "p90": percentile(values, 90),
            "min": min(values),
            "max": max(values),
        }
        for name, values in figures.items()
    }
    result["worktree_add_s"] = {
        "median": statistics.median(adds),
        "min": min(adds),
        "max": max(adds),
    }
    result["runs"] = runs
    result["sandbox_added_s"] = result["run_bwrap_s"]["median"] - result["run_off_s"]["median"]
    result["sandbox_net_added_s"] = (
        result["run_bwrap_net_s"]["median"] - result["run_off_s"]["median"]
    )
    return result


def table(result: dict[str, Any]) -> str:
    lines = ["| figure | median | p90 | min–max |", "|---|---|---|---|"]
    for name, values in result.items():
        if not isinstance(values, dict):
            continue
        p90 = f"{values['p90'] * 1000:.1f} ms" if "p90" in values else "—"
        lines.append(
            f"| {name} | {values['median'] * 1000:.1f} ms | {p90} | "
            f"{values['min'] * 1000:.1f}–{values['max'] * 1000:.1f} ms |"
        )
    lines.append(
        f"\nThe sandbox adds {result['sandbox_added_s'] * 1000:.1f} ms to a command "
        f"({result['sandbox_net_added_s'] * 1000:.1f} ms with its proxy), over {result['runs']} "
        "runs."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="swarm-bench-sandbox-") as scratch:
        result = asyncio.run(measure(args.runs, Path(scratch)))
    result["at"] = datetime.now(UTC).isoformat(timespec="seconds")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"sandbox-{datetime.now(UTC).date().isoformat()}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))  # noqa: T201 - the benchmark's answer
    print(f"\nwritten: {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")  # noqa: T201


if __name__ == "__main__":
    main()
