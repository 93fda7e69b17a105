"""Claims and leases of attempts, the protocol between adapters and the orchestrator's reaper.

An adapter that reads a task message *claims* its attempt: `claim:<task>:<attempt>` is set
with `NX` to the worker's name, so an attempt is claimed once, ever (a message delivered
twice runs once). In the same step it takes the attempt's *lease*, `lease:<task>:<attempt>`,
a key that expires after `lease_s` unless the worker renews it (every heartbeat). When the
attempt's result event is stored, the claim becomes `done:<worker>` and the lease is dropped.

The reaper declares an attempt lost when it is claimed, not done, and its lease has expired:
the worker died, or has been cut off from Redis for a whole lease. A worker that cannot renew
its lease for half of it stops its agent on its own (self-fencing), so by the time the reaper
hands the task to someone else the old agent is gone — kill before reclaim. Each step is one
Lua script, so no reader sees a claim without its lease.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

from redis.asyncio import Redis

from swarm_common.streams import Keys

__all__ = ["Lease", "LeaseState", "claim", "finish", "inspect", "renew"]

DONE_PREFIX = "done:"

_CLAIM = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
  return 1
end
return 0
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_FINISH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], 'done:' .. ARGV[1], 'EX', ARGV[2])
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return 1
"""


async def claim(
    redis: Redis,
    keys: Keys,
    *,
    task_id: uuid.UUID,
    attempt: int,
    worker: str,
    lease_s: float,
    claim_ttl_s: int,
) -> bool:
    """Claim an attempt and take its lease; False when someone claimed it before."""
    got = await redis.eval(
        _CLAIM,
        2,
        keys.claim(task_id, attempt),
        keys.lease(task_id, attempt),
        worker,
        str(int(claim_ttl_s)),
        str(max(1, int(lease_s * 1000))),
    )
    return bool(got)


async def renew(
    redis: Redis, keys: Keys, *, task_id: uuid.UUID, attempt: int, worker: str, lease_s: float
) -> bool:
    """Extend the lease by `lease_s`; False when it is no longer ours (it expired, or Redis
    lost its data): the attempt must stop."""
    got = await redis.eval(
        _RENEW, 1, keys.lease(task_id, attempt), worker, str(max(1, int(lease_s * 1000)))
    )
    return bool(got)


async def finish(
    redis: Redis, keys: Keys, *, task_id: uuid.UUID, attempt: int, worker: str, done_ttl_s: int
) -> None:
    """Mark the claim done (the result event is stored) and drop the lease."""
    await redis.eval(
        _FINISH,
        2,
        keys.claim(task_id, attempt),
        keys.lease(task_id, attempt),
        worker,
        str(int(done_ttl_s)),
    )


class LeaseState(StrEnum):
    UNCLAIMED = "unclaimed"
    """Nobody took it yet: the message waits in its stream."""
    HELD = "held"
    """A worker runs it and renews its lease."""
    DONE = "done"
    """Its result event is stored; the orchestrator will apply it."""
    EXPIRED = "expired"
    """Claimed, not done, lease gone: the worker died or was cut off."""


@dataclass(frozen=True)
class Lease:
    state: LeaseState
    worker: str | None


async def inspect(redis: Redis, keys: Keys, attempts: list[tuple[uuid.UUID, int]]) -> list[Lease]:
    """The lease state of each `(task_id, attempt)`, in one round trip."""
    if not attempts:
        return []
    pipe = redis.pipeline(transaction=False)
    for task_id, number in attempts:
        pipe.get(keys.claim(task_id, number))
        pipe.exists(keys.lease(task_id, number))
    replies = await pipe.execute()
    found = []
    for i in range(0, len(replies), 2):
        raw, leased = replies[i], replies[i + 1]
        holder = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        if holder is None:
            found.append(Lease(LeaseState.UNCLAIMED, None))
        elif holder.startswith(DONE_PREFIX):
            found.append(Lease(LeaseState.DONE, holder[len(DONE_PREFIX) :]))
        elif leased:
            found.append(Lease(LeaseState.HELD, holder))
        else:
            found.append(Lease(LeaseState.EXPIRED, holder))
    return found
