"""FastAPI dependencies as `Annotated` aliases, and the app's shared state."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from swarm_common.streams import Keys
from swarm_orchestrator.errors import SwarmError
from swarm_orchestrator.loops import Background
from swarm_orchestrator.settings import OrchestratorSettings

__all__ = ["AppState", "DbDep", "StateDep", "get_db", "get_state", "require_token"]


@dataclass
class AppState:
    settings: OrchestratorSettings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: Redis
    keys: Keys
    background: Background

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


class Unauthorized(SwarmError):
    status = 401
    code = "unauthorized"


async def require_token(request: Request, state: StateDep) -> str:
    """With `SWARM_API_TOKEN` set, every /v1 request must present it as a bearer token.
    Returns the actor name written to the timeline."""
    expected = state.settings.api_token
    if expected is None:
        return "api"
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), expected.get_secret_value().encode()
    ):
        raise Unauthorized("a valid bearer token is required")
    return "admin"


ActorDep = Annotated[str, Depends(require_token)]
