"""Request budgets of the API: a token bucket per token (and per client address for requests
without a valid token), kept in Redis so every orchestrator replica draws on the same budget.

The bucket refills at `rate` requests per second up to `burst`; the script reads Redis's own
clock, so replicas with skewed clocks agree. When Redis cannot be reached the request is let
through: the budget protects the servers, it must not take the API down with Redis.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from swarm_common.streams import Keys

__all__ = ["Budget", "RateLimiter"]

log = logging.getLogger(__name__)

# KEYS[1] the bucket; ARGV rate (per s), burst. Returns 0 when a request may go, else the
# milliseconds until one may.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local held = redis.call('HMGET', KEYS[1], 'at', 'tokens')
local at = tonumber(held[1]) or now
local tokens = tonumber(held[2]) or burst
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
if tokens < 1 then
  return math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'at', now, 'tokens', tokens - 1)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return 0
"""


@dataclass(frozen=True)
class Budget:
    allowed: bool
    retry_after_s: int = 0


class RateLimiter:
    def __init__(self, redis: Redis, keys: Keys, *, rate_per_s: float, burst: int) -> None:
        self._redis = redis
        self._keys = keys
        self.rate = rate_per_s
        self.burst = max(1, burst)
        self._script = redis.register_script(_TAKE)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    async def take(self, subject: str) -> Budget:
        """Spend one request of `subject`'s budget."""
        if not self.enabled:
            return Budget(True)
        try:
            wait_ms = int(
                await self._script(
                    keys=[self._keys.ratelimit(subject)], args=[self.rate, self.burst]
                )
            )
        except (RedisError, OSError) as exc:
            log.warning("rate limit not checked: Redis unavailable", extra={"error": repr(exc)})
            return Budget(True)
        if wait_ms <= 0:
            return Budget(True)
        return Budget(False, retry_after_s=max(1, math.ceil(wait_ms / 1000)))
