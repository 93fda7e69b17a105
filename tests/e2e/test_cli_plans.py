"""`swarm plan` (new, show, edit, continue, list), `swarm approve` and `swarm submit` of one
prompt, against a running stack with a shell adapter: a goal document becomes a draft, is
edited in an editor, revised by feedback, approved, and runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import init_repo
from tests.e2e.stack import TEST_TOKEN, Stack
from tests.e2e.test_cli import NO_CONFIG, ok, swarm, swarm_env, task_by_key
from tests.waiting import eventually

EDITOR = """
import sys, yaml
path = sys.argv[1]
tasks = yaml.safe_load(open(path))
for t in tasks:
    t["agent"] = "shell"
    t["prompt"] = f"echo {t['key']} > {t['key']}.txt"
open(path, "w").write(yaml.safe_dump(tasks))
"""


def _edit(url: str, sid: str, editor: Path) -> subprocess.CompletedProcess[str]:
    env = swarm_env(url, TEST_TOKEN, "/nonexistent/token", NO_CONFIG)
    env["EDITOR"] = f"{sys.executable} {editor}"
    return subprocess.run(
        [sys.executable, "-m", "swarm_cli", "plan", "edit", sid, "--json"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_goal_is_planned_edited_revised_approved_and_run(stack: Stack, tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    stack.start_orchestrator()
    stack.start_adapter("shell-cli")
    url = stack.api_url
    goal = tmp_path / "GOAL.md"
    goal.write_text("# Tidy up\n\n1. First step\n2. Second step\n")
    made = json.loads(
        ok(swarm("plan", str(goal), "--repo", str(repo), "--base", "main",
                 "--agent", "heuristic", "--json", url=url))
    )  # fmt: skip
    sid = made["session_id"]
    assert made["status"] == "ready" and made["revision"] == 1
    assert [t["key"] for t in made["tasks"]] == ["first-step", "second-step"]
    assert made["tasks"][1]["depends_on"] == ["first-step"]
    listed = ok(swarm("plan", "list", url=url))
    assert sid in listed and "ready" in listed

    editor = tmp_path / "editor.py"
    editor.write_text(EDITOR)
    edited = json.loads(ok(_edit(url, sid[:8], editor)))
    assert edited["revision"] == 2 and {t["agent"] for t in edited["tasks"]} == {"shell"}

    revised = json.loads(ok(swarm("plan", "continue", sid, "Third step", "--json", url=url)))
    assert revised["revision"] == 3 and "third-step" in [t["key"] for t in revised["tasks"]]
    edited = json.loads(ok(_edit(url, sid, editor)))  # the new task runs as a command too
    assert edited["revision"] == 4
    shown = ok(swarm("plan", "show", sid, "--yaml", url=url))
    assert "echo third-step > third-step.txt" in shown

    approved = ok(swarm("approve", sid[:8], url=url))
    assert "Approved the plan" in approved and "3 task(s)" in approved
    again = swarm("approve", sid, url=url)
    assert again.returncode == 1 and "session_not_draft" in again.stderr
    with stack.client() as client:
        eventually(
            lambda: all(
                task_by_key(client, sid, k)["merge_status"] == "merged"
                for k in ("first-step", "second-step", "third-step")
            ),
            timeout_s=90,
            message="the approved plan ran",
        )


def test_submit_one_prompt(stack: Stack, tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    stack.start_orchestrator()
    stack.start_adapter("shell-cli")
    url = stack.api_url
    sid = ok(
        swarm("submit", "echo hi > hi.txt", "--agent", "shell", "--priority", "high",
              "--repo", str(repo), "--base", "main", url=url)
    ).strip()  # fmt: skip
    with stack.client() as client:
        task = task_by_key(client, sid, "task")
        assert (task["agent"], task["priority"], task["title"]) == ("shell", 10, "echo hi > hi.txt")
        eventually(
            lambda: task_by_key(client, sid, "task")["merge_status"] == "merged",
            timeout_s=60,
            message="the prompt ran",
        )
    bad = swarm("submit", "echo", "--priority", "soonish", "--repo", str(repo), url=url)
    assert bad.returncode == 1 and "--priority" in bad.stderr
    missing = swarm("submit", str(tmp_path / "nope.yaml"), url=url)
    assert missing.returncode == 1 and "no such file" in missing.stderr
