"""A fan-out end to end through Swarm's processes, with the real Claude Code and Codex CLIs
against the fake model server: a root, four workers on two agent kinds, a verifier and a
synthesizer run in that order; a verifier's FAIL blocks the synthesizer."""

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

WORKERS = [
    {"who": "backend", "agent": "claude", "prompt": "Write the API.", "key": "api"},
    {"who": "data", "agent": "codex", "prompt": "Write the schema.", "key": "schema"},
    {"who": "frontend", "agent": "claude", "prompt": "Write the UI.", "key": "ui"},
    {"who": "qa", "agent": "codex", "prompt": "Write the tests.", "key": "tests"},
]


def _verdict(kind: str, *issues: str) -> str:
    return json.dumps(
        {
            "verdict": kind,
            "summary": "checked",
            "critical_issues": list(issues),
            "recommendations": [],
        }  # fmt: skip
    )


def _fan_out(client: httpx.Client, repo: Path, title: str) -> str:
    created = client.post(
        "/v1/sessions",
        json={
            "title": title,
            "repo": str(repo),
            "base_ref": "main",
            "settings": {"gates": {"detect": False}},
            "template": {
                "name": "fan-out",
                "goal": "Build a greeting service",
                "workers": WORKERS,
                "root": {"agent": "claude"},
                "verifier": {"agent": "claude"},
                "synthesizer": {"agent": "codex"},
            },
        },
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def _tasks(client: httpx.Client, sid: str) -> dict[str, dict[str, Any]]:
    return {t["key"]: t for t in client.get(f"/v1/sessions/{sid}/tasks").json()}


@pytest.mark.parametrize("agent_stack", ["claude"], indirect=True)
def test_a_fan_out_runs_in_order_and_a_verifier_fail_blocks_the_synthesizer(
    agent_stack: AgentStack, tmp_path: Path
) -> None:
    env = agent_stack
    # Every run writes hello.txt and answers the verdict: work runs take it as their final
    # message, the verifier (which the CLI asks for structured output) as its verdict.
    env.server.scenario = Scenario(mode="answer", write_first=True, answers=[_verdict("PASS")])
    repo = init_repo(tmp_path / "project")
    env.stack.start_orchestrator()
    env.start_adapter()
    env.start_adapter_of("codex")
    with env.stack.client() as client:
        eventually(
            lambda: {w["agent"] for w in client.get("/v1/workers").json()} >= {"claude", "codex"},
            timeout_s=60,
            message="both adapters online",
        )
        sid = _fan_out(client, repo, "passes")
        eventually(
            lambda: client.get(f"/v1/sessions/{sid}").json()["status"] == "finalized",
            timeout_s=300,
            message="the fan-out finalized",
        )
        tasks = _tasks(client, sid)
        workers = [tasks[w["key"]] for w in WORKERS]
        assert {t["agent"] for t in workers} == {"claude", "codex"}
        assert tasks["root"]["finished_at"] <= min(t["started_at"] for t in workers)
        assert max(t["finished_at"] for t in workers) <= tasks["verify"]["started_at"]
        assert tasks["verify"]["finished_at"] <= tasks["synthesize"]["started_at"]
        assert tasks["verify"]["merge_status"] == "empty"
        verify = client.get(f"/v1/tasks/{tasks['verify']['id']}").json()
        assert [r["verdict"] for r in verify["reviews"]] == ["PASS"]

        env.server.scenario = Scenario(
            mode="answer", write_first=True, answers=[_verdict("FAIL", "the UI ignores the API")]
        )
        failing = _fan_out(client, repo, "fails")
        eventually(
            lambda: client.get(f"/v1/sessions/{failing}").json()["status"] == "awaiting_review",
            timeout_s=300,
            message="the verifier failed the fan-out",
        )
        tasks = _tasks(client, failing)
        assert all(tasks[w["key"]]["status"] == "succeeded" for w in WORKERS)
        assert tasks["verify"]["status"] == "failed"
        assert tasks["synthesize"]["status"] == "blocked"
        assert tasks["synthesize"]["started_at"] is None
        verify = client.get(f"/v1/tasks/{tasks['verify']['id']}").json()
        assert verify["reviews"][0]["critical_issues"] == ["the UI ignores the API"]
