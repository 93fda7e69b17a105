"""A goal planned by the real Claude Code and Codex CLIs (against the fake model server),
end to end through Swarm's processes: the planner's first answer is no plan and is repaired
in its second round, the plan is stored as a draft, edited by PATCH, revised by feedback,
approved, and runs (on a shell adapter) to `finalized`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agents.conftest import AgentStack
from tests.agents.fakeserver import Scenario
from tests.conftest import init_repo
from tests.waiting import eventually

GOAL = "Write model.txt, then api.txt that builds on it."


def _task(key: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return {
        "key": key,
        "title": f"Write {key}.txt",
        "prompt": f"echo {key} > {key}.txt",
        "agent": "shell",
        "depends_on": list(deps),
        "priority": 0,
        "phase": "Build",
        "epic": None,
        "estimated_hours": 0.5,
        "files": [f"{key}.txt"],
        "acceptance": [],
    }


FIRST = {"summary": "model, then api", "tasks": [_task("model"), _task("api", "model")]}
REVISED = {
    "summary": "and docs",
    "tasks": [_task("model"), _task("api", "model"), _task("docs", "api")],
}


def _plan(client: httpx.Client, sid: str) -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"/v1/sessions/{sid}/plan").json()
    return body


def _settled(client: httpx.Client, sid: str, revision: int) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        plan = _plan(client, sid)
        if plan["status"] == "failed":
            raise AssertionError(f"planning failed: {plan['error']}")
        return plan if plan["status"] == "ready" and plan["revision"] == revision else None

    return eventually(ready, timeout_s=120, message=f"plan revision {revision}")


@pytest.mark.parametrize("agent_stack", ["claude", "codex"], indirect=True)
def test_a_goal_is_planned_repaired_edited_revised_approved_and_finalized(
    agent_stack: AgentStack, tmp_path: Path
) -> None:
    env = agent_stack
    agent = env.case.agent
    env.server.scenario = Scenario(
        mode="answer", answers=["This is no plan.", json.dumps(FIRST), json.dumps(REVISED)]
    )
    repo = init_repo(tmp_path / "project")
    env.stack.start_orchestrator()
    env.start_adapter()
    env.stack.start_adapter("shell-1")
    with env.stack.client() as client:
        created = client.post(
            "/v1/sessions",
            json={
                "title": "planned",
                "goal": GOAL,
                "repo": str(repo),
                "base_ref": "main",
                "plan": True,
                "settings": {"planner": {"agent": agent}, "gates": {"detect": False}},
            },
        )
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        assert created.json()["status"] == "draft"

        plan = _settled(client, sid, 1)
        assert [t["key"] for t in plan["tasks"]] == ["model", "api"]
        assert plan["source"] == "planner" and plan["summary"] == "model, then api"
        [run] = plan["runs"]
        assert (run["agent"], run["attempt"], run["status"]) == (agent, 2, "succeeded")
        asked = json.dumps([r["body"] for r in env.server.state.requests])
        assert "not a valid plan" in asked  # the repair round was told the errors
        assert (client.get(f"/v1/sessions/{sid}/tasks").json()) == []

        edited = client.patch(
            f"/v1/sessions/{sid}/plan",
            json={
                "base_revision": 1,
                "changes": [{"op": "update", "key": "api", "set": {"priority": 7}}],
            },
        )
        assert edited.status_code == 200, edited.text
        assert edited.json()["revision"] == 2
        stale = client.patch(
            f"/v1/sessions/{sid}/plan", json={"base_revision": 1, "tasks": FIRST["tasks"]}
        )
        assert stale.status_code == 409 and stale.json()["code"] == "stale_revision"

        asked_for = client.post(f"/v1/sessions/{sid}/plan/messages", json={"text": "add docs"})
        assert asked_for.status_code == 202, asked_for.text
        plan = _settled(client, sid, 3)
        assert [t["key"] for t in plan["tasks"]] == ["model", "api", "docs"]
        assert plan["source"] == "feedback"
        assert [m["role"] for m in plan["messages"]] == ["user", "planner", "user", "planner"]
        assert "add docs" in json.dumps([r["body"] for r in env.server.state.requests][-1:])

        spent = client.get(f"/v1/sessions/{sid}/progress").json()
        assert spent["tokens"] and spent["tokens"] > 0 and spent["total"] == 0

        approved = client.post(f"/v1/sessions/{sid}/approve")
        assert approved.status_code == 200, approved.text
        assert approved.json()["status"] == "active" and approved.json()["total"] == 3
        eventually(
            lambda: client.get(f"/v1/sessions/{sid}").json()["status"] == "finalized",
            timeout_s=120,
            message="the approved plan ran to finalized",
        )
        tasks = client.get(f"/v1/sessions/{sid}/tasks").json()
        assert {t["key"]: t["merge_status"] for t in tasks} == {
            "model": "merged",
            "api": "merged",
            "docs": "merged",
        }
