"""Dry runs: a session with `settings.dry_run` runs its agents and gates as usual, but its
merge queue merges nothing into the integration branch, and its checkpoints move no target
branch, make no tag and push nothing (`integration.checkpoints`).

Each task's work is merged instead into the session's dry-run branch
(`swarm/<session>/dry-run`, in the orchestrator's mirror only), in the order tasks finish, as
the integration branch would have had it; `tasks.would_merge` records what it would have
merged: its commit and base, the files it changes with their lines, whether it merges
cleanly after the work of the tasks before it (and the conflicting files when not), and any
session policy it crosses (a dry run reports them and does not wait for approval). Its merge
status is `dry_run`, which lets its dependents run (it settles like merged work) without
claiming a merge; they start from the dry-run branch's head, so they build on their parents'
work as they would for real (`scheduler.work_head`).

The merge itself is the merge queue's (`integration.merges`, under the session's lock, git
first: a crash after the dry-run branch moved is found again). `report` reads it back for
`GET /v1/sessions/{id}/dry-run`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common import git
from swarm_orchestrator.db.models import Session, Task
from swarm_orchestrator.integration.policies import Change, Violation

__all__ = ["MAX_FILES_SHOWN", "Rehearsal", "branch", "rehearse", "report", "would_merge"]

MAX_FILES_SHOWN = 500
"""Files a task's report lists (its diffstat counts them all)."""


def branch(session_id: uuid.UUID) -> str:
    return f"swarm/{session_id}/dry-run"


@dataclass(frozen=True)
class Rehearsal:
    """How merging a task's commit into the dry-run branch went."""

    into: str
    """The dry-run head it was merged into."""
    head: str | None = None
    """The head after it: None when it conflicted or failed."""
    conflicts: tuple[str, ...] = ()
    error: str = ""


def rehearse(
    mirror: Path,
    *,
    session_id: uuid.UUID,
    start: str,
    commit: str,
    message: str,
    author: git.Author,
) -> Rehearsal:
    """Merge `commit` into the session's dry-run branch (made at `start` when missing) as the
    merge queue would into the integration branch. Blocking; raises transient git errors."""
    name = branch(session_id)
    try:
        if git.branch_head(mirror, name) is None:
            with git.repo_lock(mirror):
                if git.branch_head(mirror, name) is None:
                    git.update_ref(
                        mirror, f"refs/heads/{name}", start, old=git.ZERO, reason="swarm: dry run"
                    )
        result = git.merge_into(mirror, name, commit, message=message, author=author)
    except git.GitError as exc:
        if exc.transient:
            raise
        return Rehearsal(into=start, error=exc.stderr[:2000] or str(exc))
    if result.conflicts:
        return Rehearsal(into=start, conflicts=result.conflicts)
    return Rehearsal(into=start, head=result.head)


def would_merge(
    *,
    commit: str,
    change: Change | None,
    rehearsal: Rehearsal,
    violations: list[Violation],
    read_error: str = "",
) -> dict[str, Any]:
    """What a dry run's task would have merged, as `tasks.would_merge` keeps it."""
    data: dict[str, Any] = {
        "commit": commit,
        "base": change.base if change is not None else None,
        "into": rehearsal.into,
        "clean": rehearsal.head is not None,
        "conflicts": list(rehearsal.conflicts[:MAX_FILES_SHOWN]),
        "head": rehearsal.head,
    }
    if change is not None:
        data["diffstat"] = change.diffstat()
        data["files"] = change.file_rows(MAX_FILES_SHOWN)
    if violations:
        data["violations"] = [v.as_dict() for v in violations]
    if rehearsal.error or read_error:
        data["error"] = (rehearsal.error or read_error)[:2000]
    return data


async def report(db: AsyncSession, session: Session) -> list[Row[Any]]:
    """The session's work tasks (`id`, `key`, `title`, `status`, `merge_status`) with what
    each would have merged (`would_merge`: None until its work reached the merge queue), in
    the order they were merged, then the rest."""
    rows = await db.execute(
        select(Task.id, Task.key, Task.title, Task.status, Task.merge_status, Task.would_merge)
        .where(Task.session_id == session.id, Task.kind == "work")
        .order_by(Task.merge_seq.asc().nulls_last(), Task.created_at, Task.key)
    )
    return list(rows.all())
