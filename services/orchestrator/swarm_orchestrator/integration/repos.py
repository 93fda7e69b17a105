"""A session's repository: a bare mirror in the workspace, made from a local path or a URL,
with the session's integration branch; and the setup files its worktrees get.

Adapters create their worktrees from the mirror, so the user's own repository is never
touched, and every task branch (`swarm/<session>/task/<key>`) and the integration branch
(`swarm/<session>/integration`) live in the mirror. Setup files (an untracked `.env`, say)
are copied from a local repository once, at creation, to `setup/<session>/` in the
workspace; adapters copy them into each worktree from there, so no secret travels in a
task message.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from swarm_common import git
from swarm_common.session_settings import MAX_SETUP_FILE_BYTES
from swarm_orchestrator.errors import Gone, Invalid
from swarm_orchestrator.integration.repo_policy import Source

__all__ = [
    "Diff",
    "Mirror",
    "check_branch",
    "check_ref",
    "copy_setup_files",
    "create_mirror",
    "remove_mirror",
    "setup_dir",
    "task_diff",
]

log = logging.getLogger(__name__)

_REF_RE = re.compile(r"^[A-Za-z0-9._/@^~{}-]+$")


@dataclass(frozen=True)
class Mirror:
    path: str
    """Relative to the workspace, as it travels in task messages."""
    base_commit: str


def check_ref(ref: str) -> str:
    """A revision to start from (`main`, `v1.2`, `HEAD~1`, a commit): nothing git could
    read as an option or a range."""
    if not ref or len(ref) > 200 or ref.startswith("-") or ".." in ref or not _REF_RE.match(ref):
        raise Invalid(f"{ref!r} is not a valid git ref", code="invalid_ref")
    return ref


_BRANCH_BAD = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|//|@\{")


def check_branch(name: str) -> str:
    """A branch Swarm will write (`git check-ref-format --branch` rules): no `..`, `//`,
    `@{`, control characters, space or `~^:?*[\\`; no component starting with `.` or
    ending in `.lock`; not `@`, not starting with `-` or `/`, not ending with `/` or `.`."""
    parts = name.split("/")
    if (
        not name
        or len(name) > 200
        or name == "@"
        or name.startswith(("-", "/"))
        or name.endswith(("/", "."))
        or _BRANCH_BAD.search(name)
        or any(p.startswith(".") or p.endswith(".lock") for p in parts)
    ):
        raise Invalid(f"{name!r} is not a valid branch name", code="invalid_ref")
    return name


async def create_mirror(
    *,
    workspace: Path,
    session_id: uuid.UUID,
    source: Source,
    public: str,
    env: dict[str, str],
    base_ref: str,
    integration_branch: str,
    timeout_s: float,
) -> Mirror:
    """Clone `source` (accepted by the repository policy) bare into the workspace, resolve
    `base_ref` there and start the integration branch at it. `public` is how the repository
    is shown: without credentials; `env` the policy's `git_env`."""
    relative = f"repos/{session_id}.git"
    dest = workspace / relative
    repo = source.clone
    try:
        await asyncio.to_thread(git.clone_bare, repo, dest, timeout=timeout_s, env=env)
    except git.GitError as exc:
        detail = _without_secrets(exc.stderr[:300], repo, public)
        if not source.local:  # git's words would tell a closed port from a live service
            log.info("clone failed", extra={"repo": public, "error": detail})
            detail = "unreachable, not a repository, or it needs credentials Swarm lacks"
        raise Invalid(f"cannot clone {public}: {detail}", code="repo_unavailable") from None
    try:
        if public != repo:  # worktrees share the mirror's config: keep no token in it
            await asyncio.to_thread(git.git, "remote", "set-url", "origin", public, git_dir=dest)
        commit = await asyncio.to_thread(git.resolve_commit, dest, base_ref)
    except git.GitError:
        await remove_mirror(workspace=workspace, path=relative)
        raise Invalid(f"{base_ref!r} names no commit in {public}", code="unknown_ref") from None
    await asyncio.to_thread(
        git.update_ref,
        dest,
        f"refs/heads/{integration_branch}",
        commit,
        old=None,
        reason="swarm: integration branch",
    )
    return Mirror(path=relative, base_commit=commit)


def setup_dir(workspace: Path, session_id: uuid.UUID) -> Path:
    return workspace / "setup" / str(session_id)


def copy_setup_files(
    *, workspace: Path, session_id: uuid.UUID, source: Source, files: list[str]
) -> None:
    """Copy each of `files` (relative paths, already checked) from the local repository
    `source` (accepted by the repository policy, so under an allowed root) to the session's
    setup folder. Each must be a regular file inside the repository (a symlink pointing out
    of it is refused) and at most `MAX_SETUP_FILE_BYTES`."""
    if not files:
        return
    if source.folder is None:
        raise Invalid(
            "setup files can only be copied from a local repository with a working folder",
            code="invalid_setup",
        )
    root = source.folder
    repo = str(root)
    dest = setup_dir(workspace, session_id)
    for name in files:
        found = (root / name).resolve()
        if not found.is_relative_to(root) or found.is_relative_to(root / ".git"):
            raise Invalid(f"setup file {name} lies outside the repository", code="invalid_setup")
        if not found.is_file():
            raise Invalid(f"setup file {name} is not a file in {repo}", code="invalid_setup")
        if found.stat().st_size > MAX_SETUP_FILE_BYTES:
            raise Invalid(f"setup file {name} is larger than 1 MiB", code="invalid_setup")
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(found, target)
        target.chmod(0o600)


def _without_secrets(text: str, repo: str, public: str) -> str:
    text = text.replace(repo, public)
    userinfo = repo.partition("://")[2].rpartition("@")[0] if "://" in repo else ""
    for secret in {userinfo, *userinfo.split(":")} - {""}:
        text = text.replace(secret, "***")
    return text


async def remove_mirror(*, workspace: Path, path: str) -> None:
    await asyncio.to_thread(shutil.rmtree, workspace / path, True)


@dataclass(frozen=True)
class Diff:
    files: list[tuple[str, int | None, int | None]]
    patch: str
    truncated: bool


async def task_diff(*, workspace: Path, mirror: str, base: str, head: str, max_bytes: int) -> Diff:
    """`base..head` in the session's mirror: line counts per file and the patch."""
    git_dir = workspace / mirror

    def read() -> Diff:
        files = git.numstat(git_dir, base, head)
        patch, truncated = git.diff(git_dir, base, head, max_bytes=max_bytes)
        return Diff(files=files, patch=patch, truncated=truncated)

    try:
        return await asyncio.to_thread(read)
    except git.GitError as exc:
        raise Gone(f"the task's commits are gone from the repository: {exc.stderr[:200]}") from None
