"""A session's repository: a bare mirror in the workspace, made from a local path or a URL.

Adapters create their worktrees from the mirror, so the user's own repository is never
touched, and every task branch (`swarm/<session>/task/<key>`) lives in the mirror.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from swarm_common import git
from swarm_common.settings import strip_credentials
from swarm_orchestrator.errors import Invalid

__all__ = ["Mirror", "check_ref", "check_repo", "create_mirror", "remove_mirror"]

_URL_RE = re.compile(r"^(https?|ssh|git|file)://[^\s]+$")
_SCP_RE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+$")
_REF_RE = re.compile(r"^[A-Za-z0-9._/@^~{}-]+$")


@dataclass(frozen=True)
class Mirror:
    path: str
    """Relative to the workspace, as it travels in task messages."""
    base_commit: str


def check_repo(repo: str) -> str:
    """Accept an absolute local path to a git repository or a git URL; refuse anything that
    git could read as an option or a remote helper (`ext::`)."""
    if repo.startswith("-") or any(c in repo for c in "\0\n\r"):
        raise Invalid("repo must be a path or a git URL", code="invalid_repo")
    if _URL_RE.match(repo) or _SCP_RE.match(repo):
        return repo
    path = Path(repo)
    if not path.is_absolute():
        raise Invalid("a local repo must be an absolute path", code="invalid_repo")
    try:
        exists = path.exists()
    except OSError as exc:  # a name too long, a loop of links: not a repository
        raise Invalid(f"repo is not a usable path: {exc.strerror}", code="invalid_repo") from None
    if not exists:
        raise Invalid(f"repository {repo} does not exist", code="repo_not_found")
    return repo


def check_ref(ref: str) -> str:
    if not ref or len(ref) > 200 or ref.startswith("-") or ".." in ref or not _REF_RE.match(ref):
        raise Invalid(f"{ref!r} is not a valid git ref", code="invalid_ref")
    return ref


async def create_mirror(
    *, workspace: Path, session_id: uuid.UUID, repo: str, base_ref: str, timeout_s: float
) -> Mirror:
    """Clone `repo` bare into the workspace and resolve `base_ref` there."""
    relative = f"repos/{session_id}.git"
    dest = workspace / relative
    public = strip_credentials(repo)
    try:
        await asyncio.to_thread(git.clone_bare, repo, dest, timeout=timeout_s)
    except git.GitError as exc:
        detail = _without_secrets(exc.stderr[:300], repo, public)
        raise Invalid(f"cannot clone {public}: {detail}", code="repo_unavailable") from None
    try:
        if public != repo:  # worktrees share the mirror's config: keep no token in it
            await asyncio.to_thread(git.git, "remote", "set-url", "origin", public, git_dir=dest)
        commit = await asyncio.to_thread(git.resolve_commit, dest, base_ref)
    except git.GitError:
        await remove_mirror(workspace=workspace, path=relative)
        raise Invalid(f"{base_ref!r} names no commit in {public}", code="unknown_ref") from None
    return Mirror(path=relative, base_commit=commit)


def _without_secrets(text: str, repo: str, public: str) -> str:
    text = text.replace(repo, public)
    userinfo = repo.partition("://")[2].rpartition("@")[0] if "://" in repo else ""
    for secret in {userinfo, *userinfo.split(":")} - {""}:
        text = text.replace(secret, "***")
    return text


async def remove_mirror(*, workspace: Path, path: str) -> None:
    await asyncio.to_thread(shutil.rmtree, workspace / path, True)
