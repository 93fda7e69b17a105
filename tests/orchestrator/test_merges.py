"""The merge queue, conflicts, checkpoints, rollback, diffs and pruning, in one process: the
events an adapter would send are applied directly and the loops run one step at a time."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common import git
from swarm_common.messages import TaskSucceeded
from swarm_common.streams import Keys
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.integration import merges
from tests.conftest import init_repo
from tests.orchestrator.helpers import (
    apply,
    mirror_commit,
    new_session,
    outcome_event,
    task,
    task_ids,
    task_messages,
    task_states,
)

SM = async_sessionmaker[AsyncSession]


async def _succeed(
    sessionmaker: SM, keys: Keys, session: dict[str, Any], task_id: uuid.UUID, commit: str | None
) -> None:
    event = outcome_event(TaskSucceeded, session["id"], task_id, exit_code=0, commit=commit)
    await apply(sessionmaker, keys, event)


def _mirror(workspace: Path, session: dict[str, Any]) -> Path:
    return workspace / "repos" / f"{session['id']}.git"


def _merged_before_a_crash(
    workspace: Path, session: dict[str, Any], *commits: str
) -> tuple[Path, str, str]:
    """Merge `commits` into the session's integration branch, as a merge whose transaction
    a crash lost would have: the mirror, the branch and its head after them."""
    mirror = _mirror(workspace, session)
    branch = f"swarm/{session['id']}/integration"
    head = ""
    for commit in commits:
        done = git.merge_into(mirror, branch, commit, message="m", author=git.Author("x", "x@y"))
        assert done.merged
        head = done.head
    return mirror, branch, head


def _show(mirror: Path, rev: str, path: str) -> str:
    return git.git("show", f"{rev}:{path}", git_dir=mirror).stdout


async def _task(api: httpx.AsyncClient, task_id: uuid.UUID) -> dict[str, Any]:
    body: dict[str, Any] = (await api.get(f"/v1/tasks/{task_id}")).json()
    return body


async def _three_done(
    api: httpx.AsyncClient, sessionmaker: SM, keys: Keys, workspace: Path
) -> tuple[dict[str, Any], dict[str, uuid.UUID], dict[str, str]]:
    """A session of a, b and c, then d after them; a, b and c succeeded, each with a commit
    of its own file (their ids and commits by key)."""
    graph = [task("a"), task("b"), task("c"), task("d", "a", "b", "c")]
    session = await new_session(api, init_repo(workspace.parent / "p"), graph)
    ids = await task_ids(api, session["id"])
    commits = {k: mirror_commit(workspace, session, {f"{k}.txt": k}) for k in "abc"}
    for key in "abc":
        await _succeed(sessionmaker, keys, session, ids[key], commits[key])
    return session, ids, commits


async def _merge_next(
    sessionmaker: SM, keys: Keys, session: dict[str, Any], workspace: Path
) -> int:
    return await merges.merge_next(
        sessionmaker, uuid.UUID(session["id"]), workspace=workspace, keys=keys
    )


async def test_work_merges_in_finishing_order_and_dependents_start_from_it(
    api: httpx.AsyncClient, sessionmaker: SM, keys: Keys, state: AppState, workspace: Path
) -> None:
    graph = [task("a"), task("b"), task("c"), task("d", "a", "b", "c")]
    session = await new_session(api, init_repo(workspace.parent / "p"), graph)
    ids = await task_ids(api, session["id"])
    mirror = _mirror(workspace, session)
    for key in ("c", "a", "b"):  # finishing order
        commit = mirror_commit(workspace, session, {f"{key}.txt": key})
        await _succeed(sessionmaker, keys, session, ids[key], commit)
    assert await state.background.merge_once() == 3
    integration = f"swarm/{session['id']}/integration"
    # One --no-ff merge per task, first parent the previous head, in finishing order.
    log = git.git(
        "log", "--first-parent", "--format=%s", integration, git_dir=mirror
    ).stdout.splitlines()
    assert log[:3] == ["Merge task b: b", "Merge task a: a", "Merge task c: c"]
    d = await _task(api, ids["d"])
    assert d["status"] == "queued"
    head = (await api.get(f"/v1/sessions/{session['id']}")).json()["integration_head"]
    assert d["base_commit"] == head == git.resolve_commit(mirror, integration)
    [message] = await task_messages(sessionmaker, ids["d"])
    assert message.base_commit == head
    for key in "abc":
        assert _show(mirror, head, f"{key}.txt") == key
        detail = await _task(api, ids[key])
        assert detail["merge_status"] == "merged" and detail["merge_commit"]


async def test_a_merge_found_done_after_a_crash_is_recorded_once(
    api: httpx.AsyncClient, sessionmaker: SM, keys: Keys, state: AppState, workspace: Path
) -> None:
    session = await new_session(api, init_repo(workspace.parent / "p"), [task("a"), task("b", "a")])
    ids = await task_ids(api, session["id"])
    commit = mirror_commit(workspace, session, {"a.txt": "a"})
    await _succeed(sessionmaker, keys, session, ids["a"], commit)
    # The branch moved, then the orchestrator died before its transaction committed.
    mirror, branch, head = _merged_before_a_crash(workspace, session, commit)
    assert await state.background.merge_once() == 1
    a = await _task(api, ids["a"])
    assert (a["merge_status"], a["merge_commit"]) == ("merged", head)
    merges = git.git("rev-list", "--merges", "--count", branch, git_dir=mirror).stdout
    assert int(merges) == 1
    assert (await task_states(api, session["id"]))["b"] == ("queued", 1)


async def test_work_that_changed_nothing_on_the_head_is_recorded_at_once(
    api: httpx.AsyncClient, sessionmaker: SM, keys: Keys, workspace: Path
) -> None:
    """No commit, or the commit it started from while that is still the head: nothing to
    merge and no git to ask, so its success is recorded merged (`empty`) in the same
    transaction and its dependents are queued, with no turn of the merge queue."""
    graph = [task("a"), task("b"), task("c"), task("d", "a", "b"), task("e", "c")]
    session = await new_session(api, init_repo(workspace.parent / "p"), graph)
    ids = await task_ids(api, session["id"])
    base = (await _task(api, ids["a"]))["base_commit"]
    assert base == session["base_commit"]
    await _succeed(sessionmaker, keys, session, ids["a"], None)  # no commit
    await _succeed(sessionmaker, keys, session, ids["b"], base)  # changed nothing
    work = mirror_commit(workspace, session, {"c.txt": "c"})
    await _succeed(sessionmaker, keys, session, ids["c"], work)  # work of its own
    for key in "ab":
        found = await _task(api, ids[key])
        assert (found["merge_status"], found["merge_commit"]) == ("empty", None)
        types = [e["type"] for e in (await api.get(f"/v1/tasks/{ids[key]}/events")).json()]
        assert types[-2:] == ["task.succeeded", "task.merged"]
    assert (await _task(api, ids["c"]))["merge_status"] == "pending"  # its turn in the queue
    states = await task_states(api, session["id"])
    assert (states["d"], states["e"]) == (("queued", 1), ("pending", 0))
    d = await _task(api, ids["d"])
    assert d["base_commit"] == base  # the head did not move
    assert await _merge_next(sessionmaker, keys, session, workspace) == 1
    assert (await task_states(api, session["id"]))["e"] == ("queued", 1)


async def test_work_with_nothing_to_merge_is_recorded_in_one_step(
    api: httpx.AsyncClient, sessionmaker: SM, keys: Keys, workspace: Path
) -> None:
    """Unchanged work whose head moved since it started (another task's work merged)
    waits its turn; the queue records a run of it in one transaction (`git merge-base
    --is-ancestor`: its commit is on the branch)."""
    graph = [task("x"), task("b"), task("c"), task("d", "b", "c")]
    session = await new_session(api, init_repo(workspace.parent / "p"), graph)
    ids = await task_ids(api, session["id"])
    base = (await _task(api, ids["c"]))["base_commit"]
    work = mirror_commit(workspace, session, {"x.txt": "x"})
    await _succeed(sessionmaker, keys, session, ids["x"], work)
    assert await _merge_next(sessionmaker, keys, session, workspace) == 1  # the head moves
    await _succeed(sessionmaker, keys, session, ids["b"], base)  # changed nothing
    await _succeed(sessionmaker, keys, session, ids["c"], base)
    assert [(await _task(api, ids[k]))["merge_status"] for k in "bc"] == ["pending"] * 2
    left = await _merge_next(sessionmaker, keys, session, workspace)
    assert left == 2  # one transaction
    for key in "bc":
        found = await _task(api, ids[key])
        assert (found["merge_status"], found["merge_commit"]) == ("empty", None)
    assert (await task_states(api, session["id"]))["d"] == ("queued", 1)


async def test_a_run_whose_record_a_crash_lost_is_recorded_once_without_new_merges(
    api: httpx.AsyncClient, sessionmaker: SM, keys: Keys, workspace: Path
) -> None:
    session, ids, commits = await _three_done(api, sessionmaker, keys, workspace)
    # A run of three moved the branch, then the orchestrator died before recording it.
    mirror, branch, lost = _merged_before_a_crash(workspace, session, *commits.values())
    left = await _merge_next(sessionmaker, keys, session, workspace)
    assert left == 3  # found on the branch, all in one transaction
    assert git.resolve_commit(mirror, branch) == lost  # no merge made again
    count = git.git("rev-list", "--merges", "--count", branch, git_dir=mirror).stdout
    assert int(count) == 3
    for key in "abc":
        found = await _task(api, ids[key])
        assert (found["merge_status"], found["merge_commit"]) == ("merged", lost)
    assert (await task_states(api, session["id"]))["d"] == ("queued", 1)


async def test_a_run_of_plain_tasks_merges_in_one_step_after_a_merge_a_crash_lost(
    api: httpx.AsyncClient, sessionmaker: SM, keys: Keys, workspace: Path
) -> None:
    session, ids, commits = await _three_done(api, sessionmaker, keys, workspace)
    # a's merge moved the branch, then the orchestrator died before recording it: the
    # session's head is behind git's, so the first merge goes the careful way.
    mirror, branch, lost = _merged_before_a_crash(workspace, session, commits["a"])
    left = await _merge_next(sessionmaker, keys, session, workspace)
    assert left == 3  # one transaction
    assert (await _task(api, ids["a"]))["merge_commit"] == lost
    first_parents = git.git(
        "rev-list", "--first-parent", "--merges", branch, git_dir=mirror
    ).stdout.split()
    b, c = [(await _task(api, ids[k]))["merge_commit"] for k in "bc"]
    assert first_parents == [c, b, lost]  # each on the head the one before made
    head = (await api.get(f"/v1/sessions/{session['id']}")).json()["integration_head"]
    assert head == c == git.resolve_commit(mirror, branch)
    for key in "abc":
        assert _show(mirror, head, f"{key}.txt") == key
    assert (await task_states(api, session["id"]))["d"] == ("queued", 1)
    assert (await _task(api, ids["d"]))["base_commit"] == head


async def test_a_conflict_leaves_integration_untouched_and_asks_for_review(
    api: httpx.AsyncClient, sessionmaker: SM, keys: Keys, state: AppState, workspace: Path
) -> None:
    repo = init_repo(workspace.parent / "p", {"shared.txt": "base\n"})
    graph = [task("x"), task("y"), task("z", "y")]
    session = await new_session(api, repo, graph)
    sid = session["id"]
    ids = await task_ids(api, sid)
    mirror = _mirror(workspace, session)
    x = mirror_commit(workspace, session, {"shared.txt": "one\n"})
    y = mirror_commit(workspace, session, {"shared.txt": "two\n"})
    await _succeed(sessionmaker, keys, session, ids["x"], x)
    await _succeed(sessionmaker, keys, session, ids["y"], y)
    assert await state.background.merge_once() == 2
    body = (await api.get(f"/v1/sessions/{sid}")).json()
    x_merge = (await _task(api, ids["x"]))["merge_commit"]
    assert body["status"] == "awaiting_review"
    assert (
        body["integration_head"]
        == x_merge
        == git.resolve_commit(mirror, f"swarm/{sid}/integration")
    )
    assert _show(mirror, x_merge, "shared.txt") == "one\n"
    conflicted = await _task(api, ids["y"])
    assert (conflicted["merge_status"], conflicted["conflict_files"]) == (
        "conflict",
        ["shared.txt"],
    )
    assert (await task_states(api, sid))["z"] == ("pending", 0)
    assert not body["done"]
    types = [e["type"] for e in (await api.get(f"/v1/sessions/{sid}/events")).json()]
    assert "task.conflict" in types and "session.awaiting_review" in types

    # A retry starts from the integration head (x's work) and is told why.
    retried = await api.post(f"/v1/tasks/{ids['y']}/retry")
    assert retried.status_code == 200, retried.text
    assert (await api.get(f"/v1/sessions/{sid}")).json()["status"] == "active"
    _, second = await task_messages(sessionmaker, ids["y"])
    assert second.base_commit == x_merge
    assert second.feedback is not None and "shared.txt" in second.feedback


async def test_cancelling_a_conflicted_task_blocks_its_dependents_and_resumes_the_session(
    api: httpx.AsyncClient, sessionmaker: SM, keys: Keys, state: AppState, workspace: Path
) -> None:
    repo = init_repo(workspace.parent / "p", {"shared.txt": "base\n"})
    session = await new_session(api, repo, [task("x"), task("y"), task("z", "y")])
    sid = session["id"]
    ids = await task_ids(api, sid)
    for key, text in (("x", "one\n"), ("y", "two\n")):
        commit = mirror_commit(workspace, session, {"shared.txt": text})
        await _succeed(sessionmaker, keys, session, ids[key], commit)
    await state.background.merge_once()
    cancelled = await api.post(f"/v1/tasks/{ids['y']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["merge_status"] == "abandoned"
    body = (await api.get(f"/v1/sessions/{sid}")).json()
    # No conflict is left: the session resumes, and, every task having ended, settles with
    # its failures.
    assert body["status"] == "awaiting_review" and body["done"]
    assert body["review_reason"] == (
        "2 of 3 tasks did not succeed and merge: 1 cancelled (y), 1 blocked (z)"
    )
    timeline = [e["type"] for e in (await api.get(f"/v1/sessions/{sid}/events")).json()]
    assert timeline[-3:] == ["session.resumed", "session.finished", "session.awaiting_review"]
    assert (await task_states(api, sid))["z"][0] == "blocked"


async def test_the_resolve_policy_adds_a_task_that_merges_integration_into_the_work(
    api: httpx.AsyncClient, sessionmaker: SM, keys: Keys, state: AppState, workspace: Path
) -> None:
    repo = init_repo(workspace.parent / "p", {"shared.txt": "base\n"})
    settings = {"conflicts": {"policy": "resolve", "agent": "shell", "prompt": "fix-it"}}
    session = await new_session(api, repo, [task("x"), task("y")], settings=settings)
    sid = session["id"]
    ids = await task_ids(api, sid)
    commits = {}
    for key, text in (("x", "one\n"), ("y", "two\n")):
        commits[key] = mirror_commit(workspace, session, {"shared.txt": text})
        await _succeed(sessionmaker, keys, session, ids[key], commits[key])
    await state.background.merge_once()
    assert (await api.get(f"/v1/sessions/{sid}")).json()["status"] == "active"
    ids = await task_ids(api, sid)
    resolver = await _task(api, ids["y-resolve1"])
    assert resolver["resolves_task_id"] == str(ids["y"])
    assert (resolver["status"], resolver["agent"]) == ("queued", "shell")
    [message] = await task_messages(sessionmaker, ids["y-resolve1"])
    head = (await api.get(f"/v1/sessions/{sid}")).json()["integration_head"]
    assert (message.base_commit, message.merge_with) == (commits["y"], head)
    assert message.conflict_files == ["shared.txt"] and message.prompt == "fix-it"

    # The resolver's work: a merge of integration into y's work, conflict resolved.
    mirror = _mirror(workspace, session)
    tree = workspace / "resolve"
    git.git("worktree", "add", "--detach", str(tree), commits["y"], git_dir=mirror)
    git.git("merge", "--no-commit", head, cwd=tree, check=False)
    (tree / "shared.txt").write_text("one\ntwo\n")
    git.commit_all(tree, mirror, message="resolved", author=git.Author("r", "r@x"))
    resolved = git.git("rev-parse", "HEAD", cwd=tree).stdout.strip()
    await _succeed(sessionmaker, keys, session, ids["y-resolve1"], resolved)
    await state.background.merge_once()
    y = await _task(api, ids["y"])
    assert y["merge_status"] == "resolved"
    final = (await api.get(f"/v1/sessions/{sid}")).json()
    assert final["done"] and y["merge_commit"] == final["integration_head"]
    assert _show(mirror, final["integration_head"], "shared.txt") == "one\ntwo\n"


async def test_tasks_expecting_the_same_files_are_flagged_when_dispatched(
    api: httpx.AsyncClient, git_repo: Path
) -> None:
    graph = [
        task("a", files=["src/app.py", "README.md"]),
        task("b", files=["src/app.py"]),
        task("c", files=["docs/x.md"]),
    ]
    session = await new_session(api, git_repo, graph)
    ids = await task_ids(api, session["id"])
    flagged = {k: (await _task(api, ids[k]))["overlaps"] for k in "abc"}
    assert flagged["c"] is None
    pair = [flagged["a"], flagged["b"]]
    assert [{"task": "a", "files": ["src/app.py"]}] in pair or [
        {"task": "b", "files": ["src/app.py"]}
    ] in pair
    types = [e["type"] for e in (await api.get(f"/v1/sessions/{session['id']}/events")).json()]
    assert types.count("task.overlap") == 1


async def test_the_diff_of_a_task_against_its_base(
    api: httpx.AsyncClient, sessionmaker: SM, keys: Keys, workspace: Path
) -> None:
    session = await new_session(api, init_repo(workspace.parent / "p"), [task("a"), task("b")])
    ids = await task_ids(api, session["id"])
    missing = await api.get(f"/v1/tasks/{ids['b']}/diff")
    assert (missing.status_code, missing.json()["code"]) == (404, "no_diff")
    commit = mirror_commit(workspace, session, {"new.txt": "one\ntwo\n"})
    await _succeed(sessionmaker, keys, session, ids["a"], commit)
    body = (await api.get(f"/v1/tasks/{ids['a']}/diff")).json()
    assert (body["base_commit"], body["commit"]) == (session["base_commit"], commit)
    assert body["files"] == [{"path": "new.txt", "additions": 2, "deletions": 0}]
    assert "+two" in body["patch"] and not body["truncated"]
    patch = await api.get(f"/v1/tasks/{ids['a']}/diff", params={"format": "patch"})
    assert patch.headers["content-type"].startswith("text/x-diff")
    assert patch.text == body["patch"]


async def test_bad_settings_are_refused_with_a_clear_error(
    api: httpx.AsyncClient, git_repo: Path, workspace: Path
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"gatez": {}}, "validation_error"),
        ({"gates": {"mode": "sometimes"}}, "validation_error"),
        ({"setup": {"files": ["../outside"]}}, "validation_error"),
        ({"setup": {"files": ["/etc/passwd"]}}, "validation_error"),
        ({"setup": {"files": ["missing.env"]}}, "invalid_setup"),
    ]
    for settings, code in cases:
        response = await api.post(
            "/v1/sessions", json={"title": "t", "repo": str(git_repo), "settings": settings}
        )
        assert response.status_code in (400, 422), (settings, response.text)
        assert response.json()["code"] == code, (settings, response.text)
    outside = workspace.parent / "secret.txt"
    outside.write_text("s3cret")
    (git_repo / "link.env").symlink_to(outside)
    response = await api.post(
        "/v1/sessions",
        json={"title": "t", "repo": str(git_repo), "settings": {"setup": {"files": ["link.env"]}}},
    )
    assert response.status_code == 422 and response.json()["code"] == "invalid_setup"
    assert not list((workspace / "repos").glob("*.git"))  # nothing half-made stays


async def test_setup_files_are_copied_once_to_the_workspace(
    api: httpx.AsyncClient, git_repo: Path, workspace: Path
) -> None:
    (git_repo / ".env").write_text("TOKEN=abc\n")
    settings = {"setup": {"files": [".env"], "command": "true"}}
    session = await new_session(api, git_repo, settings=settings)
    copied = workspace / "setup" / session["id"] / ".env"
    assert copied.read_text() == "TOKEN=abc\n"
    assert copied.stat().st_mode & 0o777 == 0o600
    assert session["settings"] == settings


async def test_checkpoints_fast_forward_and_tag_only_when_the_gates_pass_and_rollback(
    api: httpx.AsyncClient, sessionmaker: SM, keys: Keys, state: AppState, workspace: Path
) -> None:
    settings = {"gates": {"mode": "strict", "test": "test -f ok.txt", "detect": False}}
    session = await new_session(
        api,
        init_repo(workspace.parent / "p"),
        [task("wip"), task("ok", "wip"), task("later", "ok")],
        settings=settings,
        target_branch="release",
    )
    sid = session["id"]
    ids = await task_ids(api, sid)
    mirror = _mirror(workspace, session)

    async def finish(key: str, files: dict[str, str]) -> str:
        head = (await api.get(f"/v1/sessions/{sid}")).json()["integration_head"]
        commit = mirror_commit(workspace, session, files, parent=head)
        await _succeed(sessionmaker, keys, session, ids[key], commit)
        assert await state.background.merge_once() == 1
        merged: str = (await api.get(f"/v1/sessions/{sid}")).json()["integration_head"]
        return merged

    await finish("wip", {"wip.txt": "wip"})
    first = await api.post(f"/v1/sessions/{sid}/checkpoints")
    assert first.status_code == 202 and first.json()["status"] == "pending"
    assert await state.background.checkpoints_once() == 1
    failed = (await api.get(f"/v1/sessions/{sid}/checkpoints/1")).json()
    assert failed["status"] == "failed" and "test" in failed["error"]
    assert failed["gates"][0]["exit_code"] == 1
    assert git.branch_head(mirror, "release") is None
    assert git.git("tag", "--list", git_dir=mirror).stdout == ""

    good = await finish("ok", {"ok.txt": "ok"})
    assert (await api.post(f"/v1/sessions/{sid}/checkpoints")).status_code == 202
    await state.background.checkpoints_once()
    passed = (await api.get(f"/v1/sessions/{sid}/checkpoints/2")).json()
    assert passed["status"] == "passed", passed
    assert passed["commit"] == good == git.branch_head(mirror, "release")
    assert git.resolve_commit(mirror, f"refs/tags/swarm/{sid}/checkpoint-2") == good

    await finish("later", {"later.txt": "later"})
    rolled = await api.post(f"/v1/sessions/{sid}/rollback", json={"checkpoint": 2})
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["rolled_back"] == ["later"]
    integration = f"swarm/{sid}/integration"
    assert git.resolve_commit(mirror, integration) == good
    files = git.git("ls-tree", "--name-only", integration, git_dir=mirror).stdout.split()
    assert "ok.txt" in files and "later.txt" not in files
    assert (await _task(api, ids["later"]))["merge_status"] == "rolled_back"
    events = (await api.get(f"/v1/sessions/{sid}/events")).json()
    actors = {e["type"]: e["actor"] for e in events}
    assert actors["checkpoint.failed"] == actors["checkpoint.passed"] == "token:bootstrap"
    assert actors["session.rolled_back"] == "token:bootstrap"
    unknown = await api.post(f"/v1/sessions/{sid}/rollback", json={"checkpoint": 1})
    assert (unknown.status_code, unknown.json()["code"]) == (404, "checkpoint_not_found")


async def test_leftover_worktrees_of_ended_attempts_are_pruned(
    api: httpx.AsyncClient, sessionmaker: SM, keys: Keys, state: AppState, workspace: Path
) -> None:
    session = await new_session(api, init_repo(workspace.parent / "p"), [task("a"), task("b")])
    sid = session["id"]
    ids = await task_ids(api, sid)
    mirror = _mirror(workspace, session)
    folder = workspace / "worktrees" / sid
    for key in "ab":  # what two adapters made, then died
        git.add_worktree(
            mirror,
            folder / f"{key}-1",
            branch=f"swarm/{sid}/task/{key}",
            commit=session["base_commit"],
        )
    await _succeed(sessionmaker, keys, session, ids["a"], None)
    assert await state.background.prune_once() == 1
    assert not (folder / "a-1").exists() and (folder / "b-1").is_dir()
    listed = git.git("worktree", "list", "--porcelain", git_dir=mirror).stdout
    assert "a-1" not in listed and "b-1" in listed
