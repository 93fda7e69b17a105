"""A session as a task graph file: what `POST /v1/sessions` takes, so that submitting it
makes the same graph again (`GET /v1/sessions/{id}/graph`, `swarm export`).

The file holds the session's title, goal, repository, base, target branch and settings,
and its tasks as submitted (each with only the fields that differ from their defaults),
sorted by key. Each task also carries its `status`, `merge_status` and `result` (and
`assigned_persona`, the persona it ran as, when it had one) as read-only fields
(`swarm_common.specs.READ_ONLY_TASK_FIELDS`), which a submission ignores. Tasks Swarm made
itself (conflict resolutions) are left out; a status filter leaves out the other tasks and
the dependencies on them, so what is exported can always be submitted.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common.specs import TaskSpec
from swarm_orchestrator.db.models import Session, Task

__all__ = ["export_graph"]


async def export_graph(
    db: AsyncSession, session: Session, *, statuses: frozenset[str] | None = None
) -> dict[str, Any]:
    rows = (
        await db.scalars(
            select(Task)
            .where(
                Task.session_id == session.id,
                Task.resolves_task_id.is_(None),
                Task.kind == "work",
            )
            .order_by(Task.key)
        )
    ).all()
    kept = [t for t in rows if statuses is None or t.status in statuses]
    keys = {t.key for t in kept}
    graph: dict[str, Any] = {
        "title": session.title,
        "goal": session.goal,
        "repo": session.repo,
        "base_ref": session.base_ref,
        "target_branch": session.target_branch,
        "settings": session.settings or {},
        "tasks": [_task(t, keys) for t in kept],
    }
    return {k: v for k, v in graph.items() if v is not None}


def _task(task: Task, keys: set[str]) -> dict[str, Any]:
    spec = TaskSpec.model_validate(task.spec)
    spec.depends_on = [d for d in spec.depends_on if d in keys]
    body = spec.model_dump(mode="json", exclude_defaults=True)
    ran = {"status": task.status, "merge_status": task.merge_status, "result": task.result}
    if task.spec.get("assigned_persona"):
        ran["assigned_persona"] = task.spec["assigned_persona"]
    return {**body, **ran}
