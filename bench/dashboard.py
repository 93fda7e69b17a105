"""Dashboard responsiveness with a large session: a real orchestrator, a session of N tasks
(1000 by default, a layered DAG), and the dashboard in headless Chromium.

    .venv/bin/python bench/dashboard.py --tasks 1000 --adapters 2 --concurrency 4

Measures, in the page (`window.swarmStats`, a Long Tasks observer, an event-loop lag
probe): the first load of the board, the graph's layout and drawing, a status change
recoloured, how soon a new task shows after its POST, and — while adapters run the whole
session — board update times, the longest main-thread stall and how many API requests the
page made per second. A baseline measured in the same page at the same time (1000 plain
divs built with textContent) gives the render figures as ratios, since this machine's
speed varies by ±25% from run to run. Prints one JSON line, then a summary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import bench_stack  # noqa: E402
from playwright.sync_api import Page  # noqa: E402
from tests.conftest import init_repo  # noqa: E402
from tests.e2e.browser import chromium, layered_graph, open_dashboard  # noqa: E402
from tests.e2e.stack import TEST_TOKEN, Stack  # noqa: E402

PROBES = """
window.benchLag = {max: 0, samples: []};
(function probe() {
  let last = performance.now();
  setInterval(() => {
    const now = performance.now();
    const lag = now - last - 50;
    last = now;
    window.benchLag.max = Math.max(window.benchLag.max, lag);
    window.benchLag.samples.push(lag);
  }, 50);
})();
window.benchLong = [];
try {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.benchLong.push(e.duration);
  }).observe({type: 'longtask', buffered: true});
} catch (e) { /* no Long Tasks API (Firefox) */ }
"""

BASELINE = """() => {
  const root = document.createElement('div');
  document.body.append(root);
  const t0 = performance.now();
  for (let i = 0; i < 1000; i++) {
    const d = document.createElement('div');
    d.className = 'card';
    d.textContent = 'task ' + i;
    root.append(d);
  }
  root.getBoundingClientRect();
  const ms = performance.now() - t0;
  root.remove();
  return ms;
}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--width", type=int, default=50, help="tasks per layer")
    parser.add_argument("--adapters", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--run-timeout", type=float, default=600, help="seconds for the run")
    parser.add_argument("--no-run", action="store_true", help="skip running the session")
    args = parser.parse_args()

    with bench_stack("benchdash") as (stack, root):
        stack.start_orchestrator()
        results = _measure(stack, root, args)
    sys.stdout.write(json.dumps(results) + "\n")
    for key, value in results.items():
        sys.stdout.write(f"{key:>32}: {value}\n")


def _measure(stack: Stack, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    repo = init_repo(root / "repo")
    layers = max(1, args.tasks // args.width)
    tasks = layered_graph(layers, args.width)
    out: dict[str, Any] = {"tasks": len(tasks), "layers": layers}
    with stack.client() as client, chromium() as browser:
        sid = client.post(
            "/v1/sessions", json={"title": "bench", "repo": str(repo), "tasks": tasks}
        ).json()["id"]
        started = time.monotonic()
        page, errors = open_dashboard(browser, stack.api_url, TEST_TOKEN, path=f"/#s={sid}")
        page.evaluate(PROBES)
        page.get_by_test_id("board-summary").filter(has_text=f"{len(tasks)} tasks").wait_for(
            timeout=60_000
        )
        out["board_first_load_s"] = round(time.monotonic() - started, 3)
        stats = _stats(page)
        out["board_first_render_ms"] = max(stats["timings"]["board"])
        out["baseline_1000_divs_ms"] = round(page.evaluate(BASELINE), 2)
        out["board_render_vs_baseline"] = _ratio(
            out["board_first_render_ms"], out["baseline_1000_divs_ms"]
        )
        out["dom_nodes_board"] = page.evaluate("document.getElementsByTagName('*').length")

        started = time.monotonic()
        page.get_by_test_id("tab-graph").click()
        page.wait_for_function(
            "n => document.querySelectorAll('[data-testid=graph-node]').length === n",
            arg=len(tasks),
            timeout=60_000,
        )
        out["graph_show_s"] = round(time.monotonic() - started, 3)
        stats = _stats(page)
        out["graph_layout_ms"] = stats["timings"]["graphLayout"][-1]
        out["graph_draw_ms"] = stats["timings"]["graphRender"][-1]
        out["graph_edges"] = page.evaluate(
            "document.querySelectorAll('[data-testid=graph-edge]').length"
        )
        out["dom_nodes_with_graph"] = page.evaluate("document.getElementsByTagName('*').length")

        # One status change: recoloured, not laid out again.
        first = client.get(f"/v1/sessions/{sid}/tasks", params={"limit": 1}).json()[0]
        posted = time.monotonic()
        client.post(f"/v1/tasks/{first['id']}/cancel")
        page.locator(
            f'[data-testid="graph-node"][data-task-key="{first["key"]}"][data-status="cancelled"]'
        ).wait_for(state="attached", timeout=30_000)
        out["status_change_to_graph_s"] = round(time.monotonic() - posted, 3)
        out["graph_recolour_ms"] = _stats(page)["timings"]["graphRecolour"][-1]

        page.get_by_test_id("tab-board").click()
        out["new_task_to_board_s"] = _new_task_latency(page, client, sid)

        if not args.no_run:
            out.update(_run(page, stack, client, sid, len(tasks) + 5, args))
        out["api"] = page.evaluate("({...window.swarmApi})")
        real = [e for e in errors if "Failed to load resource" not in e]
        out["page_errors"] = len(real)
        page.context.close()
    return out


def _new_task_latency(page: Page, client: Any, sid: str, samples: int = 5) -> dict[str, float]:
    seen = []
    for n in range(samples):
        posted = time.monotonic()
        added = client.post(
            f"/v1/sessions/{sid}/tasks", json=[{"key": f"new-{n}", "prompt": "true"}]
        )
        task_id = added.json()[0]["id"]
        page.wait_for_function(
            "id => window.swarmStats.firstSeen[id] !== undefined",
            arg=task_id,
            polling="raf",
            timeout=30_000,
        )
        seen.append(time.monotonic() - posted)
    return {"median": round(statistics.median(seen), 3), "max": round(max(seen), 3)}


def _run(
    page: Page, stack: Stack, client: Any, sid: str, total: int, args: argparse.Namespace
) -> dict[str, Any]:
    """Run the whole session with real adapters while the board is shown."""
    page.evaluate(
        "() => { window.swarmStats.timings.board = []; window.benchLag.max = 0; "
        "window.benchLag.samples = []; window.benchLong = []; }"
    )
    requests_before = page.evaluate("window.swarmApi.requests")
    # The same probes in an empty page of the same browser: what this machine's load alone
    # does to a main thread (2 cores shared with the orchestrator, adapters and databases).
    blank = page.context.browser.new_context().new_page()  # type: ignore[union-attr]
    blank.set_content("<p>baseline</p>")
    blank.evaluate(PROBES)
    for i in range(args.adapters):
        stack.start_adapter(f"bench-{i}", concurrency=args.concurrency)
    started = time.monotonic()
    deadline = started + args.run_timeout
    while time.monotonic() < deadline:
        if client.get(f"/v1/sessions/{sid}").json()["done"]:
            break
        time.sleep(0.5)
    ran_s = time.monotonic() - started
    done_at = time.monotonic()
    page.get_by_test_id("progress-done").filter(has_text=f"{total} / {total} done").wait_for(
        timeout=60_000
    )
    settle_s = time.monotonic() - done_at
    requests = page.evaluate("window.swarmApi.requests") - requests_before
    stats = _stats(page)
    board = stats["timings"]["board"]
    lag = page.evaluate("window.benchLag")
    longs = page.evaluate("window.benchLong")
    blank_lag = blank.evaluate("window.benchLag")
    blank_longs = blank.evaluate("window.benchLong")
    blank.context.close()
    return {
        "run_s": round(ran_s, 1),
        "run_tasks_per_s": round(total / ran_s, 1),
        "board_updates": len(board),
        "board_update_ms_p50": round(statistics.median(board), 2) if board else None,
        "board_update_ms_p95": _pct(board, 95),
        "board_update_ms_max": max(board) if board else None,
        "main_thread_lag_ms_p95": _pct(lag["samples"], 95),
        "main_thread_lag_ms_max": round(lag["max"], 1),
        "long_tasks": len(longs),
        "long_task_ms_max": round(max(longs), 1) if longs else 0,
        "baseline_lag_ms_p95": _pct(blank_lag["samples"], 95),
        "baseline_lag_ms_max": round(blank_lag["max"], 1),
        "baseline_long_tasks": len(blank_longs),
        "lag_p95_vs_baseline": _ratio(
            _pct(lag["samples"], 95) or 0.0, _pct(blank_lag["samples"], 95) or 0.0
        ),
        "api_requests_per_s": round(requests / max(ran_s, 1e-6), 2),
        "board_final_after_done_s": round(settle_s, 3),
    }


def _stats(page: Page) -> dict[str, Any]:
    stats: dict[str, Any] = page.evaluate(
        "({timings: window.swarmStats.timings, "
        "seen: Object.keys(window.swarmStats.firstSeen).length})"
    )
    return stats


def _pct(values: list[float], pct: int) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))], 2)


def _ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else float("inf")


if __name__ == "__main__":
    main()
