"""Dry runs (`integration.dry_run`): agents and gates run, but nothing merges into the
integration branch and no checkpoint or finish moves the target branch, tags or pushes; each
task reports what it would have merged, conflicts included. Real git in the session's mirror
and the user's repository; the adapter's events are applied directly, the merge and
checkpoint loops run a step at a time."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common import git
from swarm_common.messages import TaskSucceeded
from swarm_common.streams import Keys
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.integration import dry_run, merges
from tests.conftest import init_repo
from tests.orchestrator.helpers import (
    apply,
    mirror_commit,
    new_session,
    outcome_event,
    task,
    task_ids,
    task_messages,
)

SM = async_sessionmaker[AsyncSession]
SHARED = "".join(f"line {n}\n" for n in range(10))
GATES = {"gates": {"mode": "strict", "test": "test -f shared.txt", "detect": False}}


def _mirror(workspace: Path, session: dict[str, Any]) -> Path:
    return workspace / "repos" / f"{session['id']}.git"


def _refs(git_dir: Path) -> dict[str, str]:
    """Every ref of a repository and where it points."""
    out = git.git("for-each-ref", "--format=%(objectname) %(refname)", git_dir=git_dir).stdout
    return {name: sha for sha, _, name in (line.partition(" ") for line in out.splitlines())}


def _published(workspace: Path, session: dict[str, Any]) -> dict[str, str]:
    """The mirror's refs a real run moves: target and integration branches, tags."""
    sid = session["id"]
    refs = _refs(_mirror(workspace, session))
    return {
        k: v
        for k, v in refs.items()
        if k.startswith("refs/tags/")
        or k in ("refs/heads/main", f"refs/heads/swarm/{sid}/integration")
    }


async def _succeed(
    sessionmaker: SM, keys: Keys, session: dict[str, Any], task_id: uuid.UUID, commit: str
) -> None:
    event = outcome_event(TaskSucceeded, session["id"], task_id, exit_code=0, commit=commit)
    await apply(sessionmaker, keys, event)


async def _task(api: httpx.AsyncClient, task_id: uuid.UUID) -> dict[str, Any]:
    body: dict[str, Any] = (await api.get(f"/v1/tasks/{task_id}")).json()
    return body


async def test_a_dry_run_moves_no_branch_and_reports_what_each_task_would_have_merged(
    api: httpx.AsyncClient, sessionmaker: SM, keys: Keys, state: AppState, workspace: Path
) -> None:
    repo = init_repo(workspace.parent / "p", {"shared.txt": SHARED})
    settings = {"dry_run": True, "push": True, **GATES}
    graph = [task("a"), task("b"), task("c", "a")]
    session = await new_session(api, repo, graph, settings=settings, target_branch="main")
    sid = session["id"]
    ids = await task_ids(api, sid)
    mirror = _mirror(workspace, session)
    before, user_before = _published(workspace, session), _refs(repo / ".git")
    assert before[f"refs/heads/swarm/{sid}/integration"] == session["base_commit"]

    # a and b change the same line; c builds on a.
    a = mirror_commit(workspace, session, {"shared.txt": SHARED.replace("line 3", "three")})
    b = mirror_commit(workspace, session, {"shared.txt": SHARED.replace("line 3", "THREE")})
    await _succeed(sessionmaker, keys, session, ids["a"], a)
    assert await state.background.merge_once() == 1
    after_a = await _task(api, ids["a"])
    assert (after_a["status"], after_a["merge_status"]) == ("succeeded", "dry_run")
    would_a = after_a["would_merge"]
    assert would_a["commit"] == a and would_a["base"] == session["base_commit"]
    assert would_a["clean"] is True and would_a["conflicts"] == []
    assert would_a["files"] == [{"path": "shared.txt", "status": "M", "added": 1, "deleted": 1}]
    assert would_a["diffstat"]["files"] == 1
    # c may run: it starts from the dry-run branch, which holds a's work (not from the
    # integration branch, which has none of it).
    rehearsed = git.resolve_commit(mirror, f"refs/heads/{dry_run.branch(uuid.UUID(sid))}")
    assert would_a["head"] == rehearsed
    [message] = await task_messages(sessionmaker, ids["c"])
    assert message.base_commit == rehearsed
    assert git.is_ancestor(mirror, a, message.base_commit)

    # A checkpoint asked for now runs the gates and publishes nothing.
    assert (await api.post(f"/v1/sessions/{sid}/checkpoints")).status_code == 202
    assert await state.background.checkpoints_once() == 1
    first = (await api.get(f"/v1/sessions/{sid}/checkpoints/1")).json()
    assert (first["status"], first["tag"], first["target_branch"]) == ("passed", None, None)
    assert _published(workspace, session) == before
    assert first["commit"] == rehearsed  # the gates checked a's work
    rolled = await api.post(f"/v1/sessions/{sid}/rollback", json={"checkpoint": 1})
    assert (rolled.status_code, rolled.json()["code"]) == (409, "dry_run")

    await _succeed(sessionmaker, keys, session, ids["b"], b)
    c = mirror_commit(workspace, session, {"c.txt": "c\n"}, parent=message.base_commit)
    await _succeed(sessionmaker, keys, session, ids["c"], c)
    assert await state.background.merge_once() == 2
    would_b = (await _task(api, ids["b"]))["would_merge"]
    assert (would_b["clean"], would_b["conflicts"], would_b["head"]) == (
        False,
        ["shared.txt"],
        None,
    )
    would_c = (await _task(api, ids["c"]))["would_merge"]
    assert would_c["clean"] is True and would_c["base"] == rehearsed  # only c's own change
    assert would_c["files"] == [{"path": "c.txt", "status": "A", "added": 1, "deleted": 0}]

    # Every task ended: the final checkpoint passes, the session is finalized, and the
    # integration and target branches, the tags and the user's repository are where they were.
    body = (await api.get(f"/v1/sessions/{sid}")).json()
    assert body["status"] == "active" and body["done"]
    assert await state.background.checkpoints_once() == 1
    body = (await api.get(f"/v1/sessions/{sid}")).json()
    assert body["status"] == "finalized" and body["integration_head"] == session["base_commit"]
    assert _published(workspace, session) == before
    assert _refs(repo / ".git") == user_before
    finished = await api.post(f"/v1/sessions/{sid}/finish")
    assert finished.status_code == 200 and _published(workspace, session) == before

    report = (await api.get(f"/v1/sessions/{sid}/dry-run")).json()
    assert report["dry_run"] is True
    assert report["integration_head"] == session["base_commit"]
    assert [t["key"] for t in report["tasks"]] == ["a", "b", "c"]  # in merge order
    assert [t["would_merge"]["clean"] for t in report["tasks"]] == [True, False, True]
    assert report["summary"] == {
        "tasks": 3,
        "clean": 2,
        "conflicted": 1,
        "files": 3,
        "added": 3,
        "deleted": 2,
    }
    assert report["dry_run_head"] == would_c["head"]
    events = (await api.get(f"/v1/sessions/{sid}/events")).json()
    assert sum(e["type"] == "task.would_merge" for e in events) == 3
    assert not any(e["type"] in ("task.merged", "task.conflict") for e in events)
    listed = (await api.get(f"/v1/sessions/{sid}/tasks")).json()
    assert {t["merge_status"] for t in listed} == {"dry_run"}


async def test_a_dry_run_reports_policy_violations_instead_of_waiting(
    api: httpx.AsyncClient, sessionmaker: SM, keys: Keys, state: AppState, workspace: Path
) -> None:
    repo = init_repo(workspace.parent / "p", {"shared.txt": SHARED, "ci.yml": "x\n"})
    settings = {"dry_run": True, "policy": {"protected_paths": ["ci.yml"]}}
    session = await new_session(api, repo, [task("a")], settings=settings)
    ids = await task_ids(api, session["id"])
    commit = mirror_commit(workspace, session, {"ci.yml": "y\n"})
    await _succeed(sessionmaker, keys, session, ids["a"], commit)
    assert await state.background.merge_once() == 1
    a = await _task(api, ids["a"])
    assert (a["status"], a["merge_status"], a["approval_reason"]) == ("succeeded", "dry_run", None)
    [violation] = a["would_merge"]["violations"]
    assert violation["kind"] == "protected_path" and violation["paths"] == ["ci.yml"]


async def test_a_rehearsal_found_done_after_a_crash_is_recorded_once(
    api: httpx.AsyncClient, sessionmaker: SM, keys: Keys, state: AppState, workspace: Path
) -> None:
    repo = init_repo(workspace.parent / "p", {"shared.txt": SHARED})
    session = await new_session(api, repo, [task("a")], settings={"dry_run": True})
    ids = await task_ids(api, session["id"])
    mirror = _mirror(workspace, session)
    commit = mirror_commit(workspace, session, {"a.txt": "a\n"})
    await _succeed(sessionmaker, keys, session, ids["a"], commit)
    # The dry-run branch moved, then the orchestrator died before its transaction committed.
    done = dry_run.rehearse(
        mirror,
        session_id=uuid.UUID(session["id"]),
        start=session["base_commit"],
        commit=commit,
        message="m",
        author=git.Author("x", "x@y"),
    )
    assert done.head is not None

    async def loop() -> int:
        return await merges.merge_pending(sessionmaker, workspace=workspace, keys=keys)

    assert sorted(await asyncio.gather(loop(), loop())) == [0, 1]
    would = (await _task(api, ids["a"]))["would_merge"]
    assert (would["clean"], would["head"]) == (True, done.head)
    branch = f"refs/heads/{dry_run.branch(uuid.UUID(session['id']))}"
    assert int(git.git("rev-list", "--merges", "--count", branch, git_dir=mirror).stdout) == 1
    events = (await api.get(f"/v1/tasks/{ids['a']}/events")).json()
    assert sum(e["type"] == "task.would_merge" for e in events) == 1


async def test_a_session_that_is_not_a_dry_run_says_so(
    api: httpx.AsyncClient, workspace: Path
) -> None:
    session = await new_session(api, init_repo(workspace.parent / "p"), [task("a")])
    report = (await api.get(f"/v1/sessions/{session['id']}/dry-run")).json()
    assert (report["dry_run"], report["tasks"], report["dry_run_branch"]) == (False, [], None)
