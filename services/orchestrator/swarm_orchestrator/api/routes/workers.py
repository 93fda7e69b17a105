"""`/v1/workers`: the adapters the orchestrator has heard from, whether they are alive,
what each runs now, and whether its agent kind is paused for its provider's limits
(`graph.pauses`).

A token without a tenant sees every adapter. A tenant's token sees only the adapters running
its tenant's tasks now, only those tasks, and neither host nor pid (`""` and null): where
and how the deployment runs is not a tenant's to know. It learns nothing it could not from
its own tasks, whose attempts name their worker.
"""

from __future__ import annotations

from collections import defaultdict

from fastapi import APIRouter
from sqlalchemy import select

from swarm_common.states import AttemptStatus
from swarm_orchestrator.access.tokens import Principal
from swarm_orchestrator.api.deps import DbDep, StateDep
from swarm_orchestrator.api.schemas import WorkerPublic, WorkerTask, error_responses
from swarm_orchestrator.api.security import Viewer
from swarm_orchestrator.db.models import Attempt, Session, Task, Worker
from swarm_orchestrator.graph import pauses
from swarm_orchestrator.graph.pauses import Pause

router = APIRouter(prefix="/v1/workers", tags=["workers"])


_ERRORS = error_responses()


@router.get("", responses=_ERRORS)
async def list_workers(db: DbDep, state: StateDep, who: Viewer) -> list[WorkerPublic]:
    """Every adapter; for a tenant's token, those running its tasks, without host and pid."""
    running = await _running(db, who)
    stmt = select(Worker).order_by(Worker.name)
    if who.tenant is not None:
        stmt = stmt.where(Worker.name.in_(list(running)))
    rows = (await db.scalars(stmt)).all()
    if not rows:
        return []
    pipe = state.redis.pipeline(transaction=False)
    for row in rows:
        pipe.exists(state.keys.worker(row.name))
    alive = await pipe.execute()
    paused = await pauses.active(db)
    return [
        _public(row, bool(up), running.get(row.name, []), who, paused.get(row.agent))
        for row, up in zip(rows, alive, strict=True)
    ]


def _public(
    row: Worker, alive: bool, mine: list[WorkerTask], who: Principal, pause: Pause | None
) -> WorkerPublic:
    beats = [row.last_seen_at, *(t.heartbeat_at for t in mine if t.heartbeat_at)]
    update: dict[str, object] = {"alive": alive, "running": mine, "last_heartbeat_at": max(beats)}
    if pause is not None:
        update |= {"kind_paused_until": pause.until, "kind_pause_reason": pause.reason}
    if who.tenant is not None:
        update |= {"host": "", "pid": None}
    return WorkerPublic.model_validate(row).model_copy(update=update)


async def _running(db: DbDep, who: Principal) -> dict[str, list[WorkerTask]]:
    """The attempts running now, by worker."""
    stmt = (
        select(Attempt, Task.session_id, Task.key)
        .join(Task, Task.id == Attempt.task_id)
        .where(
            Attempt.status == AttemptStatus.RUNNING,
            Attempt.worker.is_not(None),
            Attempt.number == Task.attempt,
        )
        .order_by(Attempt.started_at)
    )
    if who.tenant is not None:
        stmt = stmt.join(Session, Session.id == Task.session_id).where(Session.tenant == who.tenant)
    found: dict[str, list[WorkerTask]] = defaultdict(list)
    for attempt, session_id, key in (await db.execute(stmt)).all():
        found[attempt.worker or ""].append(
            WorkerTask(
                task_id=attempt.task_id,
                session_id=session_id,
                task_key=key,
                attempt=attempt.number,
                started_at=attempt.started_at,
                heartbeat_at=attempt.heartbeat_at,
            )
        )
    return found
