"""`swarm server`: the orchestrator's API and background loops under uvicorn."""

from __future__ import annotations

import gc

import uvicorn

from swarm_common.logs import setup_logging
from swarm_common.private import keep_private
from swarm_orchestrator.api.app import create_app
from swarm_orchestrator.settings import OrchestratorSettings

__all__ = ["run_server"]


def run_server(settings: OrchestratorSettings) -> None:
    """Serve until SIGINT or SIGTERM (uvicorn's graceful shutdown, then the loops stop)."""
    keep_private()
    setup_logging(settings.log_level, settings.secrets())
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
        # The client address stays the socket's peer: uvicorn would otherwise take it from
        # `X-Forwarded-For` of any request from 127.0.0.1 (its default), letting a client
        # pick its rate-limit budget. Trusted proxies are `SWARM_TRUSTED_PROXIES`, read by
        # `swarm_orchestrator.access.addresses`.
        proxy_headers=False,
    )
    # What importing and configuring made lives as long as the process: out of the garbage
    # collector's way, a full collection after a large request takes a fraction of the time
    # (it would hold every request in flight meanwhile).
    gc.collect()
    gc.freeze()
    uvicorn.Server(config).run()
