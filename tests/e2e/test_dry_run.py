"""A dry run end to end: real orchestrator and shell adapter processes run the tasks and
their gates; the integration and target branches, the tags and the user's repository are
where they were after the session finished, and `swarm dry-run` tells what each task would
have merged, conflicts included."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from swarm_common import git
from tests.conftest import init_repo
from tests.e2e.stack import Stack
from tests.e2e.test_cli import ok, swarm
from tests.waiting import eventually

TASKS: list[dict[str, Any]] = [
    {"key": "x", "prompt": "sleep 0.2; printf 'one\\n' > shared.txt"},
    {"key": "y", "prompt": "sleep 1.5; printf 'two\\n' > shared.txt"},
    {  # runs only on x's work, which the dry-run branch holds
        "key": "z",
        "depends_on": ["x"],
        "prompt": "grep -qx one shared.txt && echo z > z.txt",
    },
]


def _refs(git_dir: Path) -> dict[str, str]:
    out = git.git("for-each-ref", "--format=%(objectname) %(refname)", git_dir=git_dir).stdout
    return {name: sha for sha, _, name in (line.partition(" ") for line in out.splitlines())}


def test_a_dry_run_runs_its_tasks_and_gates_and_moves_no_branch(
    stack: Stack, tmp_path: Path
) -> None:
    repo = init_repo(tmp_path / "project", {"shared.txt": "base\n"})
    stack.start_orchestrator()
    stack.start_adapter("shell-dry", concurrency=2)
    settings = {
        "dry_run": True,
        "push": True,
        "gates": {"mode": "strict", "test": "test -f shared.txt", "detect": False},
    }
    body = {
        "title": "dry",
        "repo": str(repo),
        "base_ref": "main",
        "target_branch": "main",
        "tasks": TASKS,
        "settings": settings,
    }
    with stack.client() as client:
        created = client.post("/v1/sessions", json=body)
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        mirror = stack.workspace / "repos" / f"{sid}.git"
        integration = f"refs/heads/swarm/{sid}/integration"
        before = {k: v for k, v in _refs(mirror).items() if k in ("refs/heads/main", integration)}
        user_before = _refs(repo / ".git")

        def finalized() -> dict[str, Any] | None:
            session: dict[str, Any] = client.get(f"/v1/sessions/{sid}").json()
            return session if session["status"] == "finalized" else None

        session = eventually(finalized, timeout_s=90, message="dry run finalized")
        assert session is not None
        tasks = {t["key"]: t for t in client.get(f"/v1/sessions/{sid}/tasks").json()}

    assert session["counts"] == {"succeeded": 3}, session
    assert {k: t["merge_status"] for k, t in tasks.items()} == dict.fromkeys("xyz", "dry_run")
    after = _refs(mirror)
    assert {k: after[k] for k in before} == before
    assert before[integration] == session["base_commit"] == session["integration_head"]
    assert not [k for k in after if k.startswith("refs/tags/")]  # no checkpoint was tagged
    assert _refs(repo / ".git") == user_before  # nothing was pushed

    report = json.loads(ok(swarm("dry-run", sid, "--json", url=stack.api_url)))
    would = {t["key"]: t["would_merge"] for t in report["tasks"]}
    assert (would["x"]["clean"], would["y"]["clean"], would["z"]["clean"]) == (True, False, True)
    assert would["y"]["conflicts"] == ["shared.txt"]
    assert would["z"]["files"] == [{"path": "z.txt", "status": "A", "added": 1, "deleted": 0}]
    shown = ok(swarm("dry-run", sid[:8], "--files", url=stack.api_url))
    assert "3 task(s) would merge, 2 cleanly, 1 with conflicts" in " ".join(shown.split())
    assert "conflicts in shared.txt" in shown and "A z.txt" in shown
