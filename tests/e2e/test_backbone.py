"""The backbone end to end: REST → PostgreSQL → outbox → Redis Streams → two adapter
processes → git → events → PostgreSQL, with real processes on real servers."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from swarm_common import git
from tests.conftest import branch_commit, init_repo
from tests.e2e.stack import Stack
from tests.waiting import eventually, pid_alive

# A diamond (top → left, right → bottom) and a chain (one → two), six tasks.
GRAPH = [
    {"key": "top", "deps": []},
    {"key": "left", "deps": ["top"]},
    {"key": "right", "deps": ["top"]},
    {"key": "bottom", "deps": ["left", "right"]},
    {"key": "one", "deps": []},
    {"key": "two", "deps": ["one"]},
]


def _wait_done(client: Any, session_id: str, status: str, timeout_s: float = 90) -> dict[str, Any]:
    """The session once every task has ended and it settled in `status`."""

    def session() -> dict[str, Any]:
        body: dict[str, Any] = client.get(f"/v1/sessions/{session_id}").json()
        return body

    def done() -> dict[str, Any] | None:
        body = session()
        return body if body["done"] and body["status"] == status else None

    def unsettled() -> str:
        body = session()
        return f"session not {status}: {body['status']}, {body['counts']}"

    return eventually(done, timeout_s=timeout_s, interval_s=0.2, message=unsettled)


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_a_task_graph_runs_end_to_end(stack: Stack, tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "project")
    stack.start_orchestrator()
    stack.start_adapter("shell-a")
    stack.start_adapter("shell-b")
    tasks = [
        {
            "key": t["key"],
            "depends_on": t["deps"],
            "title": f"Write {t['key']}",
            "prompt": f"sleep 0.3; mkdir -p out && echo {t['key']} > out/{t['key']}.txt",
        }
        for t in GRAPH
    ]
    with stack.client() as client:
        created = client.post(
            "/v1/sessions",
            json={"title": "e2e", "repo": str(repo), "base_ref": "main", "tasks": tasks},
        )
        assert created.status_code == 201, created.text
        session_id = created.json()["id"]
        session = _wait_done(client, session_id, "finalized")
        assert session["counts"] == {"succeeded": 6}, session
        listed = {t["key"]: t for t in client.get(f"/v1/sessions/{session_id}/tasks").json()}
        details = {k: client.get(f"/v1/tasks/{t['id']}").json() for k, t in listed.items()}
        timeline = client.get(f"/v1/sessions/{session_id}/events").json()
        workers = client.get("/v1/workers").json()

    mirror = stack.workspace / "repos" / f"{session_id}.git"
    base = git.resolve_commit(mirror, "main")
    for spec in GRAPH:
        key = spec["key"]
        task = details[key]
        [attempt] = task["attempts"]
        # No task started before all its parents had finished.
        for parent in spec["deps"]:
            parent_end = _at(details[parent]["attempts"][0]["finished_at"])
            assert _at(attempt["started_at"]) >= parent_end, (key, parent)
        # Each task branch holds the task's own commit, with the file it wrote.
        commit = task["result"]["commit"]
        assert branch_commit(mirror, f"swarm/{session_id}/task/{key}") == commit
        assert task["result"]["changed_files"] == [f"out/{key}.txt"]
        content = git.git("show", f"{commit}:out/{key}.txt", git_dir=mirror).stdout
        assert content == f"{key}\n"
        # It started from the integration head of its queueing time: the base for a task
        # without parents, its parents' merged work otherwise.
        parents = git.git("rev-list", "--parents", "-n", "1", commit, git_dir=mirror).stdout
        assert parents.split()[1:] == [attempt["base_commit"]]
        if not spec["deps"]:
            assert attempt["base_commit"] == base
        for parent in spec["deps"]:
            parent_file = f"{attempt['base_commit']}:out/{parent}.txt"
            assert git.git("show", parent_file, git_dir=mirror).stdout == f"{parent}\n"
        assert task["merge_status"] == "merged"

    # The timeline holds every transition of every task, in order, and dependents were
    # queued only after their parents' work was merged.
    by_task: dict[str, list[dict[str, Any]]] = {}
    for event in timeline:
        if event["task_id"]:
            by_task.setdefault(event["task_id"], []).append(event)
    position = {}
    for key, task in details.items():
        types = [e["type"] for e in by_task[task["id"]]]
        assert types == [
            "task.created",
            "task.queued",
            "task.started",
            "task.succeeded",
            "task.merged",
        ], key
        position[key] = {e["type"]: e["id"] for e in by_task[task["id"]]}
    for spec in GRAPH:
        for parent in spec["deps"]:
            assert position[spec["key"]]["task.queued"] > position[parent]["task.merged"]
    # Every task merged: the session took its final checkpoint, which passed.
    assert [e["type"] for e in timeline[-4:]] == [
        "session.finished",
        "checkpoint.requested",
        "checkpoint.passed",
        "session.finalized",
    ]
    # The integration branch holds every task's work, one merge commit per task.
    integration = f"swarm/{session_id}/integration"
    files = git.git("ls-tree", "-r", "--name-only", integration, "out", git_dir=mirror).stdout
    assert sorted(files.split()) == sorted(f"out/{t['key']}.txt" for t in GRAPH)
    merges = git.git("rev-list", "--merges", "--count", integration, git_dir=mirror).stdout
    assert int(merges) == len(GRAPH)

    ran_on = {details[k]["attempts"][0]["worker"] for k in details}
    assert ran_on <= {"shell-a", "shell-b"}
    assert {(w["name"], w["alive"]) for w in workers} == {("shell-a", True), ("shell-b", True)}


def test_a_failing_task_blocks_its_dependents_end_to_end(stack: Stack, tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "project")
    stack.start_orchestrator()
    stack.start_adapter("shell-a")
    tasks = [
        {"key": "build", "prompt": "echo compiling; exit 2"},
        {"key": "test", "prompt": "true", "depends_on": ["build"]},
        {"key": "ship", "prompt": "true", "depends_on": ["test"]},
        {"key": "docs", "prompt": "echo docs > DOCS.md"},
    ]
    with stack.client() as client:
        created = client.post(
            "/v1/sessions", json={"title": "fail", "repo": str(repo), "tasks": tasks}
        )
        session_id = created.json()["id"]
        session = _wait_done(client, session_id, "awaiting_review")
        listed = {t["key"]: t for t in client.get(f"/v1/sessions/{session_id}/tasks").json()}
        build = client.get(f"/v1/tasks/{listed['build']['id']}").json()
    assert session["counts"] == {"failed": 1, "blocked": 2, "succeeded": 1}
    assert session["review_reason"] == (
        "3 of 4 tasks did not succeed and merge: 1 failed (build), 2 blocked (ship, test)"
    )
    assert {k: t["status"] for k, t in listed.items()} == {
        "build": "failed",
        "test": "blocked",
        "ship": "blocked",
        "docs": "succeeded",
    }
    assert listed["ship"]["reason"] == "dependency build did not succeed"
    [attempt] = build["attempts"]
    assert (attempt["exit_code"], attempt["reason"]) == (2, "exit_code")
    assert "compiling" in attempt["output_tail"]


def test_an_agent_dies_with_its_adapter(stack: Stack, tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "project")
    pid_file = tmp_path / "agent.pid"
    stack.start_orchestrator()
    stack.start_adapter("shell-doomed")
    with stack.client() as client:
        created = client.post(
            "/v1/sessions",
            json={
                "title": "doomed",
                "repo": str(repo),
                "tasks": [{"key": "long", "prompt": f"echo $$ > {pid_file}; exec sleep 120"}],
            },
        )
        assert created.status_code == 201
    eventually(
        lambda: pid_file.exists() and pid_file.read_text().strip(),
        timeout_s=30,
        message=lambda: stack.log("shell-doomed"),
    )
    agent = int(pid_file.read_text())
    assert pid_alive(agent)
    stack.procs["shell-doomed"].kill()
    stack.procs["shell-doomed"].wait()
    eventually(lambda: not pid_alive(agent), message="the agent dies with its adapter")
