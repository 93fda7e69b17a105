"""Settings of the orchestrator process (`SWARM_*` environment variables)."""

from __future__ import annotations

import contextlib
import os
import socket
from urllib.parse import urlsplit

from pydantic import Field, SecretStr

from swarm_common.settings import CommonSettings

__all__ = ["OrchestratorSettings", "get_settings"]


class OrchestratorSettings(CommonSettings):
    host: str = "127.0.0.1"
    port: int = 8000
    api_token: SecretStr | None = None
    """Accepted as an admin token named `bootstrap` (besides the tokens in the database),
    so a deployment can create its first tokens; leave it unset once it has."""
    rate_limit_per_s: float = Field(20.0, ge=0)
    """Requests per second one token (or one address without a valid token) may make on
    average; 0 turns the limit off."""
    rate_limit_burst: int = Field(200, ge=1)
    """Requests one token may make at once before the average applies."""
    stream_token_check_s: float = Field(30.0, gt=0)
    """How often an open event stream checks that its token is still valid (a revoked
    token's stream ends within this time)."""

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

    def bootstrap_token(self) -> str | None:
        return self.api_token.get_secret_value() if self.api_token else None

    def secrets(self) -> list[str]:
        """What must never leave the process: the bootstrap token, the servers' passwords."""
        found = [self.bootstrap_token()]
        for url in (self.database_url, self.redis_url):
            if url is not None:
                with contextlib.suppress(ValueError):
                    found.append(urlsplit(url.get_secret_value()).password)
        return [s for s in found if s]


def get_settings() -> OrchestratorSettings:
    return OrchestratorSettings()
