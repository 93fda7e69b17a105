"""This worker's side of the claims and leases of its attempts (`swarm_common.leases`): the
consumer claims an attempt and finishes it (`worker`), the heartbeat renews its lease
(`heartbeat`), always under this worker's name and lease length."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TypedDict

from redis.asyncio import Redis

from swarm_common import leases
from swarm_common.messages import TaskMessage
from swarm_common.streams import Keys

__all__ = ["CLAIM_DONE_TTL_S", "LeaseHolder"]

CLAIM_DONE_TTL_S = 7 * 24 * 3600
"""How long a finished claim (`done:<worker>`) stays, refusing a late duplicate delivery."""
CLAIM_MARGIN_S = 24 * 3600
"""How long a claim outlives the attempt's own timeout."""


class _Held(TypedDict):
    """An attempt as `swarm_common.leases` names it, with its holder."""

    task_id: uuid.UUID
    attempt: int
    worker: str


@dataclass(frozen=True)
class LeaseHolder:
    """One adapter's hold on its attempts, shared by its slots and heartbeats."""

    redis: Redis
    keys: Keys
    worker: str
    lease_s: float

    async def claim(self, message: TaskMessage) -> bool:
        """Claim the attempt and take its lease; False when it was claimed before."""
        return await leases.claim(
            self.redis,
            self.keys,
            **self._held(message),
            lease_s=self.lease_s,
            claim_ttl_s=int(message.timeout_s + CLAIM_MARGIN_S),
        )

    async def renew(self, message: TaskMessage) -> bool:
        """Extend the lease; False when it is no longer ours (the attempt must stop)."""
        return await leases.renew(
            self.redis, self.keys, **self._held(message), lease_s=self.lease_s
        )

    async def finish(self, message: TaskMessage) -> None:
        """Mark the claim done (the result event is stored) and drop the lease."""
        await leases.finish(
            self.redis, self.keys, **self._held(message), done_ttl_s=CLAIM_DONE_TTL_S
        )

    def _held(self, message: TaskMessage) -> _Held:
        return {"task_id": message.task_id, "attempt": message.attempt, "worker": self.worker}
