"""`/metrics` scraped by a Prometheus-like client during a real run (an orchestrator and shell
adapters as processes): every figure of the observability list moves as the run does. An
attempt's queue wait and run time, a merge and a conflict, a failed attempt and its retry,
checkpoints and a rollback, an adapter killed mid-task (its attempt lost, it counted as
gone silent), a dead letter, live adapters and their slots, tasks by status and the lag of
the task stream. And a request's id: echoed, and on the orchestrator's log line about it.
Tokens and cost need a model: `tests/agents/test_agent_adapters.py` checks them."""

from __future__ import annotations

import os
import signal
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from redis import Redis

from swarm_common.streams import ADAPTERS_GROUP, Keys
from tests.conftest import init_repo
from tests.e2e.scrape import Samples, scrape, value
from tests.e2e.stack import Stack
from tests.waiting import eventually

METRICS_TOKEN = "e2e-metrics-token-0123456789"
SCRAPER = {"Authorization": f"Bearer {METRICS_TOKEN}"}
VICTIM = {"SWARM_LEASE_S": "3", "SWARM_WORKER_TTL_S": "3"}
"""An adapter whose attempts are lost 3 s after it dies, and its liveness key too."""


def _session(client: httpx.Client, repo: Path, title: str, tasks: list[dict[str, Any]]) -> str:
    created = client.post(
        "/v1/sessions",
        json={"title": title, "repo": str(repo), "base_ref": "main", "tasks": tasks},
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def _tasks(client: httpx.Client, session_id: str) -> dict[str, dict[str, Any]]:
    listed = client.get(f"/v1/sessions/{session_id}/tasks").json()
    return {t["key"]: client.get(f"/v1/tasks/{t['id']}").json() for t in listed}


def _settled(client: httpx.Client, session_id: str, status: str) -> dict[str, Any]:
    def there() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get(f"/v1/sessions/{session_id}").json()
        return body if body["status"] == status and body["done"] else None

    return eventually(
        there,
        timeout_s=90,
        interval_s=0.3,
        message=lambda: str(client.get(f"/v1/sessions/{session_id}").json()),
    )


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_every_figure_moves_as_a_real_run_does(stack: Stack, tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "project", {"shared.txt": "base\n"})
    marks = tmp_path / "marks"
    marks.mkdir()
    stack.start_orchestrator(SWARM_METRICS_TOKEN=METRICS_TOKEN, SWARM_REGISTRY_INTERVAL_S="0.5")
    stream = Keys(stack.redis_prefix).tasks("shell")
    with stack.client() as client:
        before = scrape(client, SCRAPER)

        def moved(now: Samples, name: str, **labels: str) -> float:
            return value(now, name, **labels) - value(before, name, **labels)

        # 1. A task waits in its stream: no adapter yet.
        slow = f"[ -e {marks}/slow ] && echo s > s.txt || {{ touch {marks}/slow; sleep 120; }}"
        lost_id = _session(client, repo, "lost", [{"key": "slow", "prompt": slow}])
        waiting = eventually(
            lambda: (
                (s := scrape(client, SCRAPER))
                and value(s, "swarm_stream_lag", stream=stream, group=ADAPTERS_GROUP) == 1
                and s
            ),
            message="the task message never reached its stream",
        )
        assert value(waiting, "swarm_tasks", agent="shell", status="queued") == 1
        assert value(waiting, "swarm_adapters_live", agent="shell") == 0

        # 2. An adapter takes it and is killed mid-task: its attempt is lost, it went silent.
        stack.start_adapter("victim", **VICTIM)

        def heard_from() -> bool:
            """Its first heartbeat after the start arrived: a loss now is no failed start."""
            attempts = _tasks(client, lost_id)["slow"]["attempts"]
            started = attempts[0]["started_at"] if attempts else None
            beat = attempts[0]["heartbeat_at"] if attempts else None
            return bool(started and beat and _at(beat) > _at(started))

        eventually(heard_from, timeout_s=30, message=lambda: stack.log("victim"))
        expected = {  # once a reading newer than the last scrape's (2 s) is served
            ("swarm_adapters_live", "shell"): 1,
            ("swarm_slots", "shell"): 1,
            ("swarm_slots_free", "shell"): 0,
        }

        def as_running() -> Samples | None:
            now = scrape(client, SCRAPER)
            found = {(n, a): value(now, n, agent=a) for n, a in expected}
            running = value(now, "swarm_tasks", agent="shell", status="running")
            return now if found == expected and running == 1 else None

        running = eventually(as_running, timeout_s=10, message="the figures never showed it")
        assert value(running, "swarm_stream_pending", stream=stream, group=ADAPTERS_GROUP) == 1
        os.killpg(stack.procs["victim"].pid, signal.SIGKILL)
        stack.procs["victim"].wait(timeout=10)
        stack.start_adapter("shell-a", concurrency=2)
        _settled(client, lost_id, "finalized")

        # 3. A merge, a failed attempt and its retry, and a conflict in another session.
        flaky = f"[ -e {marks}/b ] && echo b > b.txt || {{ touch {marks}/b; exit 3; }}"
        graph = [
            {"key": "a", "prompt": "echo a > a.txt"},
            {"key": "b", "prompt": flaky, "max_attempts": 2},
        ]
        rid = f"e2e-{uuid.uuid4().hex[:8]}"
        made = client.post(
            "/v1/sessions",
            json={"title": "main", "repo": str(repo), "base_ref": "main", "tasks": graph},
            headers={"X-Request-ID": rid},
        )
        assert made.status_code == 201 and made.headers["x-request-id"] == rid
        main_id = made.json()["id"]
        clash = [
            {"key": "x", "prompt": "echo x > shared.txt"},
            {"key": "y", "prompt": "echo y > shared.txt"},
        ]
        clash_id = _session(client, repo, "clash", clash)
        _settled(client, main_id, "finalized")
        eventually(  # x merged, y conflicts with it (or the other way round)
            lambda: client.get(f"/v1/sessions/{clash_id}").json()["status"] == "awaiting_review",
            timeout_s=60,
        )
        assert (client.post(f"/v1/sessions/{clash_id}/checkpoints")).status_code == 202
        eventually(
            lambda: (
                client.get(f"/v1/sessions/{clash_id}/checkpoints/1").json()["status"] == "passed"
            ),
            timeout_s=30,
        )
        rolled = client.post(f"/v1/sessions/{clash_id}/rollback", json={"checkpoint": 1})
        assert rolled.status_code == 200, rolled.text

        # 4. An event nobody can read is dead-lettered.
        redis = Redis.from_url(stack.redis_url)
        try:
            redis.xadd(Keys(stack.redis_prefix).events, {"env": b"{not json"})
        finally:
            redis.close()

        def everything_counted() -> Samples | None:
            now = scrape(client, SCRAPER)
            pending = [
                moved(now, "swarm_adapters_lost_total", agent="shell") < 1,
                moved(now, "swarm_dead_letters_total") < 1,
                value(now, "swarm_adapters_live", agent="shell") != 1,  # the victim is gone
            ]
            return None if any(pending) else now

        after = eventually(
            everything_counted, timeout_s=30, message=lambda: stack.log("orchestrator")
        )

    def grew(name: str, **labels: str) -> float:
        return moved(after, name, **labels)

    shell = {"agent": "shell"}
    assert grew("swarm_attempt_queue_wait_seconds_count", **shell) == 7  # slow twice, b twice
    assert grew("swarm_attempt_run_seconds_count", **shell, outcome="succeeded") == 5
    assert grew("swarm_attempts_total", **shell, outcome="succeeded", reason="none") == 5
    assert grew("swarm_attempts_total", **shell, outcome="failed", reason="exit_code") == 1
    assert grew("swarm_attempts_total", **shell, outcome="lost") == 1
    assert grew("swarm_attempts_lost_total", **shell) == 1
    assert grew("swarm_retries_total", **shell) == 2  # the lost one and the failed one
    assert grew("swarm_adapters_lost_total", **shell) == 1
    assert grew("swarm_merges_total", result="merged") == 4  # slow, a, b, and x or y
    assert grew("swarm_merges_total", result="conflict") == 1
    assert grew("swarm_checkpoints_total", result="passed") == 3  # two final, one asked
    assert grew("swarm_checkpoint_seconds_count", result="passed") == 3
    assert grew("swarm_rollbacks_total") == 1
    assert grew("swarm_dead_letters_total") == 1
    assert grew("swarm_events_total", type="other", outcome="dead") == 1
    assert grew("swarm_events_total", type="task.started", outcome="applied") == 7
    assert value(after, "swarm_tasks", agent="shell", status="succeeded") == 5
    assert value(after, "swarm_sessions", status="finalized") == 2
    assert value(after, "swarm_adapters_live", **shell) == 1
    assert value(after, "swarm_slots_free", **shell) == 2
    assert value(after, "swarm_stream_lag", stream=stream, group=ADAPTERS_GROUP) == 0
    assert value(after, "swarm_store_up", store="postgresql") == 1

    # The request's id is on the orchestrator's line about what it did.
    log = (stack.logs / "orchestrator.log").read_text(errors="replace").splitlines()
    [line] = [x for x in log if "session created" in x and f"session_id={main_id}" in x]
    assert line.endswith(f"request_id={rid}")
    queued = [x for x in log if "task queued" in x and f"session_id={main_id}" in x]
    assert len(queued) == 3 and sum(f"request_id={rid}" in x for x in queued) == 2  # a, b
