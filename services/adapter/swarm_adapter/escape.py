"""Finding what an attempt wrote outside its worktree, before any of its work is committed.

An agent, and the setup command and gates that run in its worktree, may write inside the
worktree, the attempt's private HOME and its artifacts folder. The adapter checks three
things after the agent (setup included) and, for writes, again after the gates; any of them
fails the attempt with `workspace_escape`, and nothing of it stays committed (after the
gates, the task's branch is put back on the commit the attempt started from):

- Symlinks (`escaping_symlinks`): every path the commit would take (changed against the
  base commit, the agent's own commits included, or new and not ignored) that is a symlink
  resolving outside the worktree: an absolute target, `../..`, or a chain of links. On a
  branch such a link points every later worktree, gate and checkout at files outside the
  repository. Links git does not commit (ignored paths, what the setup command made, say
  `.venv/bin/python -> /usr/bin/python3`) go away with the worktree and are left alone.
- The worktree's `.git` file (`git_link`): rewritten to name another repository, it would
  make the adapter's own `git add` and `git commit` write there.
- Writes to the shared workspace (`snapshot`, `writes_outside`): (inode, size, mtime,
  ctime, mode) of every file and symlink in the workspace's shared parts, taken before setup
  and compared after. The writer cannot set ctime back, so even an edit that restores the
  content and the mtime shows. Cost: one `lstat` per watched entry, a few dozen per session.

What the snapshot watches, by the workspace's layout (`worktree.py`): files at the top of
the workspace and in any folder not named below (`worktrees/outside.txt`,
`worktrees/<session>/x`); the setup files of every session (`setup/<session>/`, copied into
every worktree); in each session's mirror (`repos/<session>.git/`) everything but what git
itself keeps writing (objects, refs, logs, the worktrees' admin folders, packed-refs,
FETCH_HEAD, lock files, all written by the adapter's and the agent's own git too): so
`config`, `hooks/`, `info/`, `HEAD` and `objects/info/alternates`, which would make git run
a command or read another repository for every later attempt and for the orchestrator.
When one of those changed, `restore_mirrors` puts the `config` back (each snapshot keeps
its bytes) and removes the files created there, so the escape does not outlive its attempt.

Limits, honestly:
- Per-run folders are not watched: `worktrees/<s>/<run>/`, `homes/<s>/<run>/`,
  `artifacts/<s>/<run>/` and `checkpoints/<s>/<run>/`, this attempt's and everybody else's.
  Other attempts (other slots, other adapters sharing the workspace) and the orchestrator's
  checkpoints write there at the same time, and a snapshot cannot tell who wrote a file.
  So an agent writing into a sibling task's worktree is not caught.
- The refs and objects of the mirrors are not watched either: the orchestrator and every
  attempt move them all the time (an agent running `git branch -f` on another task's
  branch in its worktree is not caught).
- A mirror or setup folder that appears or disappears during the attempt (a session made
  or discarded meanwhile) is not compared.
- No attribution: a write found is blamed on the attempt that checks, so attempts running
  at the same time as an escaping one fail with it.
- Undoing is partial: a mirror's `config` is put back and files created in a mirror are
  removed; changed hooks or `info/` files, and anything written elsewhere, stay as
  evidence (Swarm's own git runs no hooks and no fsmonitor).
- Writes elsewhere on the machine (`/tmp`, the adapter user's home, other repositories),
  reads, hard links, new empty folders and anything done by a process that outlives the
  agent's kill are not seen. This catches mistakes and naive escapes and leaves evidence;
  it is no sandbox, and an agent that knows this layout can hide its writes in a per-run
  folder. Containment needs a separate user or a container.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from swarm_common import git

__all__ = [
    "Listed",
    "Snapshot",
    "describe",
    "escaping_symlinks",
    "git_link",
    "restore_mirrors",
    "snapshot",
    "status_entries",
    "writes_outside",
]

log = logging.getLogger(__name__)

MAX_NAMED = 20
"""Paths named in one error; the rest are counted."""
MAX_CONFIG_BYTES = 1024 * 1024
"""A mirror's `config` up to this size is kept in a snapshot, to be put back if changed."""

_RUN_PARENTS = frozenset({"worktrees", "homes", "artifacts", "checkpoints"})
"""Top folders of `<top>/<session>/<run>/`: per-run folders, not watched."""
_GIT_DIRS = frozenset({"objects", "refs", "logs", "worktrees", "rr-cache"})
_GIT_FILES = frozenset(
    {"packed-refs", "FETCH_HEAD", "ORIG_HEAD", "shallow", "index", "gc.pid", "gc.log"}
)
"""What git writes in a mirror as a matter of course (lock files besides)."""
_OBJECT_INFO_WATCHED = ("alternates", "http-alternates")

Stat = tuple[int, int, int, int, int]


@dataclass(frozen=True)
class Snapshot:
    """The watched entries of a workspace (relative path → stat), the session folders
    (`repos/<x>`, `setup/<x>`) it held, and the content of each mirror's `config`."""

    entries: dict[str, Stat]
    folders: frozenset[str]
    configs: dict[str, bytes] = field(default_factory=dict)
    git_link: bytes | None = None
    """The worktree's `.git` file (`gitdir: …`), when a worktree was given."""


def snapshot(workspace: Path, worktree: Path | None = None) -> Snapshot:
    """The watched part of `workspace`, read without following a symlink, and the `.git`
    file of `worktree`. Blocking."""
    scan = _Scan()
    for entry in _scan(str(workspace)):
        name = entry.name
        if not _is_dir(entry):
            scan.record(entry, name)
        elif name in _RUN_PARENTS:
            scan.runs(entry.path, name)
        elif name in ("repos", "setup"):
            scan.sessions(entry.path, name, mirrors=name == "repos")
        else:
            scan.walk(entry.path, name)
    return Snapshot(
        entries=scan.entries,
        folders=frozenset(scan.folders),
        configs=scan.configs,
        git_link=git_link(worktree) if worktree is not None else None,
    )


def git_link(worktree: Path) -> bytes:
    """The worktree's `.git` file, which names the repository git writes to (b"" when it
    is no longer a small regular file)."""
    path = worktree / ".git"
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 4096:
            return b""
        return path.read_bytes()
    except OSError:
        return b""


def writes_outside(workspace: Path, before: Snapshot) -> list[str]:
    """What changed in the watched part of `workspace` since `before`: `path (created)`,
    `(changed)` or `(removed)`, relative to the workspace, sorted. Blocking."""
    return [f"{_printable(rel)} ({what})" for rel, what in _changes(before, snapshot(workspace))]


def restore_mirrors(workspace: Path, before: Snapshot) -> list[str]:
    """Undo what matters of an escape into the mirrors, so that later attempts and the
    orchestrator do not run it: put each changed `config` back as `before` had it, remove
    files created since in their watched parts (hooks, info, alternates). Changed hooks
    stay (Swarm's own git runs none). Returns what it undid, relative. Blocking."""
    undone = []
    for rel, what in _changes(before, snapshot(workspace)):
        if not rel.startswith("repos/"):
            continue
        path = workspace / rel
        try:
            if rel in before.configs:
                path.unlink(missing_ok=True)  # a new inode: a writer holding it open misses it
                path.write_bytes(before.configs[rel])
            elif what == "created":
                path.unlink()
            else:
                continue
        except OSError as exc:
            log.warning(
                "cannot undo a write into a mirror", extra={"path": rel, "error": repr(exc)}
            )
            continue
        undone.append(_printable(rel))
    return undone


def escaping_symlinks(
    worktree: Path,
    base_commit: str,
    *,
    exclude: Sequence[str] = (),
    expected_git_link: bytes | None = None,
    listed: Listed | None = None,
) -> list[str]:
    """The symlinks the commit of `worktree` would take that resolve outside it, as
    `path -> target` (relative to the worktree), sorted. `exclude`: what setup made, never
    committed. With `expected_git_link`, a `.git` file that changed (git would commit into
    another repository) is named instead, and git is not run. Blocking; raises
    `git.GitError`."""
    root = worktree.resolve()
    if expected_git_link is not None and git_link(root) != expected_git_link:
        now = git_link(root).decode(errors="replace").strip() or "not a gitdir file"
        return [f".git -> {now}"]
    names = _changed_names(root, base_commit, exclude, listed)
    if any("\ufffd" in name for name in names):  # not UTF-8: git's names cannot be looked up
        names = set(_all_symlinks(root, exclude))
    found = []
    for name in sorted(names):
        path = root / name
        if path.is_symlink() and not Path(os.path.realpath(path)).is_relative_to(root):
            found.append(f"{_printable(name)} -> {_printable(os.readlink(path))}")
    return found


@dataclass
class Listed:
    """The worktree's `git status` entries (`status_entries`), when the symlink check read
    them: the commit that follows uses them rather than asking git again."""

    entries: list[str] | None = None


def status_entries(worktree: Path) -> list[str]:
    """`git status --porcelain -z --untracked-files=all --no-renames`, entry by entry:
    `XY path` for every changed path, tracked or not (ignored ones aside). Raises
    `git.GitError`."""
    listing = git.git(
        "status", "--porcelain", "-z", "--untracked-files=all", "--no-renames", cwd=worktree
    ).stdout
    return [entry for entry in listing.split("\0") if entry]


def _changed_names(
    root: Path, base_commit: str, exclude: Sequence[str], listed: Listed | None
) -> set[str]:
    """Every path whose content differs from `base_commit` in the worktree (tracked or
    not, ignored ones aside), the untracked ones in `exclude` left out. While HEAD is still
    at `base_commit` (the agent committed nothing), one `git status` says it all (kept in
    `listed`); else `git diff` from `base_commit` and `git ls-files --others`."""
    if git.head_of(root) == base_commit:
        entries = status_entries(root)
        if listed is not None:
            listed.entries = entries
        return {
            entry[3:]
            for entry in entries
            if not (entry.startswith("?? ") and _excluded(entry[3:], exclude))
        }
    changed = git.git(
        "diff",
        "--name-only",
        "--no-renames",
        "-z",
        "--end-of-options",
        base_commit,
        "--",
        cwd=root,
    ).stdout
    new = git.git("ls-files", "--others", "--exclude-standard", "-z", cwd=root).stdout
    names = {n for n in changed.split("\0") if n}
    names |= {n for n in new.split("\0") if n and not _excluded(n, exclude)}
    return names


def describe(symlinks: Sequence[str], writes: Sequence[str]) -> str:
    """The error of a `workspace_escape` failure."""
    parts = []
    if symlinks:
        parts.append("links pointing outside the worktree: " + _some(symlinks))
    if writes:
        parts.append("written outside the worktree, in the workspace: " + _some(writes))
    return "; ".join(parts)


def _some(names: Sequence[str]) -> str:
    text = ", ".join(names[:MAX_NAMED])
    return text + (f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else "")


def _printable(name: str) -> str:
    """A file name as text: bytes that are not UTF-8 (kept as surrogates) become U+FFFD."""
    return os.fsencode(name).decode("utf-8", errors="replace")


def _excluded(name: str, exclude: Sequence[str]) -> bool:
    for path in exclude:
        folder = path.rstrip("/")
        if name == folder or name.startswith(folder + "/"):
            return True
    return False


def _all_symlinks(root: Path, exclude: Sequence[str]) -> Iterator[str]:
    """Every symlink under `root` but in `.git` and `exclude`: the slow and conservative
    way (ignored links count too), for names git cannot print."""
    for folder, dirs, files in os.walk(root):  # never into a linked folder
        rel = os.path.relpath(folder, root)
        prefix = "" if rel == "." else rel + "/"
        dirs[:] = [d for d in dirs if d != ".git" and not _excluded(prefix + d, exclude)]
        for name in [*files, *dirs]:
            if os.path.islink(os.path.join(folder, name)):
                yield prefix + name


def _changes(before: Snapshot, after: Snapshot) -> list[tuple[str, str]]:
    moved = before.folders ^ after.folders  # sessions made or discarded meanwhile
    found = []
    for rel in sorted(before.entries.keys() | after.entries.keys()):
        if "/".join(rel.split("/")[:2]) in moved:
            continue
        old, new = before.entries.get(rel), after.entries.get(rel)
        if old != new:
            found.append(
                (rel, "created" if old is None else "removed" if new is None else "changed")
            )
    return found


def _scan(path: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as entries:
            return list(entries)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []  # gone meanwhile, or not ours to read


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


class _Scan:
    """One pass over a workspace, by its layout (see the module docstring)."""

    def __init__(self) -> None:
        self.entries: dict[str, Stat] = {}
        self.folders: set[str] = set()
        self.configs: dict[str, bytes] = {}

    def record(self, entry: os.DirEntry[str] | str, rel: str) -> None:
        """Note the stat of `entry` (or of a path, when it exists) under `rel`."""
        try:
            st = os.lstat(entry) if isinstance(entry, str) else entry.stat(follow_symlinks=False)
        except OSError:
            return  # absent, or removed between listing and reading
        self.entries[rel] = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)

    def walk(self, path: str, rel: str) -> None:
        for entry in _scan(path):
            child = f"{rel}/{entry.name}"
            if _is_dir(entry):
                self.walk(entry.path, child)
            else:
                self.record(entry, child)

    def runs(self, path: str, rel: str) -> None:
        """`<top>/` and `<top>/<session>/`: their files, not the per-run folders below."""
        for entry in _scan(path):
            child = f"{rel}/{entry.name}"
            if not _is_dir(entry):
                self.record(entry, child)
                continue
            for inner in _scan(entry.path):
                if not _is_dir(inner):
                    self.record(inner, f"{child}/{inner.name}")

    def sessions(self, path: str, rel: str, *, mirrors: bool) -> None:
        for entry in _scan(path):
            child = f"{rel}/{entry.name}"
            if not _is_dir(entry):
                self.record(entry, child)
            elif not entry.name.endswith(".partial"):  # `.partial`: a clone in progress
                self.folders.add(child)
                if mirrors:
                    self.mirror(entry.path, child)
                else:
                    self.walk(entry.path, child)

    def mirror(self, path: str, rel: str) -> None:
        for entry in _scan(path):
            name, child = entry.name, f"{rel}/{entry.name}"
            if _is_dir(entry):
                if name == "objects":
                    for watched in _OBJECT_INFO_WATCHED:
                        self.record(
                            os.path.join(entry.path, "info", watched), f"{child}/info/{watched}"
                        )
                elif name not in _GIT_DIRS:
                    self.walk(entry.path, child)
            elif name not in _GIT_FILES and not name.endswith(".lock"):
                self.record(entry, child)
                if name == "config":
                    self._keep(entry.path, child)

    def _keep(self, path: str, rel: str) -> None:
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_CONFIG_BYTES + 1)
        except OSError:
            return
        if len(data) <= MAX_CONFIG_BYTES and not os.path.islink(path):
            self.configs[rel] = data
