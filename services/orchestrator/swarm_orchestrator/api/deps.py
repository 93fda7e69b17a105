"""FastAPI dependencies as `Annotated` aliases, and the app's shared state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from swarm_common.streams import Keys
from swarm_orchestrator.access.ratelimit import RateLimiter
from swarm_orchestrator.api.live import TimelineWatch
from swarm_orchestrator.observability.gauges import Gauges
from swarm_orchestrator.runtime.background import Background
from swarm_orchestrator.settings import OrchestratorSettings

__all__ = ["AppState", "DbDep", "StateDep", "get_db", "get_state"]


@dataclass
class AppState:
    settings: OrchestratorSettings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: Redis
    keys: Keys
    background: Background
    limiter: RateLimiter
    timeline_watch: TimelineWatch
    gauges: Gauges
    """The figures `/metrics` reads from PostgreSQL and Redis (`observability.gauges`)."""

    def notify(self) -> None:
        """Wake the relay: the request committed outbox rows."""
        self.background.wake.set()


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.swarm
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def get_db(state: StateDep) -> AsyncIterator[AsyncSession]:
    async with state.sessionmaker() as db:
        yield db


DbDep = Annotated[AsyncSession, Depends(get_db)]
