"""The FastAPI application: lifespan (engine, Redis, background loops), routers, errors."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from redis.asyncio import Redis

import swarm_common
from swarm_common.private import private_dir
from swarm_common.redaction import Redactor, configured_secrets
from swarm_common.streams import Keys
from swarm_common.system import SystemMode
from swarm_orchestrator.access.addresses import ClientAddresses, parse_networks
from swarm_orchestrator.access.ratelimit import RateLimiter
from swarm_orchestrator.api.deps import AppState
from swarm_orchestrator.api.errors import install_error_handlers
from swarm_orchestrator.api.limits import BodyLimit
from swarm_orchestrator.api.live import TimelineWatch, asyncpg_dsn
from swarm_orchestrator.api.request_ids import RequestIds
from swarm_orchestrator.api.routes import (
    blackboard,
    budgets,
    dashboard,
    docs,
    health,
    inventory,
    metrics,
    personas,
    plans,
    sessions,
    system,
    tasks,
    templates,
    tokens,
    usage,
    webhooks,
    workers,
)
from swarm_orchestrator.api.security import Guard, RedactResponses
from swarm_orchestrator.db.engine import make_engine, make_sessionmaker
from swarm_orchestrator.graph.pricing import PRICES_INFO
from swarm_orchestrator.graph.routing import ROUTING_INFO, RoutingPolicy
from swarm_orchestrator.observability.gauges import Gauges
from swarm_orchestrator.runtime.background import Background
from swarm_orchestrator.runtime.system_mode import set_mode
from swarm_orchestrator.settings import OrchestratorSettings, get_settings

__all__ = ["create_app"]

log = logging.getLogger(__name__)

REDIS_SOCKET_TIMEOUT_S = 30.0


def _open_state(s: OrchestratorSettings) -> AppState:
    """The process's connections and loops, made when the app starts."""
    private_dir(s.workspace)
    engine = make_engine(s.require_database_url())
    redis = Redis.from_url(
        s.require_redis_url(),
        decode_responses=False,
        health_check_interval=30,
        socket_timeout=REDIS_SOCKET_TIMEOUT_S,  # above every BLOCK we use
        socket_connect_timeout=5,
        socket_keepalive=True,
    )
    routing = RoutingPolicy.with_prices(s.agent_prices)
    sessionmaker = make_sessionmaker(
        engine, info={ROUTING_INFO: routing, PRICES_INFO: s.price_table()}
    )
    keys = Keys(s.redis_prefix)
    return AppState(
        settings=s,
        engine=engine,
        sessionmaker=sessionmaker,
        redis=redis,
        keys=keys,
        background=Background(settings=s, sessionmaker=sessionmaker, redis=redis, keys=keys),
        limiter=RateLimiter(redis, keys, rate_per_s=s.rate_limit_per_s, burst=s.rate_limit_burst),
        timeline_watch=TimelineWatch(asyncpg_dsn(s.require_database_url())),
        gauges=Gauges(sessionmaker=sessionmaker, redis=redis, keys=keys),
    )


def create_app(settings: OrchestratorSettings | None = None) -> FastAPI:
    """Build the app; settings are read when it starts, not at import time."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        s = settings or get_settings()
        state = app.state.swarm = _open_state(s)
        state.timeline_watch.start()
        if s.run_loops:
            state.background.start()
            _on_sigusr1(state)
        log.info("orchestrator started", extra={"loops": s.run_loops})
        try:
            yield
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR1)
            await state.timeline_watch.stop()
            await state.background.stop()
            await state.redis.aclose()
            await state.engine.dispose()
            log.info("orchestrator stopped")

    app = FastAPI(
        title="Swarm",
        version=swarm_common.__version__,
        summary="Run many AI coding agents on one codebase at once.",
        lifespan=lifespan,
        # `/docs` is served from packaged files under a CSP (`routes/docs.py`); no ReDoc.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    install_error_handlers(app)
    routers = (health, sessions, plans, tasks, workers, system, tokens, inventory, personas)
    for module in (*routers, blackboard, templates, usage, budgets, metrics, webhooks):
        app.include_router(module.router)
    dashboard.install(app)
    docs.install(app)
    configured = settings or get_settings()
    addresses = ClientAddresses(parse_networks(configured.trusted_proxies))
    # The last added runs first: the request id wraps everything (so every answer and log
    # line of a request has it), then redaction, then authentication (so a request without
    # a token is refused before its body is read), then the body limit.
    app.add_middleware(
        BodyLimit, max_bytes=configured.max_body_bytes, max_depth=configured.max_json_depth
    )
    app.add_middleware(Guard, addresses=addresses)
    redactor = Redactor([*configured_secrets(os.environ), *configured.secrets()])
    app.add_middleware(RedactResponses, redact=redactor)
    app.add_middleware(RequestIds)
    return app


def _on_sigusr1(state: AppState) -> None:
    """SIGUSR1 to the orchestrator: emergency stop of the whole system, as `POST
    /v1/system/stop` does."""

    async def _stop() -> None:
        try:
            async with state.sessionmaker() as db:
                await set_mode(
                    db, redis=state.redis, keys=state.keys, mode=SystemMode.STOPPED, actor="SIGUSR1"
                )
        except Exception:  # the database is away, say: say so; a second signal tries again
            log.exception("emergency stop by SIGUSR1 failed")

    def _handler() -> None:
        task = asyncio.create_task(_stop())
        _signal_tasks.add(task)
        task.add_done_callback(_signal_tasks.discard)

    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _handler)


_signal_tasks: set[asyncio.Task[None]] = set()
