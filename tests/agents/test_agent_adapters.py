"""Agent adapters end to end: a task submitted over REST is run by an adapter process with
the real CLI binary against the fake model server; the CLI's own tool writes a file, the
adapter commits it, and the outcome, usage and progress reach the timeline. Failures (an
auth error, a hang past the timeout, a cancel, a rate limit, an unreachable model) end as
they should, no agent process is left behind, and the API key shows up nowhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis

from swarm_adapter.sandbox import Sandboxing
from swarm_common import git
from swarm_common.streams import Keys, decode
from tests.agents.clis import CLIS
from tests.agents.conftest import AgentStack
from tests.agents.fakeserver import Scenario
from tests.conftest import branch_commit, init_repo
from tests.e2e.scrape import scrape, value
from tests.waiting import eventually

SANDBOXED = Sandboxing.detect("auto", environ=os.environ).on
"""Whether the adapters here run their CLIs in the sandbox (`SWARM_SANDBOX=auto` finds
bubblewrap working): then every test of this file runs each real CLI inside it."""

READY = ["claude", "codex", "gemini"]
agents = pytest.mark.parametrize("agent_stack", READY, indirect=True)


def _start(
    env: AgentStack, tmp_path: Path, scenario: Scenario | None = None, base_url: str | None = None
) -> Path:
    """A project repository, the scenario, the orchestrator and one adapter of the agent."""
    if scenario is not None:
        env.server.scenario = scenario
    repo = init_repo(tmp_path / "project")
    env.stack.start_orchestrator()
    env.start_adapter(base_url=base_url)
    return repo


def _submit(client: httpx.Client, repo: Path, agent: str, **task: Any) -> tuple[str, str]:
    body = {
        "title": "agents",
        "repo": str(repo),
        "base_ref": "main",
        "tasks": [
            {
                "key": "work",
                "agent": agent,
                "title": "Write hello.txt",
                "prompt": "Create hello.txt saying hello.",
                "timeout_s": 120,
                **task,
            }
        ],
    }
    created = client.post("/v1/sessions", json=body)
    assert created.status_code == 201, created.text
    session_id = created.json()["id"]
    [listed] = client.get(f"/v1/sessions/{session_id}/tasks").json()
    return session_id, listed["id"]


def _wait(client: httpx.Client, task_id: str, done: Any, timeout_s: float = 90) -> dict[str, Any]:
    """The task once `done` holds for it."""

    def task() -> dict[str, Any]:
        body: dict[str, Any] = client.get(f"/v1/tasks/{task_id}").json()
        return body

    def there() -> dict[str, Any] | None:
        body = task()
        return body if done(body) else None

    def where() -> str:
        body = task()
        return f"the task is {body['status']} {[a['status'] for a in body['attempts']]}"

    return eventually(there, timeout_s=timeout_s, message=where)


def _agent_processes(workspace: Path) -> list[int]:
    """Processes whose working directory is inside the workspace's worktrees."""
    root = str((workspace / "worktrees").resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "cwd").startswith(root):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _assert_no_secret(env: AgentStack, client: httpx.Client, session_id: str) -> None:
    """The key is in no log, event, transcript, timeline entry or workspace file."""
    secret = env.secret
    for path in [*env.stack.logs.rglob("*"), *env.stack.workspace.rglob("*")]:
        if path.is_file() and ".git" not in path.parts[-3:]:
            assert secret not in path.read_text(errors="replace"), path
    timeline = client.get(f"/v1/sessions/{session_id}/events", params={"limit": 10000}).text
    assert secret not in timeline
    tasks = client.get(f"/v1/sessions/{session_id}/tasks").text
    assert secret not in tasks
    redis = Redis.from_url(env.stack.redis_url)
    try:
        for _, fields in redis.xrange(Keys(env.stack.redis_prefix).events):
            assert secret.encode() not in fields[b"env"]
    finally:
        redis.close()


@agents
def test_the_agent_writes_a_file_and_swarm_commits_it(
    agent_stack: AgentStack, tmp_path: Path
) -> None:
    env = agent_stack
    repo = _start(env, tmp_path)
    with env.stack.client() as client:
        before = scrape(client)
        session_id, task_id = _submit(client, repo, env.case.agent)
        task = _wait(
            client,
            task_id,
            lambda t: (
                t["status"] not in ("pending", "queued", "running")
                and t["merge_status"] != "pending"
            ),
        )
        assert task["status"] == "succeeded", task["attempts"]
        [attempt] = task["attempts"]
        assert attempt["changed_files"] == ["hello.txt"]
        if SANDBOXED:  # the CLI ran in the sandbox, and reached its model through the relay
            assert attempt["sandbox"]["mode"] == "bwrap", attempt
            assert attempt["sandbox"]["allowed"] >= 1 and attempt["sandbox"]["refused"] == 0
        usage = attempt["usage"]
        assert usage["input"] > 0 and usage["output"] > 0 and "cached_input" in usage
        # What the CLI reported reaches `/metrics` through the adapter's result event.
        after, kind = scrape(client), {"agent": env.case.agent}
        for name in ("input", "cached_input", "output"):
            grew = value(after, "swarm_tokens_total", **kind, type=name) - value(
                before, "swarm_tokens_total", **kind, type=name
            )
            assert grew == usage[name], name
        cost = value(after, "swarm_cost_usd_total", **kind) - value(
            before, "swarm_cost_usd_total", **kind
        )
        assert abs(cost - float(attempt["cost_usd"])) < 1e-6
        mirror = env.stack.workspace / "repos" / f"{session_id}.git"
        commit = task["result"]["commit"]
        assert branch_commit(mirror, f"swarm/{session_id}/task/work") == commit
        content = git.git("show", f"{commit}:hello.txt", git_dir=mirror).stdout
        assert content == env.server.scenario.content
        transcript = env.stack.workspace / attempt["transcript_path"]
        lines = [
            json.loads(line) for line in transcript.read_text().splitlines() if line.startswith("{")
        ]
        assert lines, "the raw transcript is kept"
        events = client.get(f"/v1/tasks/{task_id}/events").json()
        progress = [e for e in events if e["type"] == "task.progress"]
        assert progress, [e["type"] for e in events]
        kinds = {item["kind"] for e in progress for item in e["data"]["data"]["items"]}
        assert {"tool_call", "file_change"} <= kinds, kinds
        assert [e["type"] for e in events][-2:] == ["task.succeeded", "task.merged"]
        assert task["merge_status"] == "merged"
        _assert_no_secret(env, client, session_id)
    assert _agent_processes(env.stack.workspace) == []


@agents
def test_an_auth_failure_ends_the_attempt_with_a_clear_reason(
    agent_stack: AgentStack, tmp_path: Path
) -> None:
    env = agent_stack
    repo = _start(env, tmp_path, Scenario(mode="auth_error"))
    with env.stack.client() as client:
        session_id, task_id = _submit(client, repo, env.case.agent)
        task = _wait(client, task_id, lambda t: t["status"] == "failed")
        [attempt] = task["attempts"]
        assert attempt["reason"] == "auth"
        assert attempt["exit_code"] not in (0, None)
        _assert_no_secret(env, client, session_id)


@agents
def test_an_unreachable_model_server(agent_stack: AgentStack, tmp_path: Path) -> None:
    env = agent_stack
    repo = _start(env, tmp_path, base_url="http://127.0.0.1:9" + env.case.url_suffix)
    with env.stack.client() as client:
        _, task_id = _submit(client, repo, env.case.agent)
        task = _wait(client, task_id, lambda t: t["status"] == "failed")
        assert task["attempts"][0]["reason"] == "model_unreachable", task["attempts"]


@agents
def test_a_hang_past_the_timeout_is_killed_with_its_whole_group(
    agent_stack: AgentStack, tmp_path: Path
) -> None:
    env = agent_stack
    repo = _start(env, tmp_path, Scenario(mode="hang"))
    with env.stack.client() as client:
        _, task_id = _submit(client, repo, env.case.agent, timeout_s=4)
        task = _wait(client, task_id, lambda t: t["status"] == "failed")
        assert task["attempts"][0]["reason"] == "timeout"
    assert _agent_processes(env.stack.workspace) == []


@agents
def test_a_cancel_stops_the_running_agent(agent_stack: AgentStack, tmp_path: Path) -> None:
    env = agent_stack
    repo = _start(env, tmp_path, Scenario(mode="hang"))
    with env.stack.client() as client:
        _, task_id = _submit(client, repo, env.case.agent)
        _wait(client, task_id, lambda t: t["status"] == "running")
        # The CLI asks the model, which never answers: it is left waiting.
        eventually(lambda: env.server.state.requests, timeout_s=60, message="the CLI asks")
        assert _agent_processes(env.stack.workspace)
        cancelled = client.post(f"/v1/tasks/{task_id}/cancel")
        assert cancelled.status_code == 200
    eventually(
        lambda: not _agent_processes(env.stack.workspace),
        timeout_s=20,
        message="the agent survived its cancel",
    )
    redis = Redis.from_url(env.stack.redis_url)
    try:
        eventually(
            lambda: any(
                decode(f).message.TYPE == "task.cancelled"
                for _, f in redis.xrange(Keys(env.stack.redis_prefix).events)
            ),
            timeout_s=20,
            message="no task.cancelled reported",
        )
    finally:
        redis.close()


@agents
def test_a_rate_limit_is_retried_after_the_limit(agent_stack: AgentStack, tmp_path: Path) -> None:
    env = agent_stack
    repo = _start(env, tmp_path, Scenario(mode="rate_limit", reset_after_s=2))
    with env.stack.client() as client:
        _, task_id = _submit(client, repo, env.case.agent, max_attempts=1)
        limited = _wait(
            client, task_id, lambda t: any(a["status"] == "rate_limited" for a in t["attempts"])
        )
        assert limited["attempts"][0]["reason"] == "rate_limited"
        assert limited["status"] in ("pending", "queued", "running")
        env.server.scenario = Scenario(mode="write_file")
        task = _wait(client, task_id, lambda t: t["status"] == "succeeded", timeout_s=120)
        assert [a["status"] for a in task["attempts"]] == ["rate_limited", "succeeded"]


@agents
def test_a_runaway_agent_stops_at_its_turn_limit(agent_stack: AgentStack, tmp_path: Path) -> None:
    env = agent_stack
    repo = _start(env, tmp_path, Scenario(mode="loop_tools"))
    with env.stack.client() as client:
        _, task_id = _submit(client, repo, env.case.agent, max_turns=3)
        task = _wait(client, task_id, lambda t: t["status"] == "failed")
        assert task["attempts"][0]["reason"] == "turn_limit", task["attempts"]
        attempt = task["attempts"][0]
        elapsed = datetime.fromisoformat(attempt["finished_at"]) - datetime.fromisoformat(
            attempt["started_at"]
        )
        assert elapsed.total_seconds() < 60  # the limit stopped it, not the task's timeout
        requests = len(env.server.state.requests)
        assert 3 <= requests <= 12, requests
    assert _agent_processes(env.stack.workspace) == []


@pytest.mark.parametrize("agent", ["claude", "codex", "gemini"])
def test_an_adapter_without_its_cli_says_which_npm_package_to_install(
    agent: str, tmp_path: Path
) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "SWARM_REDIS_URL": "redis://127.0.0.1:1/0",
        "OPENAI_API_KEY": "x",
        "ANTHROPIC_API_KEY": "x",
        "GEMINI_API_KEY": "x",
    }
    result = subprocess.run(
        [sys.executable, "-m", "swarm_cli", "adapter", "--agent", agent],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    package = CLIS[agent].package
    assert f"npm install -g {package}" in result.stderr
    assert "Traceback" not in result.stderr


@agents
def test_a_key_the_agent_writes_into_a_file_is_not_committed(
    agent_stack: AgentStack, tmp_path: Path
) -> None:
    env = agent_stack
    scenario = Scenario(mode="write_file", file="config.env", content=f"API_KEY={env.secret}\n")
    repo = _start(env, tmp_path, scenario)
    with env.stack.client() as client:
        session_id, task_id = _submit(client, repo, env.case.agent)
        task = _wait(client, task_id, lambda t: t["status"] == "succeeded")
        mirror = env.stack.workspace / "repos" / f"{session_id}.git"
        committed = git.git("show", f"{task['result']['commit']}:config.env", git_dir=mirror).stdout
        assert committed == "API_KEY=[REDACTED]\n"
        _assert_no_secret(env, client, session_id)


@agents
def test_a_prompt_too_long_for_the_command_line_still_runs(
    agent_stack: AgentStack, tmp_path: Path
) -> None:
    env = agent_stack
    repo = _start(env, tmp_path)
    long_prompt = "Create hello.txt saying hello.\n" + "Context line. " * 12_000  # ~170 KB
    schema = {"type": "object", "properties": {"done": {"type": "boolean"}}}
    with env.stack.client() as client:
        _, task_id = _submit(
            client,
            repo,
            env.case.agent,
            prompt=long_prompt,
            acceptance=["hello.txt exists"],
            output_schema=schema,
        )
        task = _wait(client, task_id, lambda t: t["status"] not in ("pending", "queued", "running"))
        assert task["status"] == "succeeded", task["attempts"]
    first = env.server.state.requests[0]["body"]
    assert "TASK.md" in json.dumps(first)  # the CLI was pointed at the file
