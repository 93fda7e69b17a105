"""Handoffs and delegation with real processes (orchestrator, a shell adapter, PostgreSQL,
Redis, git): shell tasks print `swarm-handoff` blocks. With `settings.delegation: auto`
the two follow-ups a task proposes run; the follow-up that proposes again is past the
depth limit, so its proposal is refused with the reason; the child reads its parent's
handoff and the blackboard from `.swarm/context.json`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from swarm_common import git
from tests.conftest import init_repo
from tests.e2e.stack import Stack
from tests.e2e.test_backbone import _wait_done


def _handing_off(handoff: dict[str, Any], then: str = "") -> str:
    """A shell prompt that prints `handoff` as its handoff block (after running `then`)."""
    return f"{then}cat <<'EOF'\nDone.\n```swarm-handoff\n{json.dumps(handoff)}\n```\nEOF"


def test_auto_follow_ups_run_and_past_the_depth_limit_they_are_refused(
    stack: Stack, tmp_path: Path
) -> None:
    repo = init_repo(tmp_path / "project")
    stack.start_orchestrator()
    stack.start_adapter("shell-1")
    child = _handing_off(
        {
            "summary": "child done",
            "follow_ups": [{"key": "grandchild", "title": "G", "prompt": "true"}],
        },
        then="cp .swarm/context.json seen.json && ",
    )
    root = _handing_off(
        {
            "summary": "root done",
            "facts": {"api.base": "/v2"},
            "follow_ups": [
                {"key": "child", "title": "Child", "prompt": child},
                {"key": "docs", "title": "Docs", "prompt": "echo docs > docs.txt"},
            ],
        }
    )
    body = {
        "title": "delegation",
        "repo": str(repo),
        "base_ref": "main",
        "settings": {"delegation": {"policy": "auto", "max_depth": 1}},
        "tasks": [{"key": "root", "prompt": root}],
    }
    with stack.client() as client:
        created = client.post("/v1/sessions", json=body)
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        session = _wait_done(client, sid, "finalized")
        tasks = {t["key"]: t for t in client.get(f"/v1/sessions/{sid}/tasks").json()}
        assert {k: t["status"] for k, t in tasks.items()} == {
            "root": "succeeded",
            "child": "succeeded",
            "docs": "succeeded",
        }
        proposals = client.get(f"/v1/sessions/{sid}/proposals").json()
        assert [(p["key"], p["status"], p["depth"]) for p in proposals] == [
            ("child", "accepted", 1),
            ("docs", "accepted", 1),
            ("grandchild", "refused", 2),
        ]
        assert "too deep" in proposals[2]["reason"]
        events = client.get(f"/v1/tasks/{tasks['child']['id']}/events").json()
        delegated = [e["data"] for e in events if e["type"] == "task.delegated"]
        assert delegated == [{"proposed_by": "root", "proposal": proposals[0]["id"], "depth": 1}]
        child_detail = client.get(f"/v1/tasks/{tasks['child']['id']}").json()
        assert child_detail["handoff"]["summary"] == "child done"

    mirror = stack.workspace / "repos" / f"{sid}.git"
    head = session["integration_head"]
    seen = json.loads(git.git("show", f"{head}:seen.json", git_dir=mirror).stdout)
    assert [(p["key"], p["summary"]) for p in seen["parents"]] == [("root", "root done")]
    assert [(f["key"], f["value"], f["author"]) for f in seen["blackboard"]] == [
        ("api.base", "/v2", "task:root")
    ]
    tree = git.git("ls-tree", "-r", "--name-only", head, git_dir=mirror).stdout.split()
    assert "docs.txt" in tree and not any(p.startswith(".swarm") for p in tree)
