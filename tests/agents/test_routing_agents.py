"""Routing with the real CLIs: three adapters (Claude Code, Codex, Gemini, against the fake
model server) announce their CLI's version and capabilities when they come online, and
`agent: auto` tasks with roles run on the kinds their roles prefer (backend → codex,
frontend → claude, design → gemini; a design task with an output schema → claude, since
Gemini cannot enforce one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agents.clis import CLIS
from tests.agents.conftest import AgentStack
from tests.conftest import init_repo
from tests.waiting import eventually

EXPECTED = {"api": "codex", "page": "claude", "look": "gemini", "form": "claude"}


def _workers(client: httpx.Client) -> dict[str, dict[str, Any]]:
    return {w["agent"]: w for w in client.get("/v1/workers").json()}


@pytest.mark.parametrize("agent_stack", ["claude"], indirect=True)
def test_auto_tasks_with_roles_run_on_the_kinds_their_roles_prefer(
    agent_stack: AgentStack, tmp_path: Path
) -> None:
    env = agent_stack
    repo = init_repo(tmp_path / "project")
    env.stack.start_orchestrator()
    env.start_adapter()
    env.start_adapter_of("codex")
    env.start_adapter_of("gemini")
    with env.stack.client() as client:
        workers = eventually(
            lambda: (w := _workers(client)).keys() >= {"claude", "codex", "gemini"} and w,
            timeout_s=90,
            message=lambda: str(client.get("/v1/workers").json()),
        )
        for agent in ("claude", "codex", "gemini"):
            version = CLIS[agent].version
            announced = workers[agent]
            assert version in (announced["cli_version"] or ""), announced
            assert "prose" in announced["capabilities"]
        assert "structured_output" not in workers["gemini"]["capabilities"]

        auto = {"agent": "auto", "prompt": "Write hello.txt."}
        created = client.post(
            "/v1/sessions",
            json={
                "title": "routed",
                "repo": str(repo),
                "base_ref": "main",
                "settings": {"gates": {"detect": False}},
                "tasks": [
                    {**auto, "key": "api", "role": "backend"},
                    {**auto, "key": "page", "role": "frontend"},
                    {**auto, "key": "look", "role": "design"},
                    {
                        **auto,
                        "key": "form",
                        "role": "design",
                        "output_schema": {
                            "type": "object",
                            "properties": {"done": {"type": "string"}},
                        },
                    },
                ],
            },
        )
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        eventually(
            lambda: client.get(f"/v1/sessions/{sid}").json()["done"],
            timeout_s=300,
            message=lambda: str(client.get(f"/v1/sessions/{sid}/tasks").json()),
        )
        tasks = {t["key"]: t for t in client.get(f"/v1/sessions/{sid}/tasks").json()}
        assert {k: t["agent"] for k, t in tasks.items()} == EXPECTED
        for key, agent in EXPECTED.items():
            detail = client.get(f"/v1/tasks/{tasks[key]['id']}").json()
            assert detail["spec"]["agent"] == "auto"
            assert [a["worker"] for a in detail["attempts"]] == [f"{agent}-1"], detail
