"""The `swarm` command against a running stack: submit, status, tasks, and clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import init_repo
from tests.e2e.stack import TEST_TOKEN, Stack

pytestmark = pytest.mark.e2e


def swarm(
    *args: str,
    url: str,
    timeout_s: float = 60,
    token: str | None = TEST_TOKEN,
    token_file: str = "/nonexistent/token",
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_")}
    env.update(SWARM_API_URL=url, COLUMNS="200", SWARM_TOKEN_FILE=token_file)
    if token is not None:
        env["SWARM_API_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "swarm_orchestrator", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def test_submit_status_and_tasks(stack: Stack, tmp_path: Path) -> None:
    project = init_repo(tmp_path / "project")
    graph = tmp_path / "graph.yaml"
    graph.write_text(
        "title: CLI run\n"
        "repo: project\n"  # relative to the file
        "base_ref: main\n"
        "tasks:\n"
        "  - key: first\n"
        "    prompt: echo 1 > first.txt\n"
        "  - key: second\n"
        "    prompt: echo 2 > second.txt\n"
        "    depends_on: [first]\n"
    )
    stack.start_orchestrator()
    stack.start_adapter("shell-cli")

    submitted = swarm("submit", str(graph), "--wait", url=stack.api_url)
    assert submitted.returncode == 0, submitted.stderr
    session_id = submitted.stdout.strip()
    assert len(session_id) == 36
    assert "first" in submitted.stderr and "succeeded" in submitted.stderr

    status = swarm("status", session_id, "--json", url=stack.api_url)
    assert status.returncode == 0, status.stderr
    body = json.loads(status.stdout)
    assert body["counts"] == {"succeeded": 2} and body["repo"] == str(project)

    table = swarm("tasks", session_id, url=stack.api_url)
    assert table.returncode == 0
    lines = [line for line in table.stdout.splitlines() if "succeeded" in line]
    assert len(lines) == 2 and any("second" in line and "first" in line for line in lines)

    listing = swarm("status", url=stack.api_url)
    assert listing.returncode == 0 and "CLI run" in listing.stdout

    as_json = json.loads(swarm("tasks", session_id, "--json", url=stack.api_url).stdout)
    assert sorted(t["key"] for t in as_json) == ["first", "second"]


def test_errors_are_clear_and_exit_non_zero(stack: Stack, tmp_path: Path) -> None:
    stack.start_orchestrator()
    unreachable = swarm("status", url="http://127.0.0.1:1")
    assert unreachable.returncode == 1
    assert "cannot reach Swarm" in unreachable.stderr and "Traceback" not in unreachable.stderr

    missing = swarm("submit", str(tmp_path / "nope.yaml"), url=stack.api_url)
    assert missing.returncode == 1 and "cannot read" in missing.stderr

    cyclic = tmp_path / "cycle.yaml"
    init_repo(tmp_path / "repo")
    cyclic.write_text(
        "repo: repo\ntasks:\n"
        "  - {key: a, prompt: 'true', depends_on: [b]}\n"
        "  - {key: b, prompt: 'true', depends_on: [a]}\n"
    )
    refused = swarm("submit", str(cyclic), url=stack.api_url)
    assert refused.returncode == 1
    assert "dependency_cycle" in refused.stderr and "HTTP 422" in refused.stderr

    unknown = swarm("status", "00000000-0000-0000-0000-000000000000", url=stack.api_url)
    assert unknown.returncode == 1 and "session_not_found" in unknown.stderr


def test_adapter_refuses_an_unknown_agent_kind(stack: Stack) -> None:
    started = time.monotonic()
    result = swarm("adapter", "--agent", "cursor", url=stack.api_url, timeout_s=30)
    assert result.returncode != 0 and time.monotonic() - started < 30
    assert "Traceback" not in result.stderr


def test_tokens_from_the_command_line(stack: Stack, tmp_path: Path) -> None:
    stack.start_orchestrator()
    url = stack.api_url
    made = swarm("token", "create", "--name", "watcher", "--role", "viewer", url=url)
    assert made.returncode == 0, made.stderr
    viewer = made.stdout.strip()
    assert viewer.startswith("swarm_") and "not shown again" in made.stderr
    assert viewer not in made.stderr

    listed = swarm("token", "list", "--json", url=url)
    names = {t["name"]: t for t in json.loads(listed.stdout)}
    assert names["watcher"]["role"] == "viewer" and "token" not in names["watcher"]
    table = swarm("token", "list", url=url)
    assert "watcher" in table.stdout and viewer not in table.stdout

    # The viewer reads, and is refused what its role does not allow.
    assert swarm("status", url=url, token=viewer).returncode == 0
    refused = swarm("token", "create", "--name", "x", "--role", "admin", url=url, token=viewer)
    assert (
        refused.returncode == 1 and "forbidden" in refused.stderr and "HTTP 403" in refused.stderr
    )

    revoked = swarm("token", "revoke", "watcher", url=url)
    assert revoked.returncode == 0, revoked.stderr
    gone = swarm("status", url=url, token=viewer)
    assert gone.returncode == 1 and "HTTP 401" in gone.stderr

    # A token file stands in when no token is given (what `swarm up` writes).
    token_file = tmp_path / "admin.token"
    token_file.write_text(TEST_TOKEN + "\n")
    from_file = swarm("token", "list", "--json", url=url, token=None, token_file=str(token_file))
    assert from_file.returncode == 0, from_file.stderr
    none = swarm("status", url=url, token=None)
    assert none.returncode == 1 and "bearer token is required" in none.stderr
