"""Git helpers used by both services: a mirror per session, worktrees, commits.

Every call runs `git` with an argv list (never a shell), no terminal prompt, no hooks, no
automatic gc, and an allowlist of transport protocols. Revisions and refs that come from
outside (task messages, events, the database) follow `--end-of-options` or are checked
first, so a value that begins with `-` is never read as an option. Operations that touch a
repository's shared state (worktrees, refs) hold `repo_lock`, a file lock, so concurrent
adapters and threads never race on git's own lock files. These functions block; async
callers run them with `asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from swarm_common.backoff import Backoff
from swarm_common.concealed import without_secrets

__all__ = [
    "GitError",
    "Author",
    "MergeResult",
    "RefMoved",
    "SHA",
    "ZERO",
    "add_worktree",
    "branch_head",
    "changed_files",
    "check_branch",
    "clone_bare",
    "commit_all",
    "diff",
    "git",
    "head_of",
    "identity",
    "is_ancestor",
    "merge_commit",
    "merge_into",
    "move_branch",
    "numstat",
    "pointed_git_dir",
    "outbound_env",
    "remove_worktree",
    "repo_lock",
    "resolve_commit",
    "update_ref",
    "worktrees_on_branch",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 120.0
LOCK_TIMEOUT_S = 120.0
_CONFIG = (
    "-c",
    "gc.auto=0",
    "-c",
    "maintenance.auto=false",
    "-c",
    "commit.gpgsign=false",
    "-c",
    "tag.gpgsign=false",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",  # no command from a repository's config on every status
    "-c",
    "safe.directory=*",
    "-c",
    "advice.detachedHead=false",
    "-c",
    "init.defaultBranch=main",
)
_TRANSIENT = ("index.lock", "cannot lock ref", "Unable to create", "unable to lock", "is locked")


class GitError(RuntimeError):
    """A git command that failed; `stderr` holds git's own explanation."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str) -> None:
        self.args_ = list(args)
        self.returncode = returncode
        self.stderr = stderr.strip()
        super().__init__(f"git {' '.join(args[:3])} failed ({returncode}): {self.stderr[:500]}")

    @property
    def transient(self) -> bool:
        return any(marker in self.stderr for marker in _TRANSIENT)


@dataclass(frozen=True)
class Author:
    name: str
    email: str


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(_base_env())
    if extra:
        env.update(extra)
    return env


_made_from: tuple[dict[bytes, bytes], dict[str, str]] | None = None
"""The environment git last ran with, and the process environment it was made from."""


def _base_env() -> dict[str, str]:
    """This process's environment less its secrets and git's own variables, plus ours:
    made again only when the environment changed (every git command needs it, and looking
    for secrets in every variable costs more than starting some of them)."""
    global _made_from
    now: dict[bytes, bytes] | None = getattr(os.environ, "_data", None)  # CPython's raw copy
    made = _made_from
    if now is not None and made is not None and made[0] == now:
        return made[1]
    env = {k: v for k, v in without_secrets(os.environ).items() if not k.startswith("GIT_")}
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_ALLOW_PROTOCOL="file:git:http:https:ssh",
        GIT_CONFIG_NOSYSTEM="1",
        LC_ALL="C",
    )
    if now is not None:
        _made_from = (dict(now), env)
    return env


def git(
    *args: str,
    cwd: Path | None = None,
    git_dir: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    env: dict[str, str] | None = None,
    check: bool = True,
    retries: int = 2,
) -> subprocess.CompletedProcess[str]:
    """Run one git command; retry a few times when git reports a held lock file."""
    argv = ["git", *_CONFIG]
    if git_dir is not None:
        argv.append(f"--git-dir={git_dir}")
    argv.extend(args)
    for attempt in range(retries + 1):
        try:
            proc = subprocess.run(
                argv,
                cwd=cwd,
                env=_env(env),
                capture_output=True,
                encoding="utf-8",
                errors="replace",  # a patch may hold any bytes
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise GitError(args, -1, f"timed out after {timeout:.0f}s") from None
        if proc.returncode == 0 or not check:
            return proc
        error = GitError(args, proc.returncode, proc.stderr)
        if not error.transient or attempt == retries:
            raise error
        log.info("git lock busy, retrying", extra={"git_args": " ".join(args[:2])})
        time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


@contextlib.contextmanager
def repo_lock(git_dir: Path, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold an exclusive lock on one repository, across processes and threads. A waiter
    looks again after 1 ms, then ever less often, 20 ms apart at most: the lock is mostly
    held for a git command or a rename (a few ms), and a fixed 20 ms step made each wait
    for it cost 20 ms."""
    lock_path = git_dir / "swarm.lock"
    deadline = time.monotonic() + timeout
    backoff = Backoff(base_s=0.001, cap_s=0.02)
    with open(lock_path, "a+") as handle:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"repository lock {lock_path} held too long") from None
                time.sleep(backoff.failed())
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def outbound_env(home: Path) -> dict[str, str]:
    """The environment of a git command that reaches another repository (a clone, a push):
    `home` as HOME (its `.gitconfig`, say a credential helper meant for Swarm, is the only
    config read: no system or user file, so no `insteadOf` rewrite of the user's), HTTP
    redirects not followed, no ssh agent and no ssh key but `home/.ssh/id_ed25519`, so
    the credentials of the user running Swarm serve no repository a session names."""
    ssh = home / ".ssh"
    config = ssh / "config"
    gitconfig = home / ".gitconfig"
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "GIT_CONFIG_GLOBAL": str(gitconfig) if gitconfig.is_file() else os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.followRedirects",
        "GIT_CONFIG_VALUE_0": "false",
        "GIT_SSH_COMMAND": shlex.join(
            [
                "ssh",
                "-F",
                str(config) if config.is_file() else os.devnull,
                *("-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"),
                *("-o", "StrictHostKeyChecking=accept-new"),
                *("-o", f"IdentityFile={ssh / 'id_ed25519'}"),
                *("-o", f"UserKnownHostsFile={ssh / 'known_hosts'}"),
            ]
        ),
        "SSH_AUTH_SOCK": "",
    }


def pointed_git_dir(folder: Path) -> Path | None:
    """Where the `.git` file of `folder` points (`gitdir: ...`): for a linked worktree, the
    folder it keeps in its repository (`<repo>/worktrees/<name>`: its index and HEAD).
    None when `folder` has no such file."""
    try:
        with (folder / ".git").open(errors="replace") as handle:
            text = handle.read(4096)
    except OSError:
        return None
    if not text.startswith("gitdir:"):
        return None
    return (folder / text.removeprefix("gitdir:").strip()).resolve()


SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
"""A full commit hash, SHA-1 or SHA-256 (`fullmatch`)."""
_BRANCH_REF = re.compile(r"refs/heads/[A-Za-z0-9._/-]+")


def head_of(worktree: Path) -> str | None:
    """The commit a linked worktree's HEAD is at, read from git's own files as git reads
    them (its HEAD, then the loose ref it names in the repository), without starting git;
    None when they say anything else (a packed ref, a ref git would refuse): ask git
    then. A command fewer on the path of every attempt."""
    admin = pointed_git_dir(worktree)
    if admin is None:
        return None
    head = _small_file(admin / "HEAD")
    if head is None or SHA.fullmatch(head):
        return head
    ref = head.removeprefix("ref: ")
    if ref == head or not _BRANCH_REF.fullmatch(ref) or ".." in ref or "//" in ref:
        return None
    common = _small_file(admin / "commondir")
    if common is None:
        return None
    value = _small_file((admin / common) / ref)
    return value if value is not None and SHA.fullmatch(value) else None


def _small_file(path: Path) -> str | None:
    try:
        with path.open(errors="replace") as handle:
            return handle.read(4096).strip()
    except OSError:
        return None


def clone_bare(
    source: str, dest: Path, *, timeout: float = 600.0, env: dict[str, str] | None = None
) -> None:
    """Make `dest` a bare clone of `source` (a local path or a URL); `env` adds to git's
    environment (`outbound_env` for a source a session named)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        git(
            "clone",
            "--bare",
            "--quiet",
            "--",
            source,
            str(tmp),
            timeout=timeout,
            retries=0,
            env=env,
        )
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def resolve_commit(git_dir: Path, ref: str) -> str:
    """The full hash of the commit `ref` names in `git_dir`."""
    proc = git(
        "rev-parse",
        "--verify",
        "--quiet",
        "--end-of-options",
        f"{ref}^{{commit}}",
        git_dir=git_dir,
        check=False,
    )
    if proc.returncode != 0:
        raise GitError(["rev-parse", ref], proc.returncode, proc.stderr or f"unknown ref {ref}")
    return proc.stdout.strip()


def branch_head(git_dir: Path, branch: str) -> str | None:
    proc = git(
        "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", git_dir=git_dir, check=False
    )
    return proc.stdout.strip() or None


def check_branch(branch: str) -> str:
    """`branch` when it is a valid branch name; `GitError` otherwise. `git worktree add`
    hands its branch and commit to an inner `git branch` without `--end-of-options`, so an
    option-looking name must be refused before."""
    if (
        not branch
        or branch.startswith("-")
        or git("check-ref-format", f"refs/heads/{branch}", check=False).returncode != 0
    ):
        raise GitError(["check-ref-format", branch], 1, f"{branch!r} is not a valid branch name")
    return branch


def add_worktree(git_dir: Path, path: Path, *, branch: str, commit: str) -> None:
    """Check out `branch`, reset to `commit`, in a fresh worktree at `path`. A worktree an
    earlier attempt left on the same branch is removed first: the new attempt supersedes
    it."""
    check_branch(branch)
    commit = resolve_commit(git_dir, commit)  # a full hash: never read as an option
    with repo_lock(git_dir):
        for stale in worktrees_on_branch(git_dir, branch):
            _drop_worktree(git_dir, stale)
        _drop_worktree(git_dir, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        git(
            "worktree",
            "add",
            "--force",
            "--quiet",
            "-B",
            branch,
            str(path),
            commit,
            git_dir=git_dir,
        )


def worktrees_on_branch(git_dir: Path, branch: str) -> list[Path]:
    """Worktrees of `git_dir` that have `branch` checked out."""
    listing = git("worktree", "list", "--porcelain", git_dir=git_dir).stdout
    found: list[Path] = []
    current: Path | None = None
    for line in listing.splitlines():
        if line.startswith("worktree "):
            current = Path(line[len("worktree ") :])
        elif line == f"branch refs/heads/{branch}" and current is not None:
            found.append(current)
    return found


def remove_worktree(git_dir: Path, path: Path) -> None:
    with repo_lock(git_dir):
        _drop_worktree(git_dir, path)


def _drop_worktree(git_dir: Path, path: Path) -> None:
    if path.exists():
        git("worktree", "remove", "--force", "--force", str(path), git_dir=git_dir, check=False)
        shutil.rmtree(path, ignore_errors=True)
    git("worktree", "prune", git_dir=git_dir)


def identity(author: Author) -> dict[str, str]:
    """Environment naming `author` as the author and Swarm as the committer."""
    return {
        "GIT_AUTHOR_NAME": author.name,
        "GIT_AUTHOR_EMAIL": author.email,
        "GIT_COMMITTER_NAME": "Swarm",
        "GIT_COMMITTER_EMAIL": "swarm@localhost",
    }


def commit_all(
    worktree: Path,
    git_dir: Path,
    *,
    message: str,
    author: Author,
    exclude: Sequence[str] = (),
) -> bool:
    """Commit every change in `worktree` (new, modified, deleted files) except the paths in
    `exclude` (what a setup step made); False if there was nothing to commit. A merge in
    progress (a conflict-resolution task) is always concluded with a merge commit."""
    git("add", "--all", "--", ".", cwd=worktree)
    if exclude:  # unstaged again (an exclude pathspec fails on a file .gitignore names)
        git("reset", "--quiet", "--", *(f":(literal){path}" for path in exclude), cwd=worktree)
    merging = git("rev-parse", "-q", "--verify", "MERGE_HEAD", cwd=worktree, check=False)
    in_merge = merging.returncode == 0
    if (
        not in_merge
        and git("diff", "--cached", "--quiet", cwd=worktree, check=False).returncode == 0
    ):
        return False
    with repo_lock(git_dir):
        git(
            "commit",
            "--quiet",
            "--no-verify",
            "--allow-empty",
            "-m",
            message,
            cwd=worktree,
            env=identity(author),
        )
    return True


def _diff(
    *options: str, base: str, head: str, cwd: Path | None = None, git_dir: Path | None = None
) -> str:
    """`git diff <options>` from `base` to `head`, neither ever read as an option or a path."""
    return git(
        "diff", *options, "--end-of-options", base, head, "--", cwd=cwd, git_dir=git_dir
    ).stdout


def changed_files(worktree: Path, base: str, head: str = "HEAD") -> list[str]:
    """Paths that differ between `base` and `head`, as git names them."""
    out = _diff("--name-only", "--no-renames", "-z", base=base, head=head, cwd=worktree)
    return [name for name in out.split("\0") if name]


ZERO = "0" * 40
"""As the expected old value of `update_ref`: the ref must not exist yet."""


class RefMoved(GitError):
    """A compare-and-swap `update_ref` found the ref somewhere else than expected."""


def update_ref(git_dir: Path, ref: str, new: str, *, old: str | None, reason: str) -> None:
    """Point `ref` at `new`, only if it still points at `old` (`ZERO`: does not exist; None:
    wherever it is). Callers hold `repo_lock`."""
    args = ["update-ref", "-m", reason, "--end-of-options", ref, new]
    if old is not None:
        args.append(old)
    proc = git(*args, git_dir=git_dir, check=False, retries=0)
    if proc.returncode != 0:
        if "but expected" in proc.stderr or "already exists" in proc.stderr:
            raise RefMoved(args, proc.returncode, proc.stderr)
        raise GitError(args, proc.returncode, proc.stderr)


def _git_answer(
    command: str, *options: str, revs: tuple[str, str], git_dir: Path
) -> subprocess.CompletedProcess[str]:
    """`git <command> <options> --end-of-options <revs>`, where exit code 1 is an answer
    (not an ancestor, a conflict), not a failure; any other failure raises."""
    proc = git(command, *options, "--end-of-options", *revs, git_dir=git_dir, check=False)
    if proc.returncode not in (0, 1):
        raise GitError([command, *revs], proc.returncode, proc.stderr)
    return proc


def is_ancestor(git_dir: Path, ancestor: str, descendant: str) -> bool:
    proc = _git_answer("merge-base", "--is-ancestor", revs=(ancestor, descendant), git_dir=git_dir)
    return proc.returncode == 0


@dataclass(frozen=True)
class MergeResult:
    head: str
    """The branch head after the merge (unchanged on a conflict)."""
    merged: bool
    """A merge commit was made now."""
    already: bool = False
    """`commit` was already part of the branch: nothing to do."""
    conflicts: tuple[str, ...] = ()


def merge_into(
    git_dir: Path, branch: str, commit: str, *, message: str, author: Author
) -> MergeResult:
    """Merge `commit` into `branch` with a merge commit (`--no-ff`), without a worktree:
    `merge-tree` computes the result, `commit-tree` records it and a compare-and-swap moves
    the branch. On a conflict nothing changes and the conflicting paths are returned.
    Idempotent: merging a commit the branch already holds changes nothing."""
    ref = f"refs/heads/{branch}"
    with repo_lock(git_dir):
        head = resolve_commit(git_dir, ref)
        if is_ancestor(git_dir, commit, head):
            return MergeResult(head=head, merged=False, already=True)
        made = _merge_commit(git_dir, head, commit, message=message, author=author)
        if isinstance(made, tuple):
            return MergeResult(head=head, merged=False, conflicts=made)
        merge = made
        update_ref(git_dir, ref, merge, old=head, reason=f"swarm: merge {commit[:12]}")
    return MergeResult(head=merge, merged=True)


def merge_commit(
    git_dir: Path, head: str, commit: str, *, message: str, author: Author
) -> str | None:
    """The merge commit of `commit` onto `head`, on no branch yet (`merge-tree`, then
    `commit-tree`), for a caller that keeps its own record of where the branch is and
    knows `commit` is not in it: it may make several, each onto the one before, and move
    the branch once (`move_branch`). None on a conflict or any git error (`merge_into`,
    which reads git's own head, says which). A merge commit whose move fails is left
    unreferenced (garbage for git's pruning)."""
    try:
        made = _merge_commit(git_dir, head, commit, message=message, author=author, retries=0)
    except GitError:
        return None
    return None if isinstance(made, tuple) else made


def move_branch(git_dir: Path, branch: str, new: str, *, old: str, reason: str) -> bool:
    """Compare-and-swap `branch` from `old` to `new` under the repository's lock; False,
    with the branch unchanged, when it is not at `old` (or missing, or git fails)."""
    try:
        with repo_lock(git_dir):
            update_ref(git_dir, f"refs/heads/{branch}", new, old=old, reason=reason)
    except GitError:
        return False
    return True


def _merge_commit(
    git_dir: Path,
    head: str,
    commit: str,
    *,
    message: str,
    author: Author,
    retries: int = 2,
) -> str | tuple[str, ...]:
    """The merge commit of `commit` into `head` (`merge-tree`, then `commit-tree`, tried
    `retries` more times on a busy lock), not yet on any branch; on a conflict, the
    conflicting paths instead."""
    proc = _git_answer(
        "merge-tree",
        "--write-tree",
        "--name-only",
        "--no-messages",
        "-z",
        revs=(head, commit),
        git_dir=git_dir,
    )
    tree, *paths = [part for part in proc.stdout.split("\0") if part]
    if proc.returncode == 1:
        return tuple(dict.fromkeys(paths))
    return git(
        "commit-tree",
        tree,
        "-p",
        head,
        "-p",
        commit,
        "-m",
        message,
        git_dir=git_dir,
        env=identity(author),
        retries=retries,
    ).stdout.strip()


def numstat(git_dir: Path, base: str, head: str) -> list[tuple[str, int | None, int | None]]:
    """(path, lines added, lines deleted) per changed file; None counts for binary files."""
    out = _diff("--numstat", "-z", "--no-renames", base=base, head=head, git_dir=git_dir)
    rows: list[tuple[str, int | None, int | None]] = []
    for record in out.split("\0"):
        if not record:
            continue
        added, deleted, path = record.split("\t", 2)
        rows.append(
            (path, int(added) if added != "-" else None, int(deleted) if deleted != "-" else None)
        )
    return rows


def diff(git_dir: Path, base: str, head: str, *, max_bytes: int) -> tuple[str, bool]:
    """The patch from `base` to `head` (binary files named, not shown), cut at `max_bytes`;
    returns it and whether it was cut."""
    out = _diff("--no-color", "--no-ext-diff", base=base, head=head, git_dir=git_dir)
    data = out.encode()
    if len(data) <= max_bytes:
        return out, False
    return data[:max_bytes].decode(errors="ignore"), True
