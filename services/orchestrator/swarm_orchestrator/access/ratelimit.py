"""Request budgets of the API: token buckets per client address and per token, kept in Redis
so every orchestrator replica draws on the same budget.

Both are checked before any database work (`Guard` in `swarm_orchestrator.api.security`):
`admit` spends one request of the client address's budget and, when the request carries a
token, one of that token's budget (`tokens.budget_subject`: known without a lookup). A
request whose token the database then finds valid gives its address the request back
(`credit`): the address budget counts only requests without a valid token, so clients
behind one address (a NAT, an office) keep their own tokens' budgets, while bad tokens from
one address run dry after a burst however many different tokens they try. A request the
token's budget refuses also gives the address its request back: it did no database work.

The bucket refills at `rate` requests per second up to `burst`; the scripts read Redis's own
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

_BUCKET = """
local function take(key, rate, burst)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local held = redis.call('HMGET', key, 'at', 'tokens')
  local at = tonumber(held[1]) or now
  local tokens = tonumber(held[2]) or burst
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
  if tokens < 1 then
    return math.ceil((1 - tokens) * 1000 / rate)
  end
  redis.call('HSET', key, 'at', now, 'tokens', tokens - 1)
  redis.call('PEXPIRE', key, math.ceil(burst * 1000 / rate) + 1000)
  return 0
end
local function give(key)
  if redis.call('EXISTS', key) == 1 then
    redis.call('HINCRBYFLOAT', key, 'tokens', 1)
  end
end
"""
"""Lua shared by the scripts. `take` spends one request of a bucket and returns 0, or the
milliseconds until one may go; `give` returns one (the next `take` caps it at `burst`)."""

# KEYS[1] the address's bucket, KEYS[2] (optional) the token's; ARGV rate (per s), burst.
# Returns {refused_by, wait_ms}: refused_by 0 (admitted), 1 (the address) or 2 (the token).
_ADMIT = (
    _BUCKET
    + """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local wait = take(KEYS[1], rate, burst)
if wait > 0 then return {1, wait} end
if KEYS[2] then
  wait = take(KEYS[2], rate, burst)
  if wait > 0 then
    give(KEYS[1])
    return {2, wait}
  end
end
return {0, 0}
"""
)
_CREDIT = _BUCKET + "give(KEYS[1])\nreturn 0\n"

_REFUSED_BY = {1: "address", 2: "token"}


@dataclass(frozen=True)
class Budget:
    allowed: bool
    retry_after_s: int = 0
    refused_by: str | None = None
    """`address` or `token`: whose budget ran out."""


class RateLimiter:
    def __init__(self, redis: Redis, keys: Keys, *, rate_per_s: float, burst: int) -> None:
        self._keys = keys
        self.rate = rate_per_s
        self.burst = max(1, burst)
        self._admit = redis.register_script(_ADMIT)
        self._credit = redis.register_script(_CREDIT)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    async def admit(self, *, address: str, token: str | None) -> Budget:
        """Before any database work: spend one request of `address`'s budget and, when the
        request carries a token, one of `token`'s (subjects such as `addr:10.0.0.7` and
        `token:<digest>`)."""
        if not self.enabled:
            return Budget(True)
        keys = [self._keys.ratelimit(s) for s in (address, token) if s is not None]
        try:
            refused_by, wait_ms = await self._admit(keys=keys, args=[self.rate, self.burst])
        except (RedisError, OSError) as exc:
            log.warning("rate limit not checked: Redis unavailable", extra={"error": repr(exc)})
            return Budget(True)
        if int(refused_by) == 0:
            return Budget(True)
        retry_after_s = max(1, math.ceil(int(wait_ms) / 1000))
        return Budget(False, retry_after_s, _REFUSED_BY[int(refused_by)])

    async def credit(self, address: str) -> None:
        """The request's token was valid: the request was the token's, so `address` gets
        back the one `admit` spent."""
        if not self.enabled:
            return
        try:
            await self._credit(keys=[self._keys.ratelimit(address)])
        except (RedisError, OSError) as exc:
            log.warning("rate limit not credited: Redis unavailable", extra={"error": repr(exc)})
