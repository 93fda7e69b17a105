"""The adapter's upkeep beside its slots, small loops that log a Redis failure and go on:
following the system mode (`swarm_common.system`: drain, emergency stop), and refreshing
the adapter's liveness key (`swarm:worker:<name>`, a hash with a TTL: what it runs, its
mode, and what it announced when it came online: models, CLI version, capabilities), which
tells the orchestrator that it is alive (`swarm_orchestrator.runtime.registry` mirrors it
into the `workers` table; `GET /v1/workers`), and tending its prepared worktrees (`pool`:
idle ones expire, what git left is pruned) even while no task comes."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from swarm_common.messages import utcnow
from swarm_common.system import read_mode

if TYPE_CHECKING:
    from swarm_adapter.worker import Adapter

__all__ = ["advertise", "follow_mode", "tend_worktrees"]

WORKTREE_SWEEP_S = 60.0

log = logging.getLogger(__name__)


async def follow_mode(adapter: Adapter) -> None:
    """Every `control_poll_interval_s`, read the system mode and have `adapter` obey it (an
    unreadable mode counts as unchanged)."""
    while True:
        try:
            mode = await read_mode(adapter.redis, adapter.keys)
        except (RedisError, OSError) as exc:
            log.warning("cannot read the system mode", extra={"error": repr(exc)})
            mode = adapter.mode
        adapter.obey(mode)
        await asyncio.sleep(adapter.settings.control_poll_interval_s)


async def advertise(adapter: Adapter) -> None:
    """Every third of `worker_ttl_s`, write the liveness key with what `adapter` runs now
    and renew its TTL."""
    settings = adapter.settings
    ttl = settings.worker_ttl_s
    key = adapter.keys.worker(adapter.worker)
    announced = adapter.announcement()
    while True:
        running = [
            {
                "task_id": str(r.message.task_id),
                "task_key": r.message.task_key,
                "attempt": r.message.attempt,
            }
            for r in adapter.in_flight
        ]
        try:
            pipe = adapter.redis.pipeline(transaction=True)
            pipe.hset(
                key,
                mapping={
                    "agent": settings.agent,
                    "host": announced.host,
                    "pid": announced.pid,
                    "concurrency": settings.concurrency,
                    "running": json.dumps(running),
                    "busy": len(running),
                    "mode": adapter.mode.value,
                    "models": json.dumps(announced.models),
                    "cli_version": announced.cli_version or "",
                    "capabilities": json.dumps(announced.capabilities),
                    "updated_at": utcnow().isoformat(),
                },
            )
            pipe.expire(key, int(max(ttl, 1)))
            await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("liveness key not refreshed", extra={"error": repr(exc)})
        await asyncio.sleep(ttl / 3)


async def tend_worktrees(adapter: Adapter) -> None:
    """At start and every `WORKTREE_SWEEP_S`, schedule the worktree pools' upkeep (it runs
    on the pool's own thread; a failure is logged there)."""
    while True:
        adapter.worktrees.sweep()
        await asyncio.sleep(WORKTREE_SWEEP_S)
