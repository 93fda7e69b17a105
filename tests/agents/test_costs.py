"""Cost for every real CLI: a task run by the real Claude Code, Codex and Gemini CLIs against
the fake model server ends with the usage the server reported (summed over the run's model
calls, as each CLI counts it), the model the CLI ran on, and a cost the orchestrator priced
from both by the price table; `GET /v1/usage` sums to the attempt."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from swarm_common.prices import PriceTable
from tests.agents.conftest import AgentStack
from tests.agents.fakeserver import Scenario
from tests.conftest import init_repo
from tests.waiting import eventually

READY = ["claude", "codex", "gemini"]
NO_GATES = {"gates": {"lint": "", "test": "", "build": ""}}
ADAPTER_DEFAULT_MODEL = {"codex": "gpt-5.5"}
"""What the adapter asks a CLI for that names no model of its own (`SWARM_CODEX_MODEL`)."""


def _model_calls(env: AgentStack) -> int:
    """How many model calls the run made: each answered with the scenario's usage."""
    paths = [r["path"] for r in env.server.state.requests]
    agent = env.case.agent
    if agent == "claude":
        return paths.count("/v1/messages")
    if agent == "codex":
        return sum(p.endswith("/responses") for p in paths)
    return sum(p.endswith(("GenerateContent", "generateContent")) for p in paths)


def _reported(agent: str, calls: int, scenario: Scenario) -> dict[str, int]:
    """The usage the fake server reported over `calls` calls, as the runner counts it:
    `input` with the cached tokens in it (Anthropic reports them apart from `input_tokens`,
    OpenAI and Google within)."""
    fresh = scenario.input_tokens + (scenario.cached_tokens if agent == "claude" else 0)
    return {
        "input": calls * fresh,
        "cached_input": calls * scenario.cached_tokens,
        "output": calls * scenario.output_tokens,
    }


def _finished(client: httpx.Client, task_id: str) -> dict[str, Any]:
    def there() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get(f"/v1/tasks/{task_id}").json()
        return body if body["status"] in ("succeeded", "failed") else None

    return eventually(there, timeout_s=120, message=f"task {task_id} ends")


def _entry(client: httpx.Client, task_id: str, kind: str) -> dict[str, Any]:
    """The data of the task's timeline entry of `kind`, once it is readable."""

    def there() -> dict[str, Any] | None:
        events = client.get(f"/v1/tasks/{task_id}/events").json()
        return next((e["data"] for e in events if e["type"] == kind), None)

    return eventually(there, timeout_s=30, message=f"a {kind} entry of task {task_id}")


@pytest.mark.parametrize("agent_stack", READY, indirect=True)
def test_each_cli_attempt_is_priced_from_the_usage_the_server_reported(
    agent_stack: AgentStack, tmp_path: Path
) -> None:
    env = agent_stack
    agent = env.case.agent
    env.server.scenario = Scenario(mode="write_file", input_tokens=1500, cached_tokens=500)
    repo = init_repo(tmp_path / "project")
    env.stack.start_orchestrator()
    env.start_adapter()
    body = {
        "title": "costs",
        "repo": str(repo),
        "base_ref": "main",
        "settings": NO_GATES,
        "tasks": [{"key": "work", "agent": agent, "prompt": "Write hello.txt.", "timeout_s": 120}],
    }
    with env.stack.client() as client:
        created = client.post("/v1/sessions", json=body)
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        [listed] = client.get(f"/v1/sessions/{sid}/tasks").json()
        task = _finished(client, listed["id"])
        assert task["status"] == "succeeded", task["attempts"]
        [attempt] = task["attempts"]

        calls = _model_calls(env)
        assert calls >= 2  # the tool call, then the answer
        assert attempt["usage"] == _reported(agent, calls, env.server.scenario)
        assert attempt["agent"] == agent
        if agent in ADAPTER_DEFAULT_MODEL:  # the CLI names none: the one it was asked for
            assert attempt["model"] == ADAPTER_DEFAULT_MODEL[agent]
        else:  # the one the CLI's init event names
            assert attempt["model"], attempt
        cost = PriceTable().cost(agent, attempt["model"], attempt["usage"])
        assert cost.usd > 0 and Decimal(attempt["cost_usd"]) == cost.usd
        if agent == "claude":  # the CLI's own figure, kept beside ours
            assert attempt["reported_cost_usd"] is not None
        else:
            assert attempt["reported_cost_usd"] is None
        done = _entry(client, task["id"], "task.succeeded")
        assert (Decimal(str(done["cost_usd"])), done["priced_as"]) == (cost.usd, cost.priced_as)

        for group, key in (("agent", agent), ("session", sid), ("task", task["id"])):
            usage = client.get("/v1/usage", params={"group_by": group, "session_id": sid}).json()
            [row] = usage["rows"]
            assert row["key"] == key and row["attempts"] == 1
            assert {k: row[k] for k in ("input", "cached_input", "output")} == attempt["usage"]
            assert Decimal(str(row["cost_usd"])) == cost.usd
            assert usage["total"]["cost_usd"] == row["cost_usd"]
