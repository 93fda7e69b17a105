"""Database rows to API bodies."""

from __future__ import annotations

from collections.abc import Iterable

from swarm_orchestrator.api.schemas import SessionPublic, TaskPublic
from swarm_orchestrator.db.models import Session, Task
from swarm_orchestrator.graph.progress import Spend
from swarm_orchestrator.graph.scheduler import branch_name, integration_branch

__all__ = ["session_public", "task_public"]

_OPEN = {"pending", "queued", "running", "awaiting_approval"}


def session_public(session: Session, counts: dict[str, int]) -> SessionPublic:
    total = sum(counts.values())
    done = total > 0 and not any(counts.get(s) for s in _OPEN)
    return SessionPublic.model_validate(session).model_copy(
        update={
            "counts": counts,
            "total": total,
            "done": done and session.finished_at is not None,
            "integration_branch": integration_branch(session.id),
        }
    )


def task_public(
    task: Task, depends_on: Iterable[str] = (), spend: Spend | None = None
) -> TaskPublic:
    update: dict[str, object] = {
        "depends_on": list(depends_on),
        "branch": branch_name(task.session_id, task.key),
    }
    if spend is not None:
        update.update(usage=spend.usage or None, tokens=spend.tokens, cost_usd=spend.cost_usd)
    return TaskPublic.model_validate(task).model_copy(update=update)
