"""Session policies (`integration.policies`): work that crosses one (protected paths, too
many deleted or renamed files, too many changed lines) waits in `awaiting_approval` with the
reason before it merges; a person's approval merges it, a cancel abandons it. Real git in
the session's mirror; the adapter's events are applied directly, the merge loop run a step
at a time."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common import git
from swarm_common.messages import TaskSucceeded
from swarm_common.session_settings import PolicyConfig
from swarm_common.streams import Keys
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.graph.reports import Outcome
from swarm_orchestrator.integration import merges, policies
from swarm_orchestrator.integration.policies import glob_matches
from tests.conftest import init_repo
from tests.orchestrator.helpers import apply, new_session, outcome_event, task, task_ids

SM = async_sessionmaker[AsyncSession]

FILES = {f"src/m{i}.py": "".join(f"line {n} of module {i}\n" for n in range(20)) for i in range(6)}


def _mirror(workspace: Path, session: dict[str, Any]) -> Path:
    return workspace / "repos" / f"{session['id']}.git"


def _commit(
    workspace: Path,
    session: dict[str, Any],
    *,
    write: dict[str, str] | None = None,
    delete: tuple[str, ...] = (),
    rename: dict[str, str] | None = None,
) -> str:
    """A commit in the session's mirror on its base that writes, deletes and renames files,
    as an agent's attempt would."""
    mirror = _mirror(workspace, session)
    tree = workspace / "scratch" / uuid.uuid4().hex
    git.git(
        "worktree", "add", "--detach", "--quiet", str(tree), session["base_commit"], git_dir=mirror
    )
    try:
        for name, content in (write or {}).items():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            (tree / name).write_text(content)
        for name in delete:
            (tree / name).unlink()
        for old, new in (rename or {}).items():
            (tree / new).parent.mkdir(parents=True, exist_ok=True)
            (tree / old).rename(tree / new)
        git.commit_all(tree, mirror, message="work", author=git.Author("t", "t@example.com"))
        return git.git("rev-parse", "HEAD", cwd=tree).stdout.strip()
    finally:
        git.git("worktree", "remove", "--force", str(tree), git_dir=mirror)
        shutil.rmtree(tree, ignore_errors=True)


async def _start(
    api: httpx.AsyncClient, workspace: Path, policy: dict[str, Any], graph: list[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, uuid.UUID]]:
    repo = init_repo(workspace.parent / "p", {**FILES, "deploy/prod.yaml": "replicas: 3\n"})
    session = await new_session(api, repo, graph, settings={"policy": policy})
    return session, await task_ids(api, session["id"])


async def _succeed(
    sessionmaker: SM, keys: Keys, session: dict[str, Any], task_id: uuid.UUID, commit: str
) -> Outcome:
    event = outcome_event(TaskSucceeded, session["id"], task_id, exit_code=0, commit=commit)
    return await apply(sessionmaker, keys, event, envelope_id=f"done-{task_id}")


async def _task(api: httpx.AsyncClient, task_id: uuid.UUID) -> dict[str, Any]:
    body: dict[str, Any] = (await api.get(f"/v1/tasks/{task_id}")).json()
    return body


async def _entries(api: httpx.AsyncClient, task_id: uuid.UUID, type: str) -> list[dict[str, Any]]:
    events = (await api.get(f"/v1/tasks/{task_id}/events")).json()
    return [e for e in events if e["type"] == type]


def _integration(workspace: Path, session: dict[str, Any]) -> str:
    return git.resolve_commit(
        _mirror(workspace, session), f"refs/heads/swarm/{session['id']}/integration"
    )


async def test_deleting_more_files_than_allowed_waits_for_approval_then_merges_once_approved(
    api: httpx.AsyncClient, sessionmaker: SM, keys: Keys, state: AppState, workspace: Path
) -> None:
    session, ids = await _start(
        api, workspace, {"max_deleted_files": 2}, [task("prune"), task("after", "prune")]
    )
    gone = ("src/m0.py", "src/m1.py", "src/m2.py")
    commit = _commit(workspace, session, delete=gone)
    await _succeed(sessionmaker, keys, session, ids["prune"], commit)
    assert await state.background.merge_once() == 1

    held = await _task(api, ids["prune"])
    assert held["status"] == "awaiting_approval"
    assert held["merge_status"] is None
    assert held["approval_reason"] == (
        "crosses the session's policy: deletes 3 files, the session allows 2"
    )
    assert _integration(workspace, session) == session["base_commit"]  # nothing merged
    assert (await _task(api, ids["after"]))["status"] == "pending"
    [entry] = await _entries(api, ids["prune"], "task.awaiting_approval")
    assert entry["data"]["commit"] == commit
    [violation] = entry["data"]["violations"]
    assert violation == {
        "kind": "deleted_files",
        "reason": "deletes 3 files, the session allows 2",
        "found": 3,
        "limit": 2,
        "paths": list(gone),
    }
    assert (await api.get(f"/v1/sessions/{session['id']}")).json()["done"] is False

    approved = await api.post(f"/v1/tasks/{ids['prune']}/approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["merge_status"] == "pending"
    again = await api.post(f"/v1/tasks/{ids['prune']}/approve")  # approving twice is a no-op
    assert again.status_code == 200, again.text
    assert await state.background.merge_once() == 1  # not held again for the same commit
    merged = await _task(api, ids["prune"])
    assert (merged["status"], merged["merge_status"]) == ("succeeded", "merged")
    head = _integration(workspace, session)
    assert git.is_ancestor(_mirror(workspace, session), commit, head)
    assert (await _task(api, ids["after"]))["status"] == "queued"
    assert len(await _entries(api, ids["prune"], "task.approved")) == 1
    assert len(await _entries(api, ids["prune"], "task.awaiting_approval")) == 1


async def test_a_protected_path_holds_the_work_and_other_work_merges_normally(
    api: httpx.AsyncClient, sessionmaker: SM, keys: Keys, state: AppState, workspace: Path
) -> None:
    policy = {"protected_paths": ["deploy/**", "**/*.pem"], "max_deleted_files": 5}
    session, ids = await _start(api, workspace, policy, [task("ops"), task("feature")])
    ops = _commit(workspace, session, write={"deploy/prod.yaml": "replicas: 30\n", "k.pem": "x"})
    feature = _commit(workspace, session, write={"src/new.py": "print('hi')\n"})
    await _succeed(sessionmaker, keys, session, ids["ops"], ops)
    await _succeed(sessionmaker, keys, session, ids["feature"], feature)
    assert await state.background.merge_once() == 2

    held = await _task(api, ids["ops"])
    assert held["status"] == "awaiting_approval"
    assert held["approval_reason"] == (
        "crosses the session's policy: changes 2 files under protected paths "
        "(deploy/prod.yaml, k.pem)"
    )
    within = await _task(api, ids["feature"])
    assert (within["status"], within["merge_status"], within["approval_reason"]) == (
        "succeeded",
        "merged",
        None,
    )
    head = _integration(workspace, session)
    assert git.is_ancestor(_mirror(workspace, session), feature, head)
    assert not git.is_ancestor(_mirror(workspace, session), ops, head)

    # A cancel abandons the held work: nothing of it merges.
    cancelled = await api.post(f"/v1/tasks/{ids['ops']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert await state.background.merge_once() == 0
    assert _integration(workspace, session) == head


async def test_renames_are_told_from_deletions_and_limited(
    api: httpx.AsyncClient, sessionmaker: SM, keys: Keys, state: AppState, workspace: Path
) -> None:
    policy = {"max_renamed_files": 1, "max_deleted_files": 0}
    session, ids = await _start(api, workspace, policy, [task("move")])
    moves = {"src/m0.py": "lib/m0.py", "src/m1.py": "lib/m1.py"}
    commit = _commit(workspace, session, rename=moves)
    await _succeed(sessionmaker, keys, session, ids["move"], commit)
    await state.background.merge_once()
    held = await _task(api, ids["move"])
    assert held["status"] == "awaiting_approval"
    assert held["approval_reason"] == (
        "crosses the session's policy: renames 2 files, the session allows 1"
    )  # and no deletion: git's rename detection tells a move from a delete and an add
    [entry] = await _entries(api, ids["move"], "task.awaiting_approval")
    assert entry["data"]["violations"][0]["paths"] == ["lib/m0.py", "lib/m1.py"]
    assert entry["data"]["diffstat"]["renamed_files"] == 2
    assert entry["data"]["diffstat"]["deleted_files"] == 0


async def test_changed_lines_over_the_limit_wait_and_at_the_limit_merge(
    api: httpx.AsyncClient, sessionmaker: SM, keys: Keys, state: AppState, workspace: Path
) -> None:
    session, ids = await _start(
        api, workspace, {"max_changed_lines": 10}, [task("big"), task("ok")]
    )
    big = _commit(workspace, session, write={"src/big.py": "x = 1\n" * 11})
    # 5 lines changed in place: 5 deleted + 5 added = 10, the limit itself
    old = FILES["src/m3.py"].splitlines(keepends=True)
    edited = "".join(["changed\n"] * 5 + old[5:])
    ok = _commit(workspace, session, write={"src/m3.py": edited})
    await _succeed(sessionmaker, keys, session, ids["big"], big)
    await _succeed(sessionmaker, keys, session, ids["ok"], ok)
    await state.background.merge_once()
    held = await _task(api, ids["big"])
    assert held["status"] == "awaiting_approval"
    assert held["approval_reason"] == (
        "crosses the session's policy: changes 11 lines (+11 -0), the session allows 10"
    )
    assert (await _task(api, ids["ok"]))["merge_status"] == "merged"


async def test_a_result_delivered_twice_and_two_merge_loops_hold_the_task_once(
    api: httpx.AsyncClient, sessionmaker: SM, keys: Keys, state: AppState, workspace: Path
) -> None:
    session, ids = await _start(api, workspace, {"max_deleted_files": 0}, [task("a")])
    commit = _commit(workspace, session, delete=("src/m5.py",))
    assert await _succeed(sessionmaker, keys, session, ids["a"], commit) == Outcome.APPLIED
    assert await _succeed(sessionmaker, keys, session, ids["a"], commit) == Outcome.DUPLICATE

    async def loop() -> int:
        return await merges.merge_pending(sessionmaker, workspace=workspace, keys=keys)

    assert sorted(await asyncio.gather(loop(), loop())) == [0, 1]  # two orchestrators
    assert await loop() == 0
    assert (await _task(api, ids["a"]))["status"] == "awaiting_approval"
    assert len(await _entries(api, ids["a"], "task.awaiting_approval")) == 1


async def test_a_session_without_limits_reads_no_diff_and_merges(
    api: httpx.AsyncClient, sessionmaker: SM, keys: Keys, state: AppState, workspace: Path
) -> None:
    session, ids = await _start(api, workspace, {}, [task("a")])
    commit = _commit(workspace, session, delete=tuple(FILES))
    await _succeed(sessionmaker, keys, session, ids["a"], commit)
    assert await state.background.merge_once() == 1
    assert (await _task(api, ids["a"]))["merge_status"] == "merged"


def test_hostile_paths_are_data(tmp_path: Path) -> None:
    """Names with newlines, tabs, quotes, a leading dash or invalid UTF-8 are read whole and
    matched as they are: nothing is quoted, expanded or taken for an option."""
    names = ["-rf --all.pem", "a\nb.pem", "tab\there.txt", 'q"uote.txt', "deploy/$(id).sh"]
    repo = init_repo(tmp_path / "r", dict.fromkeys(names, "1\n2\n") | {"keep.txt": "k\n"})
    base = git.resolve_commit(repo / ".git", "HEAD")
    for name in names:
        (repo / name).unlink()
    (repo / "keep.txt").rename(repo / "-moved.txt")
    (repo / "odd\udcff.bin").write_bytes(b"\x00\x01")  # a name that is not UTF-8
    git.git("add", "--all", cwd=repo)
    git.git("commit", "-qm", "x", cwd=repo, env=git.identity(git.Author("t", "t@t")))
    head = git.resolve_commit(repo / ".git", "HEAD")
    change = policies.read_change(repo / ".git", start=base, commit=head, fallback_base=None)
    assert sorted(f.path for f in change.files if f.status == "D") == sorted(names)
    [moved] = [f for f in change.files if f.status == "R"]
    assert (moved.old_path, moved.path) == ("keep.txt", "-moved.txt")
    assert change.deleted == 2 * len(names)
    policy = PolicyConfig(protected_paths=["**/*.pem", "deploy/**"], max_deleted_files=4)
    found = {v.kind: v for v in policies.check(policy, change)}
    assert found["protected_path"].paths == ["-rf --all.pem", "a\nb.pem", "deploy/$(id).sh"]
    assert found["deleted_files"].reason == "deletes 5 files, the session allows 4"


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("deploy/**", "deploy/a/b.yaml", True),
        ("deploy/**", "deployment/x", False),
        ("deploy/", "deploy/x", True),
        ("**/*.pem", "k.pem", True),
        ("**/*.pem", "a/b/k.pem", True),
        ("*.md", "docs/a.md", False),
        ("*.md", "a.md", True),
        ("migrations/**/*.py", "migrations/x.py", True),
        ("src/[!t]*.py", "src/main.py", True),
        ("src/[!t]*.py", "src/test.py", False),
        ("/.github/**", ".github/workflows/ci.yml", True),
        ("a?c", "a/c", False),
    ],
)
def test_protected_path_globs(pattern: str, path: str, matches: bool) -> None:
    assert glob_matches(pattern, path) is matches
