"""Making a task's worktree runnable before its agent starts, and what must be checked about
it afterwards.

Before: for a conflict-resolution task, the integration head is merged in (conflict markers
left for the agent); the session's setup files are copied in from the workspace's
`setup/<session>/`; the setup command runs. Whatever setup leaves untracked (installed
dependencies, the copied files) is excluded from the task's commit.

After: a resolution task must leave no conflict marker in the files that conflicted.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

from swarm_common import git
from swarm_common.messages import TaskMessage

__all__ = ["SetupError", "copy_setup_files", "merge_in", "unresolved", "untracked"]

_MARKER = re.compile(rb"^(<{7} |>{7} |={7}$)", re.MULTILINE)


class SetupError(RuntimeError):
    """The worktree could not be made ready; the message says why."""


async def merge_in(worktree: Path, commit: str) -> list[str]:
    """Merge `commit` into the worktree without committing; return the conflicting paths
    (their conflict markers stay for the agent to resolve)."""

    def merge() -> list[str]:
        proc = git.git(
            "merge",
            "--no-ff",
            "--no-commit",
            "--quiet",
            "--end-of-options",
            commit,
            cwd=worktree,
            check=False,
            env=git.identity(git.Author(name="Swarm", email="swarm@localhost")),
        )
        conflicts = git.git(
            "diff", "--name-only", "--diff-filter=U", "-z", cwd=worktree
        ).stdout.split("\0")
        conflicts = [name for name in conflicts if name]
        if proc.returncode != 0 and not conflicts:
            raise SetupError(f"cannot merge {commit[:12]}: {proc.stderr.strip()[:500]}")
        return conflicts

    try:
        return await asyncio.to_thread(merge)
    except git.GitError as exc:
        raise SetupError(f"cannot merge {commit[:12]}: {exc}") from None


async def copy_setup_files(
    workspace: Path, message: TaskMessage, worktree: Path, files: list[str]
) -> None:
    """Copy the session's setup files into the worktree (they were checked to be relative
    paths inside the repository when the session was made)."""
    source_root = (workspace / "setup" / str(message.session_id)).resolve()

    def copy() -> None:
        for name in files:
            source = (source_root / name).resolve()
            if not source.is_relative_to(source_root):
                raise SetupError(f"setup file {name} lies outside its folder")
            if not source.is_file():
                raise SetupError(f"setup file {name} is missing from the workspace")
            target = worktree / name  # not resolved: a tracked symlink is replaced, not followed
            folder = worktree
            for part in Path(name).parts[:-1]:
                folder = folder / part
                if folder.is_symlink():
                    raise SetupError(f"setup file {name} would be written through a symlink")
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink() or target.exists():
                target.unlink()
            shutil.copyfile(source, target)
            target.chmod(0o600)

    await asyncio.to_thread(copy)


async def untracked(worktree: Path) -> list[str]:
    """Untracked, not ignored paths (a folder as one `name/` entry)."""
    out = await asyncio.to_thread(
        git.git, "status", "--porcelain", "-z", "--untracked-files=normal", cwd=worktree
    )
    return [entry[3:] for entry in out.stdout.split("\0") if entry.startswith("?? ")]


async def unresolved(worktree: Path, files: list[str]) -> list[str]:
    """Which of `files` still hold a conflict marker line."""

    def scan() -> list[str]:
        found = []
        for name in files:
            path = worktree / name
            try:
                if path.is_file() and not path.is_symlink() and _MARKER.search(path.read_bytes()):
                    found.append(name)
            except OSError:
                continue
        return found

    return await asyncio.to_thread(scan)
