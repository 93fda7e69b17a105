"""Settings of the orchestrator process (`SWARM_*` environment variables)."""

from __future__ import annotations

import os
import socket

from pydantic import Field, SecretStr

from swarm_common.settings import CommonSettings

__all__ = ["OrchestratorSettings", "get_settings"]


class OrchestratorSettings(CommonSettings):
    host: str = "127.0.0.1"
    port: int = 8000
    api_token: SecretStr | None = None
    """When set, every /v1 request must carry `Authorization: Bearer <token>`."""

    run_loops: bool = True
    """Run the relay, event consumer and scheduler sweep in this process."""
    consumer_name: str = Field(default_factory=lambda: f"orch-{socket.gethostname()}-{os.getpid()}")
    relay_batch: int = 200
    relay_poll_interval_s: float = 0.5
    consumer_batch: int = 100
    consumer_block_ms: int = 1000
    consumer_claim_idle_ms: int = 60_000
    """Events pending this long on a vanished orchestrator are taken over."""
    event_max_deliveries: int = 10
    """An event that failed to apply this many times is dead-lettered."""
    sweep_interval_s: float = 5.0
    reaper_interval_s: float = 2.0
    """How often attempts are checked for expired leases (the adapters' `SWARM_LEASE_S`
    sets how long a silent worker keeps its attempt)."""
    max_lost_attempts: int = 5
    """Lost attempts of one task before it fails."""
    prune_interval_s: float = 300.0
    """How often leftover worktrees of ended attempts are removed."""
    stream_maxlen: int = 1_000_000
    outbox_retention_s: float = 24 * 3600

    max_graph_tasks: int = 5000
    """Most tasks one request may add, and most tasks one session may hold."""
    max_session_tasks: int = 20_000
    max_body_bytes: int = 16 * 1024 * 1024
    git_timeout_s: float = 600.0


def get_settings() -> OrchestratorSettings:
    return OrchestratorSettings()
