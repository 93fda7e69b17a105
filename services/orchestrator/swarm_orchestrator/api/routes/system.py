"""`/v1/system`: the system mode (see `swarm_orchestrator.runtime.system_mode`) — drain,
emergency stop, resume — and what is in flight."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import func, select

from swarm_common.states import TaskStatus
from swarm_common.system import SystemMode
from swarm_orchestrator.access.tokens import Principal
from swarm_orchestrator.api.deps import AppState, DbDep, StateDep
from swarm_orchestrator.api.schemas import SystemPublic, error_responses
from swarm_orchestrator.api.security import SystemAdmin, Viewer
from swarm_orchestrator.db.models import Session, Task
from swarm_orchestrator.runtime import system_mode

router = APIRouter(prefix="/v1/system", tags=["system"])

_ERRORS = error_responses()


async def _public(db: DbDep, state: AppState, who: Principal) -> SystemPublic:
    """The mode, and the work in flight (a tenant's token counts its tenant's only)."""
    current = await system_mode.get_state(db)
    stmt = (
        select(Task.status, func.count())
        .where(Task.status.in_([TaskStatus.QUEUED, TaskStatus.RUNNING]))
        .group_by(Task.status)
    )
    if who.tenant is not None:
        stmt = stmt.join(Session, Session.id == Task.session_id).where(Session.tenant == who.tenant)
    counts = dict((await db.execute(stmt)).all())
    alive = 0
    async for _ in state.redis.scan_iter(match=state.keys.workers_match, count=500):
        alive += 1
    return SystemPublic(
        mode=current.mode.value,
        changed_by=current.by,
        changed_at=current.at,
        running=counts.get(TaskStatus.RUNNING, 0),
        queued=counts.get(TaskStatus.QUEUED, 0),
        workers_alive=alive,
    )


@router.get("", responses=_ERRORS)
async def get_system(db: DbDep, state: StateDep, who: Viewer) -> SystemPublic:
    return await _public(db, state, who)


async def _set(db: DbDep, state: AppState, mode: SystemMode, who: Principal) -> SystemPublic:
    await system_mode.set_mode(db, redis=state.redis, keys=state.keys, mode=mode, actor=who.actor)
    return await _public(db, state, who)


@router.post("/drain", responses=_ERRORS)
async def drain(db: DbDep, state: StateDep, who: SystemAdmin) -> SystemPublic:
    """Adapters take no new work and finish what they run; `running` reaches 0 when done."""
    return await _set(db, state, SystemMode.DRAINING, who)


@router.post("/stop", responses=_ERRORS)
async def stop(db: DbDep, state: StateDep, who: SystemAdmin) -> SystemPublic:
    """Emergency stop: every agent process is killed within seconds, the interrupted
    attempts are queued again and run after `resume`."""
    return await _set(db, state, SystemMode.STOPPED, who)


@router.post("/resume", responses=_ERRORS)
async def resume(db: DbDep, state: StateDep, who: SystemAdmin) -> SystemPublic:
    """Back to `running` after a drain or a stop."""
    return await _set(db, state, SystemMode.RUNNING, who)
