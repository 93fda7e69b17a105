"""The repositories the git benchmarks run on, and the floors they are held to: what plain
git, called from Python the way any tool would, takes for the same work on a copy of the
same repository in the same run.

- `large_repo`: 5,000 small files in nested folders, one commit on `main`.
- `worktree_floor`: `git worktree add` of a new branch, write and `git commit` one file,
  `git worktree remove` (the floor of a trivial task's git path).
- `worktree_add_times`: `git worktree add` of a new branch alone.
- `merge_floor`: N commits, each adding its own file, merged one by one into an
  integration branch with `git merge-tree --write-tree`, `git commit-tree`,
  `git update-ref` (the floor of the merge queue).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import init_repo  # noqa: E402

__all__ = [
    "IDENTITY",
    "large_repo",
    "merge_floor",
    "small_repo",
    "worktree_add_times",
    "worktree_floor",
]

IDENTITY = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@localhost",
}


def _git(*args: str, cwd: Path, stdin: str | None = None) -> str:
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **IDENTITY},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def small_repo(path: Path) -> Path:
    """A repository of one README (`tests.conftest.init_repo`)."""
    return init_repo(path)


def large_repo(path: Path, files: int = 5000) -> Path:
    """`files` small files in nested folders (`src/dNN/sN/fNN.txt`, ten to a folder), one
    commit on `main`."""
    contents = {}
    for i in range(files):
        top, rest = divmod(i, 100)
        mid, leaf = divmod(rest, 10)
        contents[f"src/d{top:02d}/s{mid}/f{leaf:02d}.txt"] = f"file {i}\n"
    return init_repo(path, contents)


def _clone(repo: Path, dest: Path, *, bare: bool = False) -> Path:
    _git("clone", "--quiet", *(["--bare"] if bare else []), str(repo), str(dest), cwd=dest.parent)
    return dest


def worktree_floor(repo: Path, scratch: Path, times: int) -> list[float]:
    """Seconds of each: `git worktree add -b <new> <dir> main`, write one file, `git add`,
    `git commit`, `git worktree remove`; in a clone of `repo`."""
    scratch.mkdir(parents=True, exist_ok=True)
    clone = _clone(repo, scratch / "floor-clone")
    found = []
    for i in range(times):
        tree = scratch / f"floor-wt-{i}"
        started = time.perf_counter()
        _git("worktree", "add", "--quiet", "-b", f"floor-{i}", str(tree), "main", cwd=clone)
        (tree / f"floor-{i}.txt").write_text(f"{i}\n")
        _git("add", f"floor-{i}.txt", cwd=tree)
        _git("commit", "--quiet", "-m", f"floor {i}", cwd=tree)
        _git("worktree", "remove", "--force", str(tree), cwd=clone)
        found.append(time.perf_counter() - started)
    return found


def worktree_add_times(repo: Path, scratch: Path, times: int) -> list[float]:
    """Seconds of each `git worktree add -b <new> <dir> main` in a clone of `repo` (each
    worktree removed afterwards, untimed)."""
    scratch.mkdir(parents=True, exist_ok=True)
    clone = _clone(repo, scratch / "add-clone")
    found = []
    for i in range(times):
        tree = scratch / f"add-wt-{i}"
        started = time.perf_counter()
        _git("worktree", "add", "--quiet", "-b", f"add-{i}", str(tree), "main", cwd=clone)
        found.append(time.perf_counter() - started)
        _git("worktree", "remove", "--force", str(tree), cwd=clone)
    return found


def merge_floor(repo: Path, scratch: Path, merges: int) -> list[float]:
    """Seconds of each of `merges` merges into an integration branch of a bare clone of
    `repo`: `merge-tree --write-tree` of the head and a commit that adds its own file,
    `commit-tree` of the result with both parents, `update-ref` (compare-and-swap). The
    commits to merge are made beforehand, untimed, in one `git fast-import`."""
    scratch.mkdir(parents=True, exist_ok=True)
    bare = _clone(repo, scratch / "merge-floor.git", bare=True)
    base = _git("rev-parse", "main", cwd=bare).strip()
    stream = []
    for i in range(merges):
        body, message = f"task {i}\n", f"task {i}"
        stream += [
            f"commit refs/heads/task-{i}",
            "committer bench <bench@localhost> 1700000000 +0000",
            f"data {len(message)}",
            message,
            f"from {base}",
            f"M 100644 inline bench-merge/t{i}.txt",
            f"data {len(body.encode())}",
            body,
        ]
    _git("fast-import", "--quiet", cwd=bare, stdin="\n".join(stream) + "\n")
    commits = [_git("rev-parse", f"task-{i}", cwd=bare).strip() for i in range(merges)]
    head = base
    _git("update-ref", "refs/heads/integration", head, cwd=bare)
    found = []
    for i, commit in enumerate(commits):
        started = time.perf_counter()
        tree = _git("merge-tree", "--write-tree", head, commit, cwd=bare).split("\n", 1)[0]
        merge = _git(
            "commit-tree", tree, "-p", head, "-p", commit, "-m", f"Merge task {i}", cwd=bare
        ).strip()
        _git("update-ref", "refs/heads/integration", merge, head, cwd=bare)
        found.append(time.perf_counter() - started)
        head = merge
    return found
