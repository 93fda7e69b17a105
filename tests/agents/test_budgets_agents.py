"""Budgets with the real CLIs against the fake model server, whose reported usage is what
costs: a task past its own cap (`per_task_usd`) has its Claude Code stopped by the adapter
and fails with `budget_exhausted`; a session whose budget the reported spend uses up is
suspended, starts nothing new, and with `on_exhausted: stop` has its running agent (a Codex
left waiting on the model) killed, its task waiting, not failed; raising the budget resumes
it and the remaining tasks run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from swarm_common.prices import PriceTable
from tests.agents.conftest import AgentStack
from tests.agents.fakeserver import Scenario
from tests.agents.test_agent_adapters import _agent_processes
from tests.conftest import init_repo
from tests.waiting import eventually

MODEL = "claude-sonnet-4-5"
claude_stack = pytest.mark.parametrize("agent_stack", ["claude"], indirect=True)


def _input_costing(usd: float) -> int:
    """Input tokens of one model call of `MODEL` that cost `usd` by the built-in prices."""
    per_million = PriceTable().cost("claude", MODEL, {"input": 1_000_000}).usd
    return int(usd * 1_000_000 / float(per_million))


def _task(key: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return {
        "key": key,
        "agent": "claude",
        "model": MODEL,
        "prompt": f"Do {key}.",
        "depends_on": list(deps),
        "timeout_s": 120,
        **extra,
    }


def _session(client: httpx.Client, repo: Path, tasks: list[Any], budget: dict[str, Any]) -> str:
    created = client.post(
        "/v1/sessions",
        json={
            "title": "budgets",
            "repo": str(repo),
            "base_ref": "main",
            "settings": {"gates": {"detect": False}, "budget": budget},
            "tasks": tasks,
        },
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def _tasks(client: httpx.Client, sid: str) -> dict[str, dict[str, Any]]:
    return {t["key"]: t for t in client.get(f"/v1/sessions/{sid}/tasks").json()}


def _until(client: httpx.Client, sid: str, done: Any, timeout_s: float = 120) -> Any:
    return eventually(
        lambda: done(_tasks(client, sid)),
        timeout_s=timeout_s,
        message=lambda: str(
            {k: (t["status"], t["attempt"]) for k, t in _tasks(client, sid).items()}
        ),
    )


@claude_stack
def test_a_task_past_its_own_cap_is_stopped_and_fails_for_good(
    agent_stack: AgentStack, tmp_path: Path
) -> None:
    env = agent_stack
    # Every model call of the agent's endless tool loop costs $0.60.
    env.server.scenario = Scenario(mode="loop_tools", input_tokens=_input_costing(0.6))
    repo = init_repo(tmp_path / "project")
    env.stack.start_orchestrator()
    env.start_adapter()
    with env.stack.client() as client:
        sid = _session(
            client, repo, [_task("loop", max_attempts=3, max_turns=50)], {"per_task_usd": 1}
        )
        _until(client, sid, lambda t: t["loop"]["status"] == "failed")
        task = client.get(f"/v1/tasks/{_tasks(client, sid)['loop']['id']}").json()
        [attempt] = task["attempts"]  # never retried
        assert attempt["reason"] == "budget_exhausted", attempt
        assert float(attempt["cost_usd"]) > 1.0  # priced from what the CLI reported
        calls = [r for r in env.server.state.requests if r["path"] == "/v1/messages"]
        assert len(calls) < 10  # stopped at the cap, far short of its 50 turns
        [failed] = [
            e
            for e in client.get(f"/v1/tasks/{task['id']}/events").json()
            if e["type"] == "task.failed"
        ]
        assert failed["data"]["reason"] == "budget_exhausted"
        assert failed["data"]["will_retry"] is False
    assert _agent_processes(env.stack.workspace) == []


@claude_stack
def test_a_spent_session_budget_stops_its_agents_and_raising_it_resumes(
    agent_stack: AgentStack, tmp_path: Path
) -> None:
    env = agent_stack
    # Claude answers at once for $1.20 a run; Codex is left waiting on the model.
    env.server.scenario = Scenario(
        mode="text",
        input_tokens=_input_costing(1.2),
        per_agent={"codex": Scenario(mode="hang")},
    )
    repo = init_repo(tmp_path / "project")
    env.stack.start_orchestrator()
    env.start_adapter()
    env.start_adapter_of("codex")
    with env.stack.client() as client:
        slow = {"key": "slow", "agent": "codex", "prompt": "Think.", "timeout_s": 300}
        sid = _session(client, repo, [slow], {"usd": 1, "on_exhausted": "stop"})
        _until(client, sid, lambda t: t["slow"]["status"] == "running", timeout_s=90)
        eventually(
            lambda: _agent_processes(env.stack.workspace), message="Codex runs", timeout_s=60
        )
        added = client.post(f"/v1/sessions/{sid}/tasks", json=[_task("a"), _task("b", "a")])
        assert added.status_code == 201, added.text

        # a's result spends $1.20 of $1: suspended, Codex stopped, b never started.
        eventually(
            lambda: client.get(f"/v1/sessions/{sid}").json()["status"] == "suspended",
            timeout_s=120,
            message=lambda: str(client.get(f"/v1/sessions/{sid}").json()),
        )
        shown = client.get(f"/v1/sessions/{sid}").json()
        assert shown["suspended_reason"] == "budget_exhausted"
        eventually(
            lambda: not _agent_processes(env.stack.workspace),
            timeout_s=30,
            message="the running agent survived the spent budget",
        )
        tasks = _tasks(client, sid)
        assert tasks["a"]["status"] == "succeeded"
        assert (tasks["slow"]["status"], tasks["slow"]["attempt"]) == ("pending", 1)  # waits
        assert (tasks["b"]["status"], tasks["b"]["attempt"]) == ("pending", 0)
        budget = client.get(f"/v1/sessions/{sid}/budget").json()
        assert budget["exhausted"] and budget["spent"]["usd"] > 1.0

        # Raised: it resumes, and what waited runs (Codex answers now).
        env.server.scenario = Scenario(mode="text", input_tokens=1000)
        raised = client.put(f"/v1/sessions/{sid}/budget", json={"usd": 10, "on_exhausted": "stop"})
        assert raised.status_code == 200, raised.text
        assert client.get(f"/v1/sessions/{sid}").json()["status"] == "active"
        _until(
            client,
            sid,
            lambda t: all(x["status"] == "succeeded" for x in t.values()),
            timeout_s=180,
        )
        tasks = _tasks(client, sid)
        assert (tasks["slow"]["attempt"], tasks["b"]["attempt"]) == (2, 1)
