"""The system mode as people and tools set it: `POST /v1/system/drain|stop|resume` and
SIGUSR1. PostgreSQL keeps it (`system_flags`), Redis carries it to the adapters (see
`swarm_common.system`); the reaper re-publishes it on every pass, so a Redis that lost its
data, or a publish that failed, is corrected within one pass.

A change is recorded on the timeline of every unfinished session, with the actor.
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from swarm_common.messages import utcnow
from swarm_common.streams import Keys
from swarm_common.system import SystemMode, SystemState, publish_mode
from swarm_orchestrator.db import timeline
from swarm_orchestrator.db.models import Session, SystemFlag

__all__ = ["MODE_KEY", "get_state", "set_mode"]

log = logging.getLogger(__name__)

MODE_KEY = "mode"


async def get_state(db: AsyncSession) -> SystemState:
    row = await db.get(SystemFlag, MODE_KEY, populate_existing=True)
    if row is None:
        return SystemState(mode=SystemMode.RUNNING)
    try:
        mode = SystemMode(str(row.value.get("mode")))
    except ValueError:
        mode = SystemMode.RUNNING
    return SystemState(mode=mode, by=row.updated_by, at=row.updated_at)


async def set_mode(
    db: AsyncSession, *, redis: Redis, keys: Keys, mode: SystemMode, actor: str
) -> SystemState:
    """Store the mode, note it on the timelines, commit, then tell the adapters."""
    now = utcnow()
    previous = await get_state(db)
    await db.execute(
        insert(SystemFlag)
        .values(key=MODE_KEY, value={"mode": mode.value}, updated_by=actor, updated_at=now)
        .on_conflict_do_update(
            index_elements=[SystemFlag.key],
            set_={"value": {"mode": mode.value}, "updated_by": actor, "updated_at": now},
        )
    )
    if previous.mode != mode:
        sessions = (await db.scalars(select(Session.id).where(Session.finished_at.is_(None)))).all()
        await timeline.record_many(
            db,
            (
                {
                    "session_id": sid,
                    "type": f"system.{mode.value}",
                    "actor": actor,
                    "data": {"from": previous.mode.value},
                }
                for sid in sessions
            ),
        )
    await db.commit()
    state = SystemState(mode=mode, by=actor, at=now)
    log.warning("system mode set", extra={"mode": mode.value, "actor": actor})
    try:
        await publish_mode(redis, keys, state)
    except (RedisError, OSError) as exc:  # the reaper publishes it on its next pass
        log.warning("system mode not yet published", extra={"error": repr(exc)})
    return state
