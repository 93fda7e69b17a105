"""Handoffs end to end with each real CLI against the fake model server: a parent task's
agent ends with a `swarm-handoff` block; its child's prompt and its `.swarm/context.json`
(read by the child's agent with its CLI's own reading tool) hold the parent's handoff and
the blackboard as it stood when the child was queued (a fact written later is in neither);
the context file is never committed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from swarm_common.handoffs import CONTEXT_FILE, FENCE_TAG
from tests.agents.conftest import AgentStack
from tests.agents.fakeserver import Scenario
from tests.conftest import commits_touching, init_repo
from tests.waiting import eventually

READY = ["claude", "codex", "gemini"]
SUMMARY = "Added the v2 API under /v2."
HANDOFF = {
    "summary": SUMMARY,
    "notes": ["pagination uses cursors"],
    "facts": {"api.base": "/v2"},
}
REPLY = f"I built it.\n\n```{FENCE_TAG}\n{json.dumps(HANDOFF)}\n```"
NO_GATES = {"gates": {"lint": "", "test": "", "build": ""}}


def _strings(value: Any) -> Iterator[str]:
    """Every string in a decoded request body, however deeply nested."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _wait_task(client: httpx.Client, task_id: str, statuses: set[str]) -> dict[str, Any]:
    def there() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get(f"/v1/tasks/{task_id}").json()
        done = body["status"] in statuses and body.get("merge_status") != "pending"
        return body if done else None

    return eventually(there, timeout_s=120, message=f"task {task_id} in {statuses}")


@pytest.mark.parametrize("agent_stack", READY, indirect=True)
def test_a_child_gets_its_parents_handoff_and_the_board_as_queued(
    agent_stack: AgentStack, tmp_path: Path
) -> None:
    env = agent_stack
    env.server.scenario = Scenario(
        mode="write_file", file="out.txt", reply=REPLY, read_first=CONTEXT_FILE
    )
    repo = init_repo(tmp_path / "project")
    env.stack.start_orchestrator()
    env.start_adapter()
    agent = env.case.agent
    body = {
        "title": "handoffs",
        "repo": str(repo),
        "base_ref": "main",
        "settings": NO_GATES,
        "tasks": [
            {"key": "api", "agent": agent, "title": "Build the API", "prompt": "Build it."},
            {
                "key": "client",
                "agent": agent,
                "title": "Write the client",
                "prompt": "Write it.",
                "depends_on": ["api"],
            },
        ],
    }
    with env.stack.client() as client:
        created = client.post("/v1/sessions", json=body)
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        written = client.post(f"/v1/sessions/{sid}/blackboard", json={"key": "db", "value": "pg"})
        assert written.status_code == 201, written.text
        ids = {t["key"]: t["id"] for t in client.get(f"/v1/sessions/{sid}/tasks").json()}
        parent = _wait_task(client, ids["api"], {"succeeded", "failed"})
        assert parent["status"] == "succeeded", parent["attempts"]
        assert parent["handoff"]["summary"] == SUMMARY
        assert parent["handoff"]["source"] == "block"
        _wait_task(client, ids["client"], {"queued", "running", "succeeded", "failed"})
        client.post(f"/v1/sessions/{sid}/blackboard", json={"key": "late", "value": "no"})
        child = _wait_task(client, ids["client"], {"succeeded", "failed"})
        assert child["status"] == "succeeded", child["attempts"]
        board = client.get(f"/v1/sessions/{sid}/blackboard").json()
        assert {f["key"] for f in board["facts"]} == {"db", "api.base", "late"}

    requests = [r["body"] for r in env.server.state.requests]
    texts = [list(_strings(b)) for b in requests]
    child_runs = [t for t in texts if any("# Task: Write the client" in s for s in t)]
    assert child_runs, "the child's agent asked the model"
    prompt = next(s for s in child_runs[0] if "# Task: Write the client" in s)
    assert "### api: Build the API" in prompt and SUMMARY in prompt
    assert "- pagination uses cursors" in prompt
    assert '- api.base = "/v2" (task:api)' in prompt and '- db = "pg"' in prompt
    assert "- late = " not in prompt
    read = [s for t in child_runs for s in t if '"blackboard"' in s and '"parents"' in s]
    assert read, "the child's agent read the context file"
    assert SUMMARY in read[0] and "api.base" in read[0] and '"late"' not in read[0]

    mirror = env.stack.workspace / "repos" / f"{sid}.git"
    assert commits_touching(mirror, ".swarm") == []
    assert child["attempts"][-1]["changed_files"] in ([], ["out.txt"])
