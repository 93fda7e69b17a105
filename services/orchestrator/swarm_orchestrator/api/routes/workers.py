"""`/v1/workers`: the adapters the orchestrator has heard from, and whether they are alive."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from swarm_orchestrator.api.deps import DbDep, StateDep
from swarm_orchestrator.api.schemas import WorkerPublic, error_responses
from swarm_orchestrator.api.security import Viewer
from swarm_orchestrator.db.models import Worker

router = APIRouter(prefix="/v1/workers", tags=["workers"])


_ERRORS = error_responses()


@router.get("", responses=_ERRORS)
async def list_workers(db: DbDep, state: StateDep, _: Viewer) -> list[WorkerPublic]:
    rows = (await db.scalars(select(Worker).order_by(Worker.name))).all()
    if not rows:
        return []
    pipe = state.redis.pipeline(transaction=False)
    for row in rows:
        pipe.exists(state.keys.worker(row.name))
    alive = await pipe.execute()
    return [
        WorkerPublic.model_validate(r).model_copy(update={"alive": bool(a)})
        for r, a in zip(rows, alive, strict=True)
    ]
