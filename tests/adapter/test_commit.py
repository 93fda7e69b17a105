"""Committing an attempt's work (`Worktrees.scrub` then `Worktrees.commit`), on real git:
git is asked to commit only when something may be committed, and the result says what the
branch holds either way."""

from __future__ import annotations

from pathlib import Path

from swarm_adapter.worktree import Worktrees
from swarm_common import git
from tests.adapter.helpers import Mirror, message


async def test_only_what_setup_made_changed_so_nothing_is_committed(
    workspace: Path, mirror: Mirror
) -> None:
    worktrees = Worktrees(workspace)
    msg = message(mirror, "true")
    path = await worktrees.prepare(msg)
    (path / ".env").write_text("SETUP=1\n")
    (path / "deps" / "lib").mkdir(parents=True)
    (path / "deps" / "lib" / "x.py").write_text("x\n")
    scrubbed = await worktrees.scrub(path, [])
    assert sorted(scrubbed.changes) == ["?? .env", "?? deps/lib/x.py"]
    done = await worktrees.commit(
        msg, path, status="succeeded", exclude=[".env", "deps/"], changes=scrubbed.changes
    )
    assert (done.sha, done.changed_files) == (mirror.base, [])
    assert git.branch_head(mirror.path, msg.branch) == mirror.base
    await worktrees.remove(msg)
    assert await worktrees.idle(30)


async def test_work_the_agent_committed_itself_is_reported_without_a_commit_of_ours(
    workspace: Path, mirror: Mirror
) -> None:
    worktrees = Worktrees(workspace)
    msg = message(mirror, "true")
    path = await worktrees.prepare(msg)
    (path / "mine.txt").write_text("mine\n")
    git.git("add", "mine.txt", cwd=path)
    git.git("commit", "-q", "-m", "mine", cwd=path, env=git.identity(git.Author("a", "a@a")))
    own = git.git("rev-parse", "HEAD", cwd=path).stdout.strip()
    scrubbed = await worktrees.scrub(path, [])
    assert scrubbed.changes == []
    done = await worktrees.commit(msg, path, status="succeeded", changes=scrubbed.changes)
    assert (done.sha, done.changed_files) == (own, ["mine.txt"])
    assert git.branch_head(mirror.path, msg.branch) == own
    await worktrees.remove(msg)
    assert await worktrees.idle(30)


async def test_a_change_beside_what_setup_made_is_committed_alone(
    workspace: Path, mirror: Mirror
) -> None:
    worktrees = Worktrees(workspace)
    msg = message(mirror, "true")
    path = await worktrees.prepare(msg)
    (path / ".env").write_text("SETUP=1\n")
    (path / "README.md").rename(path / "README.txt")
    git.git("add", "--all", cwd=path)  # staged: a rename, listed with its source
    scrubbed = await worktrees.scrub(path, [])
    done = await worktrees.commit(
        msg, path, status="succeeded", exclude=[".env"], changes=scrubbed.changes
    )
    assert done.sha != mirror.base
    assert sorted(done.changed_files) == ["README.md", "README.txt"]
    assert ".env" not in git.git("ls-tree", "--name-only", done.sha, git_dir=mirror.path).stdout
    await worktrees.remove(msg)
    assert await worktrees.idle(30)
