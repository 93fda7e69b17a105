"""Chaos scenarios run real orchestrator and adapter processes on a Valkey of their own (so
they can restart it) and the test's own database, with short leases and intervals so that a
death is noticed in seconds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from swarm_cli.local.embedded import EmbeddedValkey
from tests.e2e.stack import Stack, stopped_after

FAST = {
    "SWARM_LEASE_S": "2",
    "SWARM_HEARTBEAT_INTERVAL_S": "0.3",
    "SWARM_CANCEL_POLL_INTERVAL_S": "0.2",
    "SWARM_CONTROL_POLL_INTERVAL_S": "0.2",
    "SWARM_CLAIM_IDLE_MS": "1500",
    "SWARM_KILL_GRACE_S": "1",
    "SWARM_REAPER_INTERVAL_S": "0.3",
    "SWARM_SWEEP_INTERVAL_S": "0.5",
    "SWARM_CONSUMER_CLAIM_IDLE_MS": "1500",
    "SWARM_READ_BLOCK_MS": "200",
    "SWARM_SHUTDOWN_GRACE_S": "10",
    "SWARM_MAX_LOST_ATTEMPTS": "25",
}


class ChaosStack(Stack):
    def env(self, **extra: str) -> dict[str, str]:
        return super().env(**{**FAST, **extra})


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[EmbeddedValkey]:
    """A Valkey that keeps nothing on disk: `stop()` then `start()` restarts it empty on the
    same port."""
    server = EmbeddedValkey(tmp_path / "valkey", persistent=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def chaos(
    database_url: str,
    valkey: EmbeddedValkey,
    redis_prefix: str,
    workspace: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[ChaosStack]:
    running = ChaosStack(
        database_url=database_url,
        redis_url=valkey.url,
        redis_prefix=redis_prefix,
        workspace=workspace,
        logs=tmp_path / "logs",
    )
    with stopped_after(running, request):
        yield running
