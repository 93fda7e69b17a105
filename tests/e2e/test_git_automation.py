"""Git automation end to end: the merge queue, merge conflicts (review and resolve),
checkpoints with quality gates, rollback, the diff endpoint, and many adapters sharing one
mirror, with real orchestrator and adapter processes on real servers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from swarm_common import git
from tests.conftest import branch_commit, init_repo
from tests.e2e.stack import Stack
from tests.waiting import eventually

Json = dict[str, Any]


# --- helpers -----------------------------------------------------------------------------


def _create(client: httpx.Client, repo: Path, tasks: list[Json], **extra: Any) -> str:
    created = client.post(
        "/v1/sessions",
        json={"title": "git", "repo": str(repo), "base_ref": "main", "tasks": tasks, **extra},
    )
    assert created.status_code == 201, created.text
    session_id: str = created.json()["id"]
    return session_id


def _session(client: httpx.Client, session_id: str) -> Json:
    body: Json = client.get(f"/v1/sessions/{session_id}").json()
    return body


def _tasks(client: httpx.Client, session_id: str) -> dict[str, Json]:
    return {t["key"]: t for t in client.get(f"/v1/sessions/{session_id}/tasks").json()}


def _task(client: httpx.Client, task_id: str) -> Json:
    body: Json = client.get(f"/v1/tasks/{task_id}").json()
    return body


def _timeline(client: httpx.Client, session_id: str) -> list[Json]:
    events: list[Json] = client.get(
        f"/v1/sessions/{session_id}/events", params={"limit": 10_000}
    ).json()
    return events


def _wait_done(client: httpx.Client, session_id: str, timeout_s: float = 60) -> Json:
    def done() -> Json | None:
        session = _session(client, session_id)
        return session if session["done"] else None

    return eventually(done, timeout_s=timeout_s, message=f"session {session_id} done")


def _wait_finalized(client: httpx.Client, session_id: str, timeout_s: float = 60) -> Json:
    """The session once its tasks all ended and its final checkpoint passed."""

    def finalized() -> Json | None:
        session = _session(client, session_id)
        return session if session["status"] == "finalized" else None

    return eventually(finalized, timeout_s=timeout_s, message=f"session {session_id} finalized")


def _wait_task(
    client: httpx.Client, session_id: str, key: str, timeout_s: float = 60, **fields: Any
) -> Json:
    def matches() -> Json | None:
        task = _tasks(client, session_id).get(key)
        if task is not None and all(task[k] == v for k, v in fields.items()):
            return task
        return None

    return eventually(matches, timeout_s=timeout_s, message=f"task {key} with {fields}")


def _git(mirror: Path, *args: str) -> str:
    return git.git(*args, git_dir=mirror).stdout.strip()


def _mirror(stack: Stack, session_id: str) -> Path:
    return stack.workspace / "repos" / f"{session_id}.git"


def _integration(session_id: str) -> str:
    return f"swarm/{session_id}/integration"


def _show(mirror: Path, ref: str, path: str) -> str:
    return git.git("show", f"{ref}:{path}", git_dir=mirror).stdout


def _files(mirror: Path, ref: str) -> set[str]:
    return set(_git(mirror, "ls-tree", "-r", "--name-only", ref).split())


def _tag(mirror: Path, tag: str) -> str | None:
    proc = git.git("rev-parse", "-q", "--verify", f"refs/tags/{tag}", git_dir=mirror, check=False)
    return proc.stdout.strip() or None


# --- the merge queue ---------------------------------------------------------------------


def test_succeeded_tasks_merge_in_finishing_order_before_dependents_run(
    stack: Stack, tmp_path: Path
) -> None:
    repo = init_repo(tmp_path / "project")
    stack.start_orchestrator()
    stack.start_adapter("shell-m", concurrency=3)
    tasks: list[Json] = [
        {"key": "a", "prompt": "sleep 0.1; echo a > a.txt"},
        {"key": "b", "prompt": "sleep 0.8; echo b > b.txt"},
        {"key": "c", "prompt": "sleep 1.6; echo c > c.txt"},
        {
            "key": "d",
            "depends_on": ["a", "b", "c"],
            "prompt": "test -f a.txt && test -f b.txt && test -f c.txt && echo ok > d.txt",
        },
    ]
    with stack.client() as client:
        session_id = _create(client, repo, tasks)
        session = _wait_done(client, session_id)
        listed = _tasks(client, session_id)
        timeline = _timeline(client, session_id)
        diff = client.get(f"/v1/tasks/{listed['a']['id']}/diff")
        patch = client.get(f"/v1/tasks/{listed['a']['id']}/diff", params={"format": "patch"})

    assert session["counts"] == {"succeeded": 4}, session
    assert {k: t["merge_status"] for k, t in listed.items()} == dict.fromkeys("abcd", "merged")
    mirror = _mirror(stack, session_id)
    integration = _integration(session_id)
    assert session["integration_branch"] == integration
    assert session["integration_head"] == branch_commit(mirror, integration)
    assert {"a.txt", "b.txt", "c.txt", "d.txt"} <= _files(mirror, integration)
    assert _show(mirror, integration, "d.txt") == "ok\n"

    # One merge commit per task, oldest first; the second parent is the task's own commit.
    merges = _git(mirror, "rev-list", "--merges", "--reverse", "--first-parent", integration)
    merge_commits = merges.split()
    assert int(_git(mirror, "rev-list", "--merges", "--count", integration)) == 4
    by_commit = {t["result"]["commit"]: k for k, t in listed.items()}
    merged_keys = [by_commit[_git(mirror, "rev-parse", f"{m}^2")] for m in merge_commits]
    assert [listed[k]["merge_commit"] for k in merged_keys] == merge_commits

    # The merges follow the `task.merged` timeline entries, which follow the order in which
    # the tasks succeeded (finishing order); `d` comes last, after its parents.
    key_of = {t["id"]: k for k, t in listed.items()}
    succeeded = [key_of[e["task_id"]] for e in timeline if e["type"] == "task.succeeded"]
    merged = [key_of[e["task_id"]] for e in timeline if e["type"] == "task.merged"]
    assert merged_keys == merged == succeeded, (merged_keys, merged, succeeded)
    assert merged[-1] == "d"
    queued_d = next(
        e["id"] for e in timeline if e["type"] == "task.queued" and key_of[e["task_id"]] == "d"
    )
    merged_ids = [e["id"] for e in timeline if e["type"] == "task.merged"]
    assert all(queued_d > i for i in merged_ids[:3])

    # `d` started from the integration head holding its parents' work.
    d = listed["d"]
    assert d["base_commit"] == listed[merged[2]]["merge_commit"]

    assert diff.status_code == 200, diff.text
    body = diff.json()
    assert body["base_commit"] == session["base_commit"]
    assert body["commit"] == listed["a"]["result"]["commit"]
    assert body["files"] == [{"path": "a.txt", "additions": 1, "deletions": 0}]
    assert "+a" in body["patch"] and body["truncated"] is False
    assert patch.status_code == 200
    assert patch.headers["content-type"].startswith("text/x-diff")
    assert "+++ b/a.txt" in patch.text


# --- conflicts ---------------------------------------------------------------------------

CONFLICTING: list[Json] = [
    {"key": "x", "prompt": "sleep 0.2; printf 'one\\n' > shared.txt"},
    {"key": "y", "prompt": "sleep 1.5; printf 'two\\n' > shared.txt"},
    {
        "key": "z",
        "depends_on": ["y"],
        "prompt": "grep -qx two shared.txt && echo z > z.txt",
    },
]


def test_a_conflict_waits_for_review_and_a_retry_builds_on_the_integration_branch(
    stack: Stack, tmp_path: Path
) -> None:
    repo = init_repo(tmp_path / "project", {"shared.txt": "base\n"})
    stack.start_orchestrator()
    stack.start_adapter("shell-c", concurrency=2)
    with stack.client() as client:
        session_id = _create(client, repo, CONFLICTING)

        def awaiting() -> Json | None:
            session = _session(client, session_id)
            return session if session["status"] == "awaiting_review" else None

        session = eventually(awaiting, timeout_s=60, message="session awaiting_review")
        listed = _tasks(client, session_id)
        mirror = _mirror(stack, session_id)
        integration = _integration(session_id)

        x, y, z = listed["x"], listed["y"], listed["z"]
        assert x["merge_status"] == "merged"
        assert (y["status"], y["merge_status"]) == ("succeeded", "conflict")
        assert y["conflict_files"] == ["shared.txt"]
        assert z["status"] == "pending"
        # The integration branch holds x's work only: y's conflict left it untouched.
        head = branch_commit(mirror, integration)
        assert head == x["merge_commit"] == session["integration_head"]
        assert _show(mirror, integration, "shared.txt") == "one\n"
        assert y["result"]["commit"] not in _git(mirror, "rev-list", integration).split()
        types = [e["type"] for e in _timeline(client, session_id)]
        assert "task.conflict" in types and "session.awaiting_review" in types

        retried = client.post(f"/v1/tasks/{y['id']}/retry")
        assert retried.status_code == 200, retried.text
        assert _session(client, session_id)["status"] == "active"
        session = _wait_finalized(client, session_id)
        listed = _tasks(client, session_id)
        y_detail = _task(client, y["id"])

    assert session["status"] == "finalized"
    assert session["counts"] == {"succeeded": 3}, session
    assert {k: t["merge_status"] for k, t in listed.items()} == dict.fromkeys("xyz", "merged")
    # The new attempt started from the integration head (x's merge), so it merged cleanly.
    assert [a["number"] for a in y_detail["attempts"]] == [1, 2]
    assert y_detail["attempts"][1]["base_commit"] == x["merge_commit"]
    assert _show(mirror, integration, "shared.txt") == "two\n"
    assert _show(mirror, integration, "z.txt") == "z\n"
    assert branch_commit(mirror, integration) == session["integration_head"]


def test_a_conflict_is_resolved_by_a_resolution_task(stack: Stack, tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "project", {"shared.txt": "base\n"})
    stack.start_orchestrator()
    stack.start_adapter("shell-r", concurrency=2)
    settings = {
        "conflicts": {
            "policy": "resolve",
            "agent": "shell",
            "prompt": "printf 'one\\ntwo\\n' > shared.txt",
        }
    }
    with stack.client() as client:
        session_id = _create(client, repo, CONFLICTING, settings=settings)
        session = _wait_finalized(client, session_id)
        listed = _tasks(client, session_id)
        timeline = _timeline(client, session_id)
        resolver_detail = _task(client, listed["y-resolve1"]["id"])

    mirror = _mirror(stack, session_id)
    integration = _integration(session_id)
    assert session["counts"] == {"succeeded": 4}, session
    assert set(listed) == {"x", "y", "y-resolve1", "z"}
    x, y, resolver, z = (listed[k] for k in ("x", "y", "y-resolve1", "z"))
    assert resolver["resolves_task_id"] == y["id"]
    assert resolver_detail["spec"]["files"] == ["shared.txt"]
    assert (resolver["status"], resolver["merge_status"]) == ("succeeded", "merged")
    assert (y["status"], y["merge_status"]) == ("succeeded", "resolved")
    assert y["merge_commit"] == resolver["merge_commit"]
    assert (z["status"], z["merge_status"]) == ("succeeded", "merged")
    # The resolver started from y's work with x's merge (the integration head) merged in.
    [attempt] = resolver_detail["attempts"]
    assert attempt["base_commit"] == y["result"]["commit"]
    resolved_commit = resolver["result"]["commit"]
    parents = _git(mirror, "rev-list", "--parents", "-n", "1", resolved_commit).split()[1:]
    assert parents == [y["result"]["commit"], x["merge_commit"]]
    assert _show(mirror, integration, "shared.txt") == "one\ntwo\n"
    assert _show(mirror, integration, "z.txt") == "z\n"
    types = [e["type"] for e in timeline]
    assert "task.conflict" in types
    assert "session.awaiting_review" not in types
    assert session["status"] == "finalized"


# --- checkpoints and rollback ------------------------------------------------------------


def _checkpoint(client: httpx.Client, session_id: str, *, expect_number: int) -> Json:
    """Request a checkpoint of the integration head and wait for its outcome."""
    made = client.post(f"/v1/sessions/{session_id}/checkpoints")
    assert made.status_code == 202, made.text
    body: Json = made.json()
    assert (body["number"], body["status"]) == (expect_number, "pending")
    assert body["commit"] == _session(client, session_id)["integration_head"]

    def finished() -> Json | None:
        cp: Json = client.get(f"/v1/sessions/{session_id}/checkpoints/{expect_number}").json()
        return cp if cp["status"] in ("passed", "failed") else None

    result = eventually(finished, timeout_s=30, message=f"checkpoint {expect_number} finished")
    assert result["commit"] == body["commit"]
    return result


def test_checkpoints_publish_only_passing_states_and_rollback_returns_to_one(
    stack: Stack, tmp_path: Path
) -> None:
    repo = init_repo(tmp_path / "project")
    stack.start_orchestrator()
    stack.start_adapter("shell-k")
    settings = {"gates": {"mode": "strict", "test": "test -f ok.txt", "detect": False}}
    wip = {"key": "wip", "prompt": "echo wip > wip.txt", "gates": []}
    # `hold` waits for an approval that never comes: the session stays open (it takes no
    # final checkpoint) while its checkpoints are taken by hand.
    hold = {"key": "hold", "prompt": "true", "gates": [], "requires_approval": True}
    with stack.client() as client:
        session_id = _create(client, repo, [wip, hold], target_branch="release", settings=settings)
        mirror = _mirror(stack, session_id)
        integration = _integration(session_id)
        _wait_task(client, session_id, "wip", merge_status="merged")

        first = _checkpoint(client, session_id, expect_number=1)
        assert first["status"] == "failed", first
        assert [(g["name"], g["status"]) for g in first["gates"]] == [("test", "failed")]
        assert branch_commit(mirror, "release") is None
        assert _tag(mirror, f"swarm/{session_id}/checkpoint-1") is None

        added = client.post(
            f"/v1/sessions/{session_id}/tasks", json=[{"key": "ok", "prompt": "echo ok > ok.txt"}]
        )
        assert added.status_code == 201, added.text
        ok = _wait_task(client, session_id, "ok", merge_status="merged")
        [ok_attempt] = _task(client, ok["id"])["attempts"]
        assert [(g["name"], g["status"]) for g in ok_attempt["gates"]] == [("test", "passed")]

        second = _checkpoint(client, session_id, expect_number=2)
        assert second["status"] == "passed", second
        checkpoint_commit = second["commit"]
        assert checkpoint_commit == ok["merge_commit"] == branch_commit(mirror, integration)
        assert branch_commit(mirror, "release") == checkpoint_commit
        assert second["tag"] == f"swarm/{session_id}/checkpoint-2"
        assert _tag(mirror, second["tag"]) == checkpoint_commit

        added = client.post(
            f"/v1/sessions/{session_id}/tasks",
            json=[{"key": "later", "prompt": "echo later > later.txt"}],
        )
        assert added.status_code == 201, added.text
        later = _wait_task(client, session_id, "later", merge_status="merged")
        assert branch_commit(mirror, integration) == later["merge_commit"]
        assert "later.txt" in _files(mirror, integration)

        rolled = client.post(f"/v1/sessions/{session_id}/rollback", json={"checkpoint": 2})
        assert rolled.status_code == 200, rolled.text
        assert rolled.json() | {"session_id": None} == {
            "session_id": None,
            "checkpoint": 2,
            "integration_head": checkpoint_commit,
            "rolled_back": ["later"],
        }
        session = _session(client, session_id)
        listed = _tasks(client, session_id)
        timeline = _timeline(client, session_id)

    assert session["integration_head"] == checkpoint_commit
    assert branch_commit(mirror, integration) == checkpoint_commit
    files = _files(mirror, integration)
    assert "ok.txt" in files and "wip.txt" in files and "later.txt" not in files
    assert branch_commit(mirror, "release") == checkpoint_commit  # the target stays put
    assert {k: t["merge_status"] for k, t in listed.items()} == {
        "wip": "merged",
        "hold": None,
        "ok": "merged",
        "later": "rolled_back",
    }
    entries = {e["type"]: e for e in timeline if e["type"].startswith(("checkpoint.", "session."))}
    for kind in ("checkpoint.failed", "checkpoint.passed", "session.rolled_back"):
        assert entries[kind]["actor"] == "token:bootstrap", entries[kind]
    assert entries["checkpoint.failed"]["data"]["number"] == 1
    assert entries["checkpoint.passed"]["data"]["number"] == 2
    assert entries["session.rolled_back"]["data"]["tasks"] == ["later"]
    assert entries["session.rolled_back"]["data"]["to"] == checkpoint_commit


def test_a_rollback_is_not_undone_by_a_task_that_was_running(stack: Stack, tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "project")
    stack.start_orchestrator()
    stack.start_adapter("shell-u")
    with stack.client() as client:
        session_id = _create(client, repo, [{"key": "a", "prompt": "echo a > a.txt"}])
        _wait_task(client, session_id, "a", merge_status="merged")
        # Its only task merged: the session's final checkpoint (1) passes; it is finalized,
        # and runs again with the tasks added to it.
        eventually(
            lambda: _session(client, session_id)["status"] == "finalized",
            timeout_s=30,
            message="the session finalized",
        )
        [final] = client.get(f"/v1/sessions/{session_id}/checkpoints").json()
        assert (final["number"], final["final"], final["status"]) == (1, True, "passed")
        for spec in (
            {"key": "later", "prompt": "echo later > later.txt"},
            {"key": "slow", "prompt": "sleep 4; echo slow > slow.txt"},
        ):
            added = client.post(
                f"/v1/sessions/{session_id}/tasks", params={"reopen": "true"}, json=[spec]
            )
            assert added.status_code == 201, added.text
            if spec["key"] == "later":
                _wait_task(client, session_id, "later", merge_status="merged")
        # `slow` runs on a worktree that holds `later`'s work when the rollback undoes it.
        _wait_task(client, session_id, "slow", status="running")
        rolled = client.post(f"/v1/sessions/{session_id}/rollback", json={"checkpoint": 1})
        assert rolled.status_code == 200, rolled.text
        assert rolled.json()["rolled_back"] == ["later"]

        def settled() -> bool:
            session = _session(client, session_id)
            return bool(session["done"] or session["status"] == "awaiting_review")

        eventually(settled, timeout_s=60, message="session settled")
        listed = _tasks(client, session_id)

    files = _files(_mirror(stack, session_id), _integration(session_id))
    assert listed["later"]["merge_status"] == "rolled_back"
    assert "later.txt" not in files, files


# --- many adapters, one mirror -----------------------------------------------------------

ADAPTERS = 10
TASKS = 40


@pytest.mark.timeout(200)
def test_ten_adapters_share_one_mirror_without_lock_errors(stack: Stack, tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "project")
    stack.start_orchestrator()
    names = [f"shell-{i}" for i in range(ADAPTERS)]
    for name in names:
        stack.start_adapter(name)
    with stack.client() as client:
        eventually(
            lambda: len(client.get("/v1/workers").json()) == ADAPTERS,
            timeout_s=90,
            message=f"{ADAPTERS} adapters online",
        )
        tasks: list[Json] = [
            {
                "key": f"t{i:02d}",
                "max_attempts": 1,
                "prompt": "mkdir -p out && echo $SWARM_TASK_KEY > out/$SWARM_TASK_KEY.txt",
            }
            for i in range(TASKS)
        ]
        session_id = _create(client, repo, tasks)
        session = _wait_done(client, session_id, timeout_s=150)
        listed = _tasks(client, session_id)
        details = [_task(client, t["id"]) for t in listed.values()]

    assert session["counts"] == {"succeeded": TASKS}, session
    for task in details:
        assert task["attempt"] == 1, task
        assert task["merge_status"] == "merged", task
        [attempt] = task["attempts"]
        texts = " ".join(str(v) for v in (task["reason"], attempt["reason"], attempt["error"]))
        assert "lock" not in texts, task
    workers = {task["attempts"][0]["worker"] for task in details}
    assert workers <= set(names)
    assert len(workers) >= 5, workers

    mirror = _mirror(stack, session_id)
    integration = _integration(session_id)
    expected = {f"out/t{i:02d}.txt" for i in range(TASKS)}
    assert {f for f in _files(mirror, integration) if f.startswith("out/")} == expected
    assert int(_git(mirror, "rev-list", "--merges", "--count", integration)) == TASKS

    worktrees = stack.workspace / "worktrees" / session_id

    def cleaned_up() -> bool:
        """No attempt's worktree left, and no branch checked out: what remains are the
        adapters' prepared worktrees (detached, in their pools) for the next tasks."""
        listing = _git(mirror, "worktree", "list", "--porcelain")
        paths = [
            line[len("worktree ") :]
            for line in listing.splitlines()
            if line.startswith("worktree ")
        ]
        leftovers = list(worktrees.iterdir()) if worktrees.exists() else []
        in_use = [p for p in paths[1:] if "/worktrees/.pool/" not in p]
        return not in_use and not leftovers and "branch refs/heads/" not in listing

    eventually(cleaned_up, timeout_s=30, message="worktrees given back")
    listing = _git(mirror, "worktree", "list", "--porcelain").splitlines()
    assert listing[0] == f"worktree {mirror}" and "bare" in listing

    for name in names:
        log = (stack.logs / f"{name}.log").read_text(errors="replace")
        for trouble in ("index.lock", "cannot lock ref", "git lock busy"):
            assert trouble not in log, (name, trouble, log[-2000:])
