"""Recovery (issue 19, benchmark 7): `kill -9` of an adapter holding a task, and how long
until the task runs again on the other adapter, with the default settings.

Two shell adapters × 1 and the orchestrator run with every interval at its default (the
test stack's shortened heartbeat, sweep and read-block intervals are put back to the
settings' defaults; leases untouched). One task, `sleep 30`, starts on one adapter; once
the orchestrator has had a heartbeat of its attempt (it is well under way), that adapter's
process is sent SIGKILL. The other adapter is live and idle.

- `rerun_after_kill_s`: from the kill (`time.time()` just before it) to the `created_at` of
  the task's next `task.started` (attempt 2) on the timeline.

    .venv/bin/python bench/recovery.py      (--quick changes nothing: one task either way)
"""

from __future__ import annotations

import json
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import rest  # noqa: E402
from harness import bench_stack  # noqa: E402
from repos import small_repo  # noqa: E402
from tests.waiting import eventually  # noqa: E402

from swarm_adapter.settings import AdapterSettings  # noqa: E402
from swarm_orchestrator.settings import OrchestratorSettings  # noqa: E402

__all__ = ["defaults", "once"]

SHORTENED = ("sweep_interval_s", "heartbeat_interval_s", "read_block_ms")
"""What `tests.e2e.stack.Stack` shortens for tests; put back to the defaults here."""
TASK = {"key": "sleeper", "prompt": "sleep 30", "max_attempts": 2}


def defaults(settings: type[OrchestratorSettings] | type[AdapterSettings]) -> dict[str, str]:
    """`SWARM_*` variables that set the shortened settings this class has to its defaults."""
    fields = settings.model_fields
    return {f"SWARM_{n.upper()}": str(fields[n].default) for n in SHORTENED if n in fields}


def once(quick: bool = False) -> dict[str, float]:
    with bench_stack("recovery") as (stack, root):
        names = ["shell-0", "shell-1"]
        with rest.running(
            stack,
            [(n, "shell", 1) for n in names],
            orchestrator_env=defaults(OrchestratorSettings),
            adapter_env=defaults(AdapterSettings),
        ) as client:
            repo = small_repo(root / "repo")
            session_id = rest.create_session(client, str(repo), [TASK])
            task_id = _task_id(client, session_id)
            holder = eventually(
                lambda: _under_way(client, task_id),
                timeout_s=60,
                interval_s=0.1,
                message="the task's attempt never heartbeat",
            )
            victim = stack.procs[holder]
            killed_at = time.time()
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            events = rest.read_timeline(
                client,
                session_id,
                until=lambda evs: any(
                    e["type"] == "task.started" and e["attempt"] == 2 for e in evs
                ),
                timeout_s=300,
            )
            client.post(f"/v1/sessions/{session_id}/cancel").raise_for_status()
    again = min(rest.stamp(e) for e in events if e["type"] == "task.started" and e["attempt"] == 2)
    return {"rerun_after_kill_s": again - killed_at}


def _task_id(client: httpx.Client, session_id: str) -> str:
    [task] = client.get(f"/v1/sessions/{session_id}/tasks").json()
    return str(task["id"])


def _under_way(client: httpx.Client, task_id: str) -> str:
    """The worker running the task's attempt, once the orchestrator had a heartbeat of it
    after its start ("" until then)."""
    attempts = client.get(f"/v1/tasks/{task_id}").json()["attempts"]
    if not attempts:
        return ""
    last = attempts[-1]
    beat, start = last["heartbeat_at"], last["started_at"]
    if beat and start and datetime.fromisoformat(beat) > datetime.fromisoformat(start):
        return str(last["worker"])
    return ""


if __name__ == "__main__":
    sys.stdout.write(json.dumps(once(quick="--quick" in sys.argv)) + "\n")
