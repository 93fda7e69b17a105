"""`swarm server`: the orchestrator's API and background loops under uvicorn."""

from __future__ import annotations

import uvicorn

from swarm_common.logs import setup_logging
from swarm_orchestrator.api.app import create_app
from swarm_orchestrator.settings import OrchestratorSettings

__all__ = ["run_server"]


def run_server(settings: OrchestratorSettings) -> None:
    """Serve until SIGINT or SIGTERM (uvicorn's graceful shutdown, then the loops stop)."""
    setup_logging(settings.log_level, settings.secrets())
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run()
