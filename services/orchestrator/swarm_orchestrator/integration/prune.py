"""Pruning what ended attempts left in the shared workspace.

An adapter removes its worktree when an attempt ends; one that died (`kill -9`, a lost
machine) leaves it behind. `prune_workspace` removes every worktree (and private HOME) under
`worktrees/<session>/<key>-<attempt>` whose attempt is no longer queued or running, lets git
forget them, and for finished sessions deletes task branches whose work the integration
branch already holds (the merge commits keep it reachable). Work of unmerged tasks (failed,
conflicting) keeps its branch for people to look at.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import uuid
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common import git
from swarm_common.messages import utcnow
from swarm_common.states import AttemptStatus
from swarm_orchestrator.db.models import Attempt, Session, Task
from swarm_orchestrator.graph import scheduler

__all__ = ["prune_workspace"]

log = logging.getLogger(__name__)

BRANCH_PRUNE_WINDOW = timedelta(days=2)
"""Finished sessions younger than this get their merged task branches deleted."""


async def prune_workspace(
    sessionmaker: async_sessionmaker[AsyncSession], *, workspace: Path
) -> int:
    """Remove leftovers; return how many worktrees and branches went."""
    removed = 0
    root = workspace / "worktrees"
    folders = await asyncio.to_thread(_session_folders, root)
    for session_id, folder in folders:
        async with sessionmaker() as db:
            session = await db.get(Session, session_id)
            active = set(
                (
                    await db.execute(
                        select(Task.key, Attempt.number)
                        .join(Attempt, Attempt.task_id == Task.id)
                        .where(
                            Task.session_id == session_id,
                            Attempt.status.in_([AttemptStatus.QUEUED, AttemptStatus.RUNNING]),
                        )
                    )
                ).all()
            )
        mirror = workspace / session.repo_path if session is not None else None
        removed += await asyncio.to_thread(
            _prune_folder, workspace, folder, mirror, {f"{k}-{n}" for k, n in active}
        )
    async with sessionmaker() as db:
        finished = (
            await db.scalars(
                select(Session).where(
                    Session.finished_at.is_not(None),
                    Session.finished_at > utcnow() - BRANCH_PRUNE_WINDOW,
                )
            )
        ).all()
    for session in finished:
        removed += await asyncio.to_thread(
            _prune_branches, workspace / session.repo_path, session.id
        )
    if removed:
        log.info("workspace pruned", extra={"removed": removed})
    return removed


def _session_folders(root: Path) -> list[tuple[uuid.UUID, Path]]:
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        try:
            found.append((uuid.UUID(entry.name), entry))
        except ValueError:
            continue
    return found


def _prune_folder(workspace: Path, folder: Path, mirror: Path | None, keep: set[str]) -> int:
    removed = 0
    usable = mirror is not None and mirror.is_dir()
    for entry in sorted(folder.iterdir()):
        if entry.name in keep:
            continue
        if usable:
            assert mirror is not None
            git.remove_worktree(mirror, entry)
        shutil.rmtree(entry, ignore_errors=True)
        shutil.rmtree(workspace / "homes" / folder.name / entry.name, ignore_errors=True)
        removed += 1
        log.info("leftover worktree removed", extra={"path": str(entry)})
    if usable:
        assert mirror is not None
        with git.repo_lock(mirror):
            git.git("worktree", "prune", git_dir=mirror, check=False)
    if not keep:
        for empty in (folder, workspace / "homes" / folder.name):
            with contextlib.suppress(OSError):  # not empty (an attempt just began), or gone
                empty.rmdir()
    return removed


def _prune_branches(mirror: Path, session_id: uuid.UUID) -> int:
    if not mirror.is_dir():
        return 0
    integration = scheduler.integration_branch(session_id)
    if git.branch_head(mirror, integration) is None:
        return 0
    with git.repo_lock(mirror):
        merged = git.git(
            "for-each-ref",
            "--format=%(refname)",
            f"--merged=refs/heads/{integration}",
            f"refs/heads/swarm/{session_id}/task/",
            git_dir=mirror,
        ).stdout.split()
        for ref in merged:
            git.git("update-ref", "-d", ref, git_dir=mirror)
    return len(merged)
