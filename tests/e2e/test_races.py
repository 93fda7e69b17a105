"""Best of N through Swarm's processes (orchestrator and a shell adapter running three
attempts at once): a race of three where only one contender passes its gates. It merges;
the other two, still at their slow, failing gates when it wins, end cancelled, their work
kept on their branches and none of it on the integration branch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from swarm_common import git
from tests.conftest import branch_commit, init_repo
from tests.e2e.stack import Stack
from tests.waiting import eventually

# Each contender writes its own key (SWARM_TASK_KEY, `…-1`, `…-2`, `…-3`); the test gate
# passes at once for contender 2 and fails the others, slowly.
PROMPT = 'echo "$SWARM_TASK_KEY" > who.txt'
GATE = "if grep -q -- '-2$' who.txt; then true; else sleep 60; false; fi"


def test_only_the_contender_that_passes_its_gates_merges_and_the_others_end_cancelled(
    stack: Stack, tmp_path: Path
) -> None:
    repo = init_repo(tmp_path / "project")
    stack.start_orchestrator()
    stack.start_adapter("shell-race", concurrency=3)
    with stack.client() as client:
        created = client.post(
            "/v1/sessions",
            json={
                "title": "race",
                "repo": str(repo),
                "base_ref": "main",
                "settings": {"gates": {"mode": "strict", "test": GATE, "detect": False}},
                "tasks": [{"key": "pick", "prompt": PROMPT, "race": {"n": 3}}],
            },
        )
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        eventually(
            lambda: client.get(f"/v1/sessions/{sid}").json()["status"] == "finalized",
            timeout_s=60,
            message="the race was won and merged",
        )
        [pick] = client.get(f"/v1/sessions/{sid}/tasks").json()
        racers: list[dict[str, Any]] = client.get(
            f"/v1/sessions/{sid}/tasks", params={"kind": "race"}
        ).json()
        by_n = {r["key"].rsplit("-", 1)[1]: r for r in racers}
        assert {n: r["status"] for n, r in by_n.items()} == {
            "1": "cancelled",
            "2": "succeeded",
            "3": "cancelled",
        }
        assert pick["merge_status"] == "merged"
        assert pick["result"]["commit"] == by_n["2"]["result"]["commit"]

        mirror = stack.workspace / "repos" / f"{sid}.git"
        head = branch_commit(mirror, f"swarm/{sid}/integration")
        assert head is not None
        assert git.git("show", f"{head}:who.txt", git_dir=mirror).stdout.strip().endswith("-2")
        for n in ("1", "3"):  # their work stays on their branches, for inspection
            branch = f"swarm/{sid}/task/{by_n[n]['key']}"
            kept = branch_commit(mirror, branch)
            assert kept is not None and kept != created.json()["base_commit"]
            shown = git.git("show", f"{kept}:who.txt", git_dir=mirror).stdout.strip()
            assert shown.endswith(f"-{n}")
            assert not git.is_ancestor(mirror, kept, head)  # none of it was merged
