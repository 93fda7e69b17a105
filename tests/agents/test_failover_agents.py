"""Failover with the real CLIs: Claude Code writes a file, then its provider answers with a
rate limit whose reset is an hour away; the adapter commits the work in progress (`wip:`)
and reports what Claude said, and the task's next attempt runs on Codex at once (well
before the reset), in a worktree that holds Claude's file, told what Claude said; it
succeeds and both files are merged."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from swarm_common import git
from tests.agents.conftest import AgentStack
from tests.agents.fakeserver import Scenario
from tests.conftest import init_repo
from tests.waiting import eventually

CLAUDE_SAID = "I wrote first.txt; the second file comes next."
FIRST = "written by claude before its limit\n"


def _workers(client: httpx.Client) -> set[str]:
    return {w["agent"] for w in client.get("/v1/workers").json() if w["alive"]}


def _codex_saw(requests: list[dict[str, Any]], text: str) -> bool:
    """Whether a request Codex's CLI made holds `text` (its prompt, or a tool's output)."""
    return any(r["path"].endswith("/responses") and text in str(r["body"]) for r in requests)


@pytest.mark.parametrize("agent_stack", ["claude"], indirect=True)
def test_a_rate_limited_claude_attempt_moves_to_codex_on_top_of_its_work(
    agent_stack: AgentStack, tmp_path: Path
) -> None:
    env = agent_stack
    env.server.scenario = Scenario(
        per_agent={
            "claude": Scenario(
                mode="rate_limit",
                write_first=True,
                file="first.txt",
                content=FIRST,
                reply=CLAUDE_SAID,
                reset_after_s=3600,
            ),
            "codex": Scenario(
                mode="write_file", read_first="first.txt", file="second.txt", content="codex\n"
            ),
        }
    )
    repo = init_repo(tmp_path / "project")
    env.stack.start_orchestrator()
    env.start_adapter()
    env.start_adapter_of("codex")
    with env.stack.client() as client:
        eventually(
            lambda: _workers(client) >= {"claude", "codex"},
            timeout_s=90,
            message=lambda: str(client.get("/v1/workers").json()),
        )
        created = client.post(
            "/v1/sessions",
            json={
                "title": "failover",
                "repo": str(repo),
                "base_ref": "main",
                "settings": {"gates": {"detect": False}, "failover": {"max_wait_s": 300}},
                "tasks": [
                    {
                        "key": "work",
                        "agent": "claude",
                        "fallback": ["codex"],
                        "prompt": "Write first.txt, then second.txt.",
                        "timeout_s": 120,
                    }
                ],
            },
        )
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        eventually(
            lambda: client.get(f"/v1/sessions/{sid}").json()["done"],
            timeout_s=240,
            message=lambda: str(client.get(f"/v1/sessions/{sid}/tasks").json()),
        )
        [shown] = client.get(f"/v1/sessions/{sid}/tasks").json()
        detail = client.get(f"/v1/tasks/{shown['id']}").json()
        events = client.get(f"/v1/tasks/{shown['id']}/events").json()

    assert (detail["status"], detail["merge_status"], detail["agent"]) == (
        "succeeded",
        "merged",
        "codex",
    )
    limited, moved = detail["attempts"]
    assert (limited["worker"], limited["status"]) == ("claude-1", "rate_limited")
    assert (moved["worker"], moved["status"]) == ("codex-1", "succeeded")
    # At once: not an hour later, when Claude's limit resets.
    ended = datetime.fromisoformat(limited["finished_at"])
    assert (datetime.fromisoformat(moved["started_at"]) - ended).total_seconds() < 120
    [failover] = [e["data"] for e in events if e["type"] == "task.failover"]
    assert (failover["from"], failover["to"], failover["reason"]) == (
        "claude",
        "codex",
        "rate_limited",
    )

    # Claude's work was committed as work in progress, and Codex's attempt started there.
    mirror = env.stack.workspace / "repos" / f"{sid}.git"
    wip = limited["commit"]
    subject = git.git("log", "-1", "--format=%s", wip, git_dir=mirror).stdout.strip()
    assert subject.startswith("wip: ")
    assert git.git("show", f"{wip}:first.txt", git_dir=mirror).stdout == FIRST
    assert moved["base_commit"] == wip
    requests = env.server.state.requests
    assert _codex_saw(requests, FIRST.strip())  # it read Claude's file in its worktree
    assert _codex_saw(requests, CLAUDE_SAID)  # and was told what Claude said last
    merged = detail["merge_commit"]
    assert git.git("show", f"{merged}:first.txt", git_dir=mirror).stdout == FIRST
    assert git.git("show", f"{merged}:second.txt", git_dir=mirror).stdout == "codex\n"
