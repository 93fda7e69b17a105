"""Reused worktrees (`swarm_adapter.pool`, through `worktree.Worktrees`), on real git and
real files: a reused worktree is as clean as a new one, at the right commit and on the right
branch; two takes at once get two worktrees; what a crash leaves is never handed out dirty;
the pool keeps no more than its size."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from swarm_adapter.worktree import Worktrees
from swarm_common import git
from swarm_common.messages import TaskMessage
from tests.adapter.helpers import Mirror, message
from tests.conftest import init_repo

FILES = {
    "README.md": "# repo\n",
    ".gitignore": "*.pyc\nbuild/\n",
    "src/a.py": "a = 1\n",
    "src/b.py": "b = 1\n",
    "docs/guide.md": "guide\n",
}


@pytest.fixture
def repo(workspace: Path, tmp_path: Path) -> tuple[Mirror, str]:
    """A mirror whose `main` has FILES, and a second commit (`next`) that changes a file,
    removes a folder, adds one and turns a file into a folder."""
    source = init_repo(tmp_path / "source", FILES)
    identity = git.identity(git.Author(name="t", email="t@t"))
    (source / "src" / "a.py").write_text("a = 2\n")
    git.git("rm", "-q", "-r", "docs", "src/b.py", cwd=source)
    (source / "lib").mkdir()
    (source / "lib" / "new.py").write_text("new\n")
    (source / "src" / "b.py").mkdir()
    (source / "src" / "b.py" / "inner.txt").write_text("inner\n")
    git.git("add", "--all", cwd=source)
    git.git("commit", "-q", "-m", "next", cwd=source, env=identity)
    git.git("branch", "next", cwd=source)
    session_id = uuid.uuid4()
    path = workspace / "repos" / f"{session_id}.git"
    git.clone_bare(str(source), path)
    base = git.resolve_commit(path, "main~1")
    mirror = Mirror(session_id=session_id, path=path, base=base)
    return mirror, git.resolve_commit(path, "next")


def task(mirror: Mirror, key: str, **extra: Any) -> TaskMessage:
    return message(mirror, "true", key=key, **extra)


def assert_fresh(worktree: Path, mirror: Mirror, msg: TaskMessage) -> None:
    """As `git worktree add -B <branch> <path> <commit>` would leave it."""
    run = lambda *args: git.git(*args, cwd=worktree).stdout  # noqa: E731
    assert run("status", "--porcelain", "--ignored", "--untracked-files=all") == ""
    assert run("symbolic-ref", "HEAD").strip() == f"refs/heads/{msg.branch}"
    assert run("rev-parse", "HEAD").strip() == msg.base_commit
    assert git.branch_head(mirror.path, msg.branch) == msg.base_commit
    tracked = set(run("ls-tree", "-r", "--name-only", "HEAD").split())
    on_disk = {
        str(Path(folder, name).relative_to(worktree))
        for folder, dirs, files in os.walk(worktree)
        for name in files
    } - {".git"}
    assert on_disk == tracked
    folders = {str(Path(f).relative_to(worktree)) for f, _, _ in os.walk(worktree)} - {"."}
    assert folders == {str(p) for name in tracked for p in Path(name).parents} - {"."}
    admin = git.pointed_git_dir(worktree)
    assert admin is not None
    assert set(os.listdir(admin)) <= {"HEAD", "commondir", "gitdir", "index", "logs", "ORIG_HEAD"}


def mess_up(worktree: Path) -> None:
    """What an agent, its setup and its gates may leave behind."""
    (worktree / "untracked.txt").write_text("u\n")
    (worktree / "new" / "deep").mkdir(parents=True)
    (worktree / "new" / "deep" / "file.txt").write_text("n\n")
    (worktree / "empty").mkdir()
    (worktree / "src" / "a.pyc").write_bytes(b"\0")
    (worktree / "build").mkdir()
    (worktree / "build" / "out.o").write_text("o\n")
    (worktree / "src" / "a.py").write_text("changed\n")
    (worktree / "README.md").unlink()
    (worktree / "src" / "b.py").chmod(0o755)
    git.git("init", "-q", str(worktree / "build" / "nested"))  # `git clean` needs -ff
    (worktree / "build" / "nested" / "x").write_text("x\n")
    git.git("update-ref", "refs/bisect/bad", "HEAD", cwd=worktree)  # per-worktree ref


def ready(workspace: Path, mirror: Mirror) -> list[str]:
    folder = workspace / "worktrees" / ".pool" / f"{mirror.session_id}.git" / "ready"
    return sorted(os.listdir(folder)) if folder.is_dir() else []


def listed(mirror: Mirror) -> list[str]:
    out = git.git("worktree", "list", "--porcelain", git_dir=mirror.path).stdout
    return [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("worktree ")]


class ReadyLines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "worktree ready":
            self.records.append(record)


@pytest.fixture
def ready_lines() -> Any:
    handler = ReadyLines()
    logger = logging.getLogger("swarm_adapter.worktree")
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(old)


@pytest.mark.parametrize("committed", [True, False])
async def test_a_reused_worktree_is_clean_at_the_new_commit_on_the_new_branch(
    workspace: Path,
    repo: tuple[Mirror, str],
    ready_lines: list[logging.LogRecord],
    committed: bool,
) -> None:
    mirror, later = repo
    worktrees = Worktrees(workspace)
    first = task(mirror, "a")
    path = await worktrees.prepare(first)
    mess_up(path)
    git.git("merge", "--no-commit", "--no-ff", "-q", later, cwd=path, check=False)
    if committed:
        await worktrees.commit(first, path, status="failed")
    await worktrees.remove(first)
    assert not path.exists()  # out of the way at once
    assert await worktrees.idle(30)
    assert len(ready(workspace, mirror)) >= 1

    second = task(mirror, "b", base_commit=later)
    assert_fresh(await worktrees.prepare(second), mirror, second)
    await worktrees.remove(second)
    assert await worktrees.idle(30)
    third = task(mirror, "c")
    assert_fresh(await worktrees.prepare(third), mirror, third)

    assert [r.reused for r in ready_lines] == [False, True, True]  # type: ignore[attr-defined]
    line = ready_lines[1]
    assert (line.task_id, line.attempt) == (str(second.task_id), 1)  # type: ignore[attr-defined]
    assert isinstance(line.elapsed_ms, float) and line.elapsed_ms > 0  # type: ignore[attr-defined]
    # The first task's branch keeps what it committed; no worktree is left on it.
    head = git.branch_head(mirror.path, first.branch)
    assert (head != mirror.base) is committed
    assert (
        f"branch refs/heads/{first.branch}"
        not in git.git("worktree", "list", "--porcelain", git_dir=mirror.path).stdout
    )
    await worktrees.remove(third)
    assert await worktrees.idle(30)


async def test_two_takes_at_once_get_two_worktrees(
    workspace: Path, repo: tuple[Mirror, str]
) -> None:
    mirror, later = repo
    one, two = Worktrees(workspace), Worktrees(workspace)  # two adapters, one workspace
    warm = [task(mirror, f"w{i}") for i in range(2)]
    await asyncio.gather(*(one.prepare(m) for m in warm))
    for m in warm:
        await one.remove(m)
    assert await one.idle(30)
    assert len(ready(workspace, mirror)) >= 2  # with the one made ahead of need

    msgs = [task(mirror, "x"), task(mirror, "y", base_commit=later), task(mirror, "z")]
    paths = await asyncio.gather(one.prepare(msgs[0]), two.prepare(msgs[1]), one.prepare(msgs[2]))
    admins = {git.pointed_git_dir(p) for p in paths}
    assert len(set(paths)) == 3 and len(admins) == 3
    for path, msg in zip(paths, msgs, strict=True):
        assert_fresh(path, mirror, msg)
    for msg in msgs:
        await one.remove(msg)
    assert await one.idle(30) and await two.idle(30)


async def test_a_worktree_left_mid_task_by_a_killed_adapter_is_never_handed_out(
    workspace: Path, repo: tuple[Mirror, str], ready_lines: list[logging.LogRecord]
) -> None:
    mirror, _ = repo
    crashed = task(mirror, "a")
    script = (
        "import asyncio, os, signal, sys\n"
        "from pathlib import Path\n"
        "from swarm_adapter.worktree import Worktrees\n"
        "from swarm_common.messages import TaskMessage\n"
        "msg = TaskMessage.model_validate_json(sys.argv[2])\n"
        "path = asyncio.run(Worktrees(Path(sys.argv[1])).prepare(msg))\n"
        "(path / 'dirty.txt').write_text('d')\n"
        "(path / 'README.md').write_text('changed')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(workspace), crashed.model_dump_json()],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    left = Worktrees(workspace).path(crashed)
    assert (left / "dirty.txt").exists()

    restarted = Worktrees(workspace)
    other = task(mirror, "b")
    assert_fresh(await restarted.prepare(other), mirror, other)
    again = await restarted.prepare(crashed)  # the same attempt, delivered again
    assert_fresh(again, mirror, crashed)
    retry = task(mirror, "a", attempt=2)  # or the task's next attempt, on the same branch
    assert_fresh(await restarted.prepare(retry), mirror, retry)
    assert not again.exists()  # the branch's earlier worktree went
    in_use = {Path(p) for p in listed(mirror)[1:] if "/.pool/" not in p}
    assert in_use == {restarted.path(other), restarted.path(retry)}
    for msg in (other, retry):
        await restarted.remove(msg)
    assert await restarted.idle(30)


async def test_a_worktree_left_mid_cleaning_is_cleaned_before_reuse(
    workspace: Path, repo: tuple[Mirror, str]
) -> None:
    """A crash between giving a worktree back and cleaning it leaves it in `used/`, dirty
    and detached, as `park` does here; the next adapter cleans it before handing it out."""
    mirror, later = repo
    first = task(mirror, "a")
    path = await Worktrees(workspace, pool_size=0).prepare(first)  # none made ahead
    mess_up(path)
    parked = park(path, mirror, workspace)

    restarted = Worktrees(workspace)
    second = task(mirror, "b", base_commit=later)
    reused = await restarted.prepare(second)
    assert_fresh(reused, mirror, second)
    assert git.pointed_git_dir(reused) == parked
    assert [p for p in listed(mirror)[1:] if "/.pool/" not in p] == [str(reused)]
    await restarted.remove(second)
    assert await restarted.idle(30)


def park(path: Path, mirror: Mirror, workspace: Path) -> Path:
    """Give a worktree back as `Pool.give_back` does, without the cleaning that follows;
    its admin folder."""
    admin = git.pointed_git_dir(path)
    assert admin is not None
    used = workspace / "worktrees" / ".pool" / f"{mirror.session_id}.git" / "used" / admin.name
    used.parent.mkdir(parents=True)
    (admin / "HEAD").write_text(mirror.base + "\n")
    path.rename(used)
    (admin / "gitdir").write_text(f"{used}/.git\n")
    return admin


@pytest.mark.parametrize("breaks", ["assume-unchanged", "skip-worktree", "git link"])
async def test_a_worktree_git_would_misjudge_is_removed_not_reused(
    workspace: Path, repo: tuple[Mirror, str], tmp_path: Path, breaks: str
) -> None:
    mirror, _ = repo
    worktrees = Worktrees(workspace)
    first = task(mirror, "a")
    path = await worktrees.prepare(first)
    admin = git.pointed_git_dir(path)
    assert admin is not None
    if breaks == "git link":
        other = init_repo(tmp_path / "other")
        (path / ".git").write_text(f"gitdir: {other}/.git\n")
    else:
        git.git("update-index", f"--{breaks}", "README.md", cwd=path)
        (path / "README.md").write_text("hidden change\n")
    await worktrees.remove(first)
    assert await worktrees.idle(30)
    assert admin.name not in ready(workspace, mirror) and not admin.exists()
    assert [p for p in listed(mirror)[1:] if "/ready/" not in p] == []
    pool = workspace / "worktrees" / ".pool" / f"{mirror.session_id}.git" / "ready"
    assert all((pool / n / "README.md").read_text() == "# repo\n" for n in ready(workspace, mirror))
    second = task(mirror, "b")
    assert_fresh(await worktrees.prepare(second), mirror, second)
    await worktrees.remove(second)
    assert await worktrees.idle(30)


async def test_the_pool_keeps_no_more_than_its_size(
    workspace: Path, repo: tuple[Mirror, str]
) -> None:
    mirror, _ = repo
    worktrees = Worktrees(workspace, pool_size=2)
    msgs = [task(mirror, f"t{i}") for i in range(5)]
    await asyncio.gather(*(worktrees.prepare(m) for m in msgs))
    for msg in msgs:
        await worktrees.remove(msg)
    assert await worktrees.idle(30)
    assert len(ready(workspace, mirror)) == 2
    assert len(listed(mirror)) == 1 + 2
    trash = workspace / "worktrees" / ".trash"
    assert not trash.exists() or os.listdir(trash) == []
    for state in ("used", "new"):
        folder = workspace / "worktrees" / ".pool" / f"{mirror.session_id}.git" / state
        assert not folder.exists() or os.listdir(folder) == []


async def test_without_a_pool_every_worktree_is_new_and_removed(
    workspace: Path, repo: tuple[Mirror, str], ready_lines: list[logging.LogRecord]
) -> None:
    mirror, _ = repo
    worktrees = Worktrees(workspace, pool_size=0)
    for key in "ab":
        msg = task(mirror, key)
        assert_fresh(await worktrees.prepare(msg), mirror, msg)
        await worktrees.remove(msg)
    assert await worktrees.idle(30)
    assert [r.reused for r in ready_lines] == [False, False]  # type: ignore[attr-defined]
    assert listed(mirror) == [str(mirror.path)]


async def test_a_sweep_removes_idle_worktrees_and_pools_of_repositories_that_are_gone(
    workspace: Path, repo: tuple[Mirror, str]
) -> None:
    mirror, _ = repo
    worktrees = Worktrees(workspace)
    msg = task(mirror, "a")
    await worktrees.prepare(msg)
    await worktrees.remove(msg)
    assert await worktrees.idle(30)
    assert ready(workspace, mirror)
    gone = workspace / "worktrees" / ".pool" / "gone-session.git" / "ready" / "x"
    gone.mkdir(parents=True)

    worktrees.pool.idle_s = 0.0
    worktrees.sweep()
    assert await worktrees.idle(30)
    assert ready(workspace, mirror) == []
    assert listed(mirror) == [str(mirror.path)]
    assert not gone.parent.parent.exists()
