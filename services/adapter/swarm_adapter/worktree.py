"""Worktrees of the session's mirror: one per attempt, on the task's branch, from the commit
the task message names; committed with the task's persona as author, then removed (the
branch keeps the work).

An attempt that did not succeed (failed, rate limited, out of quota, cancelled by a person)
still commits what its agent changed, as work in progress: its subject starts with `wip:`
and its `Swarm-Status` trailer says how it ended. The result reports it (`commit`), so the
orchestrator can show it, and an attempt that takes over (a failover to another agent kind)
can start from it; a later attempt that does not start from it never merges it."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from swarm_common import git
from swarm_common.messages import TaskMessage
from swarm_common.redaction import KNOWN_BYTES
from swarm_common.redaction import REDACTED as _REDACTED

REDACTED = _REDACTED.encode()

__all__ = ["Commit", "Worktrees", "WorktreeError"]


class WorktreeError(RuntimeError):
    """The worktree could not be prepared or committed; the message says why."""


@dataclass(frozen=True)
class Commit:
    sha: str
    changed_files: list[str]


class Worktrees:
    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace.resolve()

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
        repo, path = self.repo(message), self.path(message)
        try:
            await asyncio.to_thread(
                git.add_worktree, repo, path, branch=message.branch, commit=message.base_commit
            )
        except (git.GitError, TimeoutError) as exc:
            raise WorktreeError(f"cannot create the worktree: {exc}") from None
        await asyncio.to_thread(self._fresh_folders, message)
        return path

    def _fresh_folders(self, message: TaskMessage) -> None:
        home = self.home(message)
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        self.artifacts(message).mkdir(parents=True, exist_ok=True)

    async def commit(
        self, message: TaskMessage, path: Path, *, status: str, exclude: Sequence[str] = ()
    ) -> Commit:
        """Commit whatever the agent changed (but not the paths in `exclude`, which setup
        made); return the branch head and the files that differ from the base commit."""
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
        try:
            await asyncio.to_thread(
                git.commit_all, path, repo, message=text, author=author, exclude=exclude
            )
            head = (await asyncio.to_thread(git.git, "rev-parse", "HEAD", cwd=path)).stdout
            files = await asyncio.to_thread(git.changed_files, path, message.base_commit)
        except (git.GitError, TimeoutError) as exc:
            raise WorktreeError(f"cannot commit the agent's work: {exc}") from None
        return Commit(sha=head.strip(), changed_files=files)

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

    async def scrub(self, path: Path, secrets: list[str]) -> list[str]:
        """Replace `secrets`, and every well-known key format, in every file the agent
        changed, before anything is committed; return the files that held one."""
        return await asyncio.to_thread(_scrub, path, [s.encode() for s in secrets if s])

    async def remove(self, message: TaskMessage) -> None:
        await asyncio.to_thread(git.remove_worktree, self.repo(message), self.path(message))
        await asyncio.to_thread(shutil.rmtree, self.home(message), True)


MAX_SCRUB_BYTES = 256 * 1024 * 1024
"""Files up to this size are redacted in memory; a larger one holding a secret is refused."""
_SCAN_CHUNK = 8 * 1024 * 1024


def _scrub(worktree: Path, secrets: list[bytes]) -> list[str]:
    try:
        listing = git.git(
            "status", "--porcelain", "-z", "--untracked-files=all", cwd=worktree
        ).stdout
    except git.GitError as exc:
        raise WorktreeError(f"cannot list the agent's changes: {exc}") from None
    scrubbed = []
    for entry in filter(None, listing.split("\0")):
        name = entry[3:]
        try:
            if _scrub_file(worktree / name, secrets):
                scrubbed.append(name)
        except OSError as exc:
            raise WorktreeError(f"cannot check {name} for secrets: {exc.strerror}") from None
    return scrubbed


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
