"""A kind with no live adapter is never silent, with real processes: an adapter announces
what it can do when it comes online; killing the last adapter of a kind (`kill -9`, so it
says nothing) suspends the session whose task needs that kind, with the reason, after the
grace period; starting a new adapter of the kind resumes it, and the task runs."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import init_repo
from tests.e2e.stack import Stack
from tests.waiting import eventually, pid_alive

FAST = {"SWARM_WORKER_TTL_S": "2"}
"""Adapters whose liveness key lapses 2 s after they die."""


def _workers(client: httpx.Client) -> dict[str, dict[str, Any]]:
    return {w["name"]: w for w in client.get("/v1/workers").json()}


def _session(client: httpx.Client, session_id: str) -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"/v1/sessions/{session_id}").json()
    return body


def test_killing_the_last_adapter_suspends_its_session_and_a_new_one_resumes_it(
    stack: Stack, tmp_path: Path
) -> None:
    repo = init_repo(tmp_path / "project")
    stack.start_orchestrator(SWARM_SUSPEND_GRACE_S="1", SWARM_REGISTRY_INTERVAL_S="0.5")
    stack.start_adapter("shell-a", SWARM_MODELS="m-1,m-2", **FAST)
    with stack.client() as client:
        first = eventually(
            lambda: _workers(client).get("shell-a"),
            timeout_s=30,
            message=lambda: stack.log("shell-a"),
        )
        assert (first["agent"], first["status"], first["models"]) == (
            "shell",
            "online",
            ["m-1", "m-2"],
        )
        assert first["cli_version"] is None and first["capabilities"] == []

        proc = stack.procs["shell-a"]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert not pid_alive(proc.pid)

        created = client.post(
            "/v1/sessions",
            json={
                "title": "needs shell",
                "repo": str(repo),
                "base_ref": "main",
                "tasks": [{"key": "a", "prompt": "echo a > a.txt"}],
            },
        )
        assert created.status_code == 201, created.text
        session_id = created.json()["id"]

        suspended = eventually(
            lambda: (s := _session(client, session_id))["status"] == "suspended" and s,
            timeout_s=60,
            interval_s=0.2,
            message=lambda: f"{_session(client, session_id)}\n{stack.log('orchestrator')}",
        )
        assert suspended["suspended_reason"].startswith("no live shell adapter since ")
        assert suspended["suspended_kinds"] == ["shell"]
        assert _workers(client)["shell-a"]["status"] == "offline"

        stack.start_adapter("shell-b", **FAST)
        done = eventually(
            lambda: (s := _session(client, session_id))["status"] == "finalized" and s,
            timeout_s=60,
            interval_s=0.2,
            message=lambda: f"{_session(client, session_id)}\n{stack.log('shell-b')}",
        )
        assert done["done"]
        assert done["suspended_reason"] is None
        [task] = client.get(f"/v1/sessions/{session_id}/tasks").json()
        assert (task["status"], task["attempt"]) == ("succeeded", 1)
