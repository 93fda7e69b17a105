"""Worktrees of the session's mirror: one per attempt, on the task's branch, from the commit
the task message names; committed with the task's persona as author, then given back (the
branch keeps the work). A worktree given back is cleaned and reused by a later attempt
(`pool`): preparing one moves a clean worktree to the task's commit, touching only the
files that differ, and nothing is removed while a slot waits. Each prepare logs one
`worktree ready` line (`elapsed_ms`, `reused`).

An attempt that did not succeed (failed, rate limited, out of quota, cancelled by a person)
still commits what its agent changed, as work in progress: its subject starts with `wip:`
and its `Swarm-Status` trailer says how it ended. The result reports it (`commit`), so the
orchestrator can show it, and an attempt that takes over (a failover to another agent kind)
can start from it; a later attempt that does not start from it never merges it."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from swarm_adapter.escape import status_entries
from swarm_adapter.pool import POOL_SIZE, Pool, trash
from swarm_common import git
from swarm_common.messages import TaskMessage
from swarm_common.redaction import KNOWN_BYTES
from swarm_common.redaction import REDACTED as _REDACTED

REDACTED = _REDACTED.encode()

__all__ = ["Commit", "Scrubbed", "Worktrees", "WorktreeError"]

log = logging.getLogger(__name__)


class WorktreeError(RuntimeError):
    """The worktree could not be prepared or committed; the message says why."""


@dataclass(frozen=True)
class Commit:
    sha: str
    changed_files: list[str]


class Worktrees:
    def __init__(self, workspace: Path, *, pool_size: int = POOL_SIZE) -> None:
        self.workspace = workspace.resolve()
        self.pool = Pool(self.workspace, size=pool_size)
        """Prepared worktrees of each repository, reused (`pool_size` kept ready per
        repository; 0: every attempt gets a new one)."""

    def repo(self, message: TaskMessage) -> Path:
        """The session's bare mirror; it must lie inside the workspace."""
        repo = (self.workspace / message.repo).resolve()
        if not repo.is_relative_to(self.workspace / "repos") or not repo.is_dir():
            raise WorktreeError(f"repository {message.repo!r} is not in the workspace")
        return repo

    def path(self, message: TaskMessage) -> Path:
        return self._per_attempt("worktrees", message)

    def home(self, message: TaskMessage) -> Path:
        """A private HOME for the agent, outside the worktree so it is never committed."""
        return self._per_attempt("homes", message)

    def _per_attempt(self, kind: str, message: TaskMessage) -> Path:
        session = self.workspace / kind / str(message.session_id)
        return session / f"{message.task_key}-{message.attempt}"

    def artifacts(self, message: TaskMessage) -> Path:
        session = self.workspace / "artifacts" / str(message.session_id)
        return session / message.task_key / f"attempt-{message.attempt}"

    async def prepare(self, message: TaskMessage) -> Path:
        """The attempt's worktree at `path(message)`, on its branch reset to its base commit,
        as clean as a new one; its HOME and artifacts folders. Raises `WorktreeError`."""
        started = time.perf_counter()
        repo, path = self.repo(message), self.path(message)
        try:
            reused = await asyncio.to_thread(self._prepare, message, repo, path)
        except (git.GitError, TimeoutError, OSError) as exc:
            raise WorktreeError(f"cannot create the worktree: {exc}") from None
        log.info(
            "worktree ready",
            extra={
                "session_id": str(message.session_id),
                "task_id": str(message.task_id),
                "task_key": message.task_key,
                "attempt": message.attempt,
                "elapsed_ms": round((time.perf_counter() - started) * 1000, 2),
                "reused": reused,
            },
        )
        return path

    def _prepare(self, message: TaskMessage, repo: Path, path: Path) -> bool:
        reused = self.pool.take(repo, path, branch=message.branch, commit=message.base_commit)
        home = self.home(message)
        if home.exists():  # a crashed run of this attempt left it
            shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        (home / "tmp").mkdir()  # its TMPDIR (`runners.base.task_env`)
        self.artifacts(message).mkdir(parents=True, exist_ok=True)
        return reused

    async def commit(
        self,
        message: TaskMessage,
        path: Path,
        *,
        status: str,
        exclude: Sequence[str] = (),
        changes: Sequence[str] | None = None,
    ) -> Commit:
        """Commit whatever the agent changed (but not the paths in `exclude`, which setup
        made); return the branch head and the files that differ from the base commit.
        `changes`: what `scrub` listed just before (`git status`); when none of it is to
        be committed (and no merge is in progress), git is not asked to commit."""
        repo = self.repo(message)
        author_name = message.role or message.agent
        subject = message.title if status == "succeeded" else f"wip: {message.title}"
        text = "\n".join(
            [
                subject[:200],
                "",
                f"Swarm-Task: {message.task_key}",
                f"Swarm-Session: {message.session_id}",
                f"Swarm-Attempt: {message.attempt}",
                f"Swarm-Agent: {message.agent}",
                f"Swarm-Status: {status}",
            ]
        )
        author = git.Author(name=f"{author_name} (swarm)", email=f"{message.agent}@swarm.invalid")
        persona = message.persona or {}
        if persona.get("author_name") and persona.get("author_email"):
            author = git.Author(name=persona["author_name"], email=persona["author_email"])

        def commit() -> Commit:
            if changes is None or _to_commit(path, changes, exclude):
                _commit_all(path, repo, message=text, author=author, exclude=exclude)
            head = git.head_of(path) or git.git("rev-parse", "HEAD", cwd=path).stdout.strip()
            if head == message.base_commit:  # nothing committed, by the agent or here
                return Commit(sha=head, changed_files=[])
            return Commit(sha=head, changed_files=git.changed_files(path, message.base_commit))

        try:
            return await asyncio.to_thread(commit)
        except (git.GitError, TimeoutError) as exc:
            raise WorktreeError(f"cannot commit the agent's work: {exc}") from None

    async def restore_branch(self, message: TaskMessage) -> None:
        """Put the task's branch back on the commit the attempt started from (its work was
        refused), by compare-and-swap under the repository's lock. Raises `WorktreeError`."""
        repo = self.repo(message)
        ref = f"refs/heads/{message.branch}"

        def restore() -> None:
            with git.repo_lock(repo):
                head = git.branch_head(repo, message.branch)
                if head is not None and head != message.base_commit:
                    git.update_ref(
                        repo, ref, message.base_commit, old=head, reason="swarm: work refused"
                    )

        try:
            await asyncio.to_thread(restore)
        except (git.GitError, TimeoutError) as exc:
            raise WorktreeError(f"cannot restore the branch: {exc}") from None

    async def scrub(
        self, path: Path, secrets: list[str], *, listed: list[str] | None = None
    ) -> Scrubbed:
        """Replace `secrets`, and every well-known key format, in every file the agent
        changed, before anything is committed; the files that held one, and what changed
        (for `commit`). `listed`: the worktree's `escape.status_entries` read just before
        (else read here)."""
        encoded = [s.encode() for s in secrets if s]
        return await asyncio.to_thread(_scrub, path, encoded, listed)

    async def remove(self, message: TaskMessage) -> None:
        """The attempt is over: its worktree goes back to the pool (cleaned in the
        background) and its HOME is deleted in the background; both paths are free when
        this returns, in a few milliseconds."""
        await asyncio.to_thread(self._give_back, message)

    def _give_back(self, message: TaskMessage) -> None:
        self.pool.give_back(self.repo(message), self.path(message), base=message.base_commit)
        trash(self.workspace, self.home(message), self.pool.deleter)

    async def idle(self, timeout_s: float | None = None) -> bool:
        """Wait for the background work given so far (cleaning, removing); False on the
        timeout. For a clean stop, and for tests."""

        def wait() -> bool:
            deadline = None if timeout_s is None else time.monotonic() + timeout_s
            workers = (self.pool.maker, self.pool.cleaner, self.pool.deleter)
            for worker in (*workers, *workers):  # a job may hand work to another
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not worker.wait(left):
                    return False
            return True

        return await asyncio.to_thread(wait)

    def sweep(self) -> None:
        """Schedule the pools' upkeep (`Pool.sweep`): for a periodic loop."""
        self.pool.sweep()


def _commit_all(
    worktree: Path, repo: Path, *, message: str, author: git.Author, exclude: Sequence[str]
) -> bool:
    """`git.commit_all` in two git commands fewer (the agent's path runs it every time): a
    merge in progress is read from the worktree's own `MERGE_HEAD` file, and "nothing to
    commit" from `git commit` itself. False when there was nothing to commit."""
    git.git("add", "--all", "--", ".", cwd=worktree)
    if exclude:  # unstaged again (an exclude pathspec fails on a file .gitignore names)
        git.git("reset", "--quiet", "--", *(f":(literal){p}" for p in exclude), cwd=worktree)
    admin = git.pointed_git_dir(worktree)
    in_merge = admin is not None and (admin / "MERGE_HEAD").is_file()
    args = ["commit", "--quiet", "--no-verify", "--untracked-files=no", "-m", message]
    if in_merge:  # a resolution task's merge is concluded even when it changes nothing
        args.append("--allow-empty")
    with git.repo_lock(repo):
        proc = git.git(*args, cwd=worktree, env=git.identity(author), check=False)
    if proc.returncode == 0:
        return True
    said = proc.stdout + proc.stderr
    if proc.returncode == 1 and not in_merge and ("nothing" in said or "no changes" in said):
        return False
    raise git.GitError(args, proc.returncode, proc.stderr or proc.stdout)


MAX_SCRUB_BYTES = 256 * 1024 * 1024
"""Files up to this size are redacted in memory; a larger one holding a secret is refused."""
_SCAN_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class Scrubbed:
    files: list[str]
    """The files that held a secret (redacted now)."""
    changes: list[str]
    """Every entry of `escape.status_entries` (`git status --porcelain -z`), as git wrote it."""


def _scrub(worktree: Path, secrets: list[bytes], listed: list[str] | None) -> Scrubbed:
    try:
        entries = listed if listed is not None else status_entries(worktree)
    except git.GitError as exc:
        raise WorktreeError(f"cannot list the agent's changes: {exc}") from None
    scrubbed = []
    for name in _status_paths(entries):
        try:
            if _scrub_file(worktree / name, secrets):
                scrubbed.append(name)
        except OSError as exc:
            raise WorktreeError(f"cannot check {name} for secrets: {exc.strerror}") from None
    return Scrubbed(files=scrubbed, changes=entries)


def _to_commit(worktree: Path, changes: Sequence[str], exclude: Sequence[str]) -> bool:
    """Whether a commit may hold something: a change that is not excluded, or a merge in
    progress (concluded even when it changes nothing)."""
    admin = git.pointed_git_dir(worktree)
    if admin is None or (admin / "MERGE_HEAD").exists():
        return True
    folders = [path.rstrip("/") for path in exclude]
    for name in _status_paths(changes):
        if not any(name == f or name.startswith(f + "/") for f in folders):
            return True
    return False


def _status_paths(entries: Sequence[str]) -> list[str]:
    """The paths of `git status --porcelain -z` entries: `XY path`, and after a rename or
    a copy (`R`, `C`) its source path as an entry of its own."""
    paths = []
    source_next = False
    for entry in entries:
        if source_next:
            paths.append(entry)
            source_next = False
            continue
        paths.append(entry[3:])
        source_next = entry[:1] in ("R", "C")
    return paths


def _scrub_file(target: Path, secrets: list[bytes]) -> bool:
    if not target.is_file() or target.is_symlink():
        return False
    if target.stat().st_size > MAX_SCRUB_BYTES:
        if secrets and _holds(target, secrets):
            raise WorktreeError(f"{target.name} is too large to redact and holds a secret")
        return False
    data = target.read_bytes()
    cleaned = data
    for secret in secrets:
        cleaned = cleaned.replace(secret, REDACTED)
    cleaned = KNOWN_BYTES.sub(REDACTED, cleaned)
    if cleaned == data:
        return False
    target.write_bytes(cleaned)
    return True


def _holds(target: Path, secrets: list[bytes]) -> bool:
    """Whether a file holds a secret, read in chunks that overlap by a secret's length."""
    overlap = max(len(s) for s in secrets) - 1
    previous = b""
    with open(target, "rb") as handle:
        while chunk := handle.read(_SCAN_CHUNK):
            window = previous + chunk
            if any(secret in window for secret in secrets):
                return True
            previous = window[-overlap:] if overlap > 0 else b""
    return False
