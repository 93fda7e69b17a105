"""The FastAPI application: lifespan (engine, Redis, background loops), routers, errors."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from redis.asyncio import Redis

import swarm_common
from swarm_common.streams import Keys
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.api.errors import install_error_handlers
from swarm_orchestrator.api.limits import BodyLimit
from swarm_orchestrator.api.routes import health, sessions, tasks, workers
from swarm_orchestrator.db.engine import make_engine, make_sessionmaker
from swarm_orchestrator.loops import Background
from swarm_orchestrator.settings import OrchestratorSettings, get_settings

__all__ = ["create_app"]

log = logging.getLogger(__name__)

REDIS_SOCKET_TIMEOUT_S = 30.0


def create_app(settings: OrchestratorSettings | None = None) -> FastAPI:
    """Build the app; settings are read when it starts, not at import time."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        s = settings or get_settings()
        s.workspace.mkdir(parents=True, exist_ok=True)
        engine = make_engine(s.require_database_url())
        sessionmaker = make_sessionmaker(engine)
        redis = Redis.from_url(
            s.require_redis_url(),
            decode_responses=False,
            health_check_interval=30,
            socket_timeout=REDIS_SOCKET_TIMEOUT_S,  # above every BLOCK we use
            socket_connect_timeout=5,
            socket_keepalive=True,
        )
        keys = Keys(s.redis_prefix)
        background = Background(settings=s, sessionmaker=sessionmaker, redis=redis, keys=keys)
        app.state.swarm = AppState(
            settings=s,
            engine=engine,
            sessionmaker=sessionmaker,
            redis=redis,
            keys=keys,
            background=background,
        )
        if s.run_loops:
            background.start()
        log.info("orchestrator started", extra={"loops": s.run_loops})
        try:
            yield
        finally:
            await background.stop()
            await redis.aclose()
            await engine.dispose()
            log.info("orchestrator stopped")

    app = FastAPI(
        title="Swarm",
        version=swarm_common.__version__,
        summary="Run many AI coding agents on one codebase at once.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    for module in (health, sessions, tasks, workers):
        app.include_router(module.router)
    max_body = (settings or get_settings()).max_body_bytes
    app.add_middleware(BodyLimit, max_bytes=max_body)
    return app
