"""A task reviewed by another agent kind, end to end through Swarm's processes with the real
Claude Code and Codex CLIs against the fake model server: the Claude builder writes a file,
the Codex reviewer answers FAIL with an issue, the builder's next attempt is told the issue
in its prompt, the reviewer answers PASS, and only then does the work merge."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from swarm_common import git
from tests.agents.conftest import AgentStack
from tests.agents.fakeserver import Scenario
from tests.conftest import branch_commit, init_repo
from tests.waiting import eventually

ISSUE = "hello.txt must end with an exclamation mark"


def _verdict(kind: str, *issues: str) -> str:
    return json.dumps(
        {
            "verdict": kind,
            "summary": "checked the file",
            "critical_issues": list(issues),
            "recommendations": [],
        }
    )


def _task(client: httpx.Client, tid: str) -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"/v1/tasks/{tid}").json()
    return body


@pytest.mark.parametrize("agent_stack", ["claude"], indirect=True)
def test_a_fail_verdict_sends_the_builder_back_and_a_pass_lets_it_merge(
    agent_stack: AgentStack, tmp_path: Path
) -> None:
    env = agent_stack
    # One answer per run, in the order the runs come: builder, reviewer, builder, reviewer.
    env.server.scenario = Scenario(
        mode="answer",
        write_first=True,
        answers=["Wrote hello.txt.", _verdict("FAIL", ISSUE), "Fixed it.", _verdict("PASS")],
    )
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
        created = client.post(
            "/v1/sessions",
            json={
                "title": "reviewed",
                "repo": str(repo),
                "base_ref": "main",
                "settings": {"gates": {"detect": False}},
                "tasks": [
                    {
                        "key": "hello",
                        "prompt": "Write hello.txt.",
                        "agent": "claude",
                        "review": {"max_rounds": 2},
                    }
                ],
            },
        )
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        [hello] = client.get(f"/v1/sessions/{sid}/tasks").json()
        integration = f"swarm/{sid}/integration"
        mirror = env.stack.workspace / "repos" / f"{sid}.git"
        base = created.json()["base_commit"]

        def verdicts() -> list[dict[str, Any]]:
            return list(_task(client, hello["id"])["reviews"])

        first = eventually(lambda: verdicts() or None, timeout_s=180, message="first verdict")
        assert [(r["verdict"], r["agent"], r["critical_issues"]) for r in first] == [
            ("FAIL", "codex", [ISSUE])
        ]
        # Nothing of the work is merged while a reviewer finds fault with it.
        assert branch_commit(mirror, integration) == base

        done = eventually(
            lambda: (t := _task(client, hello["id"]))["merge_status"] == "merged" and t,
            timeout_s=180,
            message="the work merged after the PASS",
        )
        assert [(r["round"], r["verdict"]) for r in done["reviews"]] == [(1, "FAIL"), (2, "PASS")]
        assert done["attempt"] == 2
        head = branch_commit(mirror, integration)
        assert head is not None and head != base
        shown = git.git("show", f"{head}:hello.txt", git_dir=mirror).stdout
        assert shown == Scenario().content
        runs = client.get(f"/v1/sessions/{sid}/tasks", params={"kind": "review"}).json()
        assert [(r["agent"], r["status"]) for r in runs] == [
            ("codex", "succeeded"),
            ("codex", "succeeded"),
        ]

    asked = [json.dumps(r["body"]) for r in env.server.state.requests]
    told = [body for body in asked if "What went wrong in the previous attempt" in body]
    assert told and all(ISSUE in body for body in told)  # the builder's second attempt
    assert any("## Its changes" in body and "hello.txt" in body for body in asked)  # reviewer
