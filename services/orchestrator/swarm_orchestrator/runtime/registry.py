"""The registry mirror: the adapters' Redis liveness keys, made the `workers` table's truth,
and what that means for sessions.

Every pass (one replica at a time, under an advisory lock held for the mirror's
transaction): read every `swarm:worker:<name>` hash (`SCAN`, then one pipelined `HGETALL`
each), write them into `workers` (`graph.fleet.mirror`: online, last seen, how busy, what
they announced; a worker whose key is gone goes offline), then let `graph.suspension`
reroute `auto` tasks off kinds that are gone, suspend the sessions that wait for such a
kind past the grace period, move tasks with fallbacks off kinds that are gone or paused,
and resume the ones whose kinds are back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from swarm_common.streams import Keys
from swarm_orchestrator.db.advisory import try_xact_lock
from swarm_orchestrator.graph import fleet, suspension
from swarm_orchestrator.graph.fleet import Sighting

__all__ = ["Registry", "read_registry"]

log = logging.getLogger(__name__)


async def read_registry(redis: Redis, keys: Keys) -> list[Sighting]:
    """Every live adapter's key, read now."""
    names = [key async for key in redis.scan_iter(match=keys.workers_match, count=500)]
    if not names:
        return []
    pipe = redis.pipeline(transaction=False)
    for key in names:
        pipe.hgetall(key)
    hashes = await pipe.execute()
    prefix = keys.worker("")
    found = []
    for key, fields in zip(names, hashes, strict=True):
        text = key.decode() if isinstance(key, bytes) else str(key)
        seen = fleet.sighting(text.removeprefix(prefix), fields or {})
        if seen is not None:
            found.append(seen)
    return found


@dataclass
class Registry:
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: Redis
    keys: Keys
    grace_s: float
    """How long a kind may have no live adapter before the sessions waiting for it are
    suspended (and `auto` tasks queued on it go elsewhere)."""

    async def pass_once(self) -> int:
        """Mirror, then reroute, suspend and resume; returns how many sessions and tasks
        changed (0 when another replica holds the pass)."""
        seen = await read_registry(self.redis, self.keys)
        async with self.sessionmaker() as db, db.begin():
            if not await try_xact_lock(db, f"registry:{self.keys.prefix}"):
                return 0
            await fleet.mirror(db, seen)
        outcome = await suspension.check(self.sessionmaker, keys=self.keys, grace_s=self.grace_s)
        return outcome.suspended + outcome.resumed + outcome.rerouted + outcome.failed_over
