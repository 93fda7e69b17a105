"""The demo of `swarm up --demo`: a sample repository and a small graph of shell tasks, so a
newcomer sees work flow through queueing, parallel adapters, commits, merges into the
integration branch and dependencies that build on their parents' merged work."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from rich.console import Console

from swarm_cli.client import ApiClient
from swarm_cli.render import task_table
from swarm_cli.watch import follow
from swarm_common import git

__all__ = ["DEMO_REPO", "DEMO_TASKS", "make_demo_repo", "run_demo"]

DEMO_REPO = "demo-repo"
"""The demo's repository, a folder of the data folder."""

DEMO_TASKS: list[dict[str, Any]] = [
    {
        "key": "plan",
        "title": "Write the plan",
        "prompt": "mkdir -p docs && printf '# Plan\\n\\n1. greet\\n2. count\\n' > docs/plan.md",
    },
    {
        "key": "greet",
        "title": "Add a greeting module",
        "depends_on": ["plan"],
        "prompt": "sleep 1; mkdir -p app && "
        "printf 'def greet(name):\\n    return f\"hello {name}\"\\n' > app/greet.py",
    },
    {
        "key": "count",
        "title": "Add a counting module",
        "depends_on": ["plan"],
        "prompt": "sleep 1; mkdir -p app && "
        "printf 'def count(words):\\n    return len(words.split())\\n' > app/count.py",
    },
    {
        "key": "docs",
        "title": "Document the modules",
        "depends_on": ["greet", "count"],
        "prompt": "printf '# Usage\\n\\ngreet() and count().\\n' > USAGE.md",
    },
    {
        "key": "check",
        "title": "Check the sources",
        "depends_on": ["greet", "count"],
        # Runs on the integration branch with both parents' work merged in.
        "prompt": "python3 -B -c 'from app.greet import greet; from app.count import count; "
        'print(greet("swarm"), count("a b"))\' > CHECKED.txt',
    },
    {
        "key": "release",
        "title": "Write release notes",
        "depends_on": ["docs", "check"],
        "prompt": "printf 'v0.1: greet, count, docs\\n' > RELEASE.md",
    },
]


def make_demo_repo(path: Path) -> Path:
    """A small git repository with one commit on `main` (kept if it already exists)."""
    if (path / ".git").exists():
        return path
    path.mkdir(parents=True, exist_ok=True)
    (path / "README.md").write_text("# Demo project\n\nSwarm's demo repository.\n")
    git.git("init", "--quiet", "--initial-branch=main", cwd=path)
    git.git("add", "README.md", cwd=path)
    git.git(
        "commit",
        "--quiet",
        "-m",
        "Initial commit",
        cwd=path,
        env={
            "GIT_AUTHOR_NAME": "Swarm demo",
            "GIT_AUTHOR_EMAIL": "demo@swarm.invalid",
            "GIT_COMMITTER_NAME": "Swarm demo",
            "GIT_COMMITTER_EMAIL": "demo@swarm.invalid",
        },
    )
    return path


def run_demo(
    *,
    api_url: str,
    token: str | None,
    data_dir: Path,
    workspace: Path,
    console: Console,
    stop: threading.Event,
) -> str:
    """Submit the demo graph and follow it until it is done (or `stop` is set); return the
    session id."""
    repo = make_demo_repo(data_dir / DEMO_REPO)
    with ApiClient(api_url, token) as client:
        session = client.post(
            "/v1/sessions",
            {
                "title": "Swarm demo",
                "goal": "Show a task graph flowing through Swarm.",
                "repo": str(repo),
                "base_ref": "main",
                "tasks": DEMO_TASKS,
            },
        )
        console.print(
            f"[bold]Demo session[/] {session['id']}: {len(DEMO_TASKS)} shell tasks on {repo}\n"
        )
        session = follow(client, session["id"], console, stop=stop)
        if stop.is_set():
            console.print("Demo interrupted.")
            return str(session["id"])
        tasks = client.get(f"/v1/sessions/{session['id']}/tasks")
    console.print()
    console.print(task_table(tasks))
    counts = session.get("counts", {})
    console.print(
        f"Demo finished: {counts.get('succeeded', 0)}/{session.get('total', 0)} "
        f"tasks succeeded. Each task's commit is on its branch "
        f"swarm/{session['id']}/task/<key> in {workspace / 'repos'}/{session['id']}.git"
    )
    return str(session["id"])
