"""Per-key limits in Redis, so every gateway replica counts against the same numbers:
requests per minute, and bytes of documents sent per UTC day. Over a limit: 429 with
Retry-After."""

from __future__ import annotations

import time

from rag_core.catalog import Keys
from rag_core.errors import RagError
from redis.asyncio import Redis

from rag_gateway.auth.principal import Principal

# KEYS: counter; ARGV: amount, limit, ttl. Counts only what is allowed; returns {allowed, ttl}.
_TAKE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + tonumber(ARGV[1]) > tonumber(ARGV[2]) then
  return {0, redis.call('PTTL', KEYS[1])}
end
redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return {1, 0}
"""


class TooManyRequests(RagError):
    status_code = 429
    problem = "rate-limited"
    title = "Too many requests"


class Limits:
    def __init__(self, redis: Redis, keys: Keys, *, per_minute: int, bytes_per_day: int) -> None:
        self.redis = redis
        self.prefix = keys.prefix
        self.per_minute = per_minute
        self.bytes_per_day = bytes_per_day
        self._take = redis.register_script(_TAKE)

    async def _spend(self, counter: str, amount: int, limit: int, ttl_ms: int) -> float | None:
        """None when allowed; else the seconds until the window resets."""
        allowed, pttl = await self._take(keys=[counter], args=[amount, limit, ttl_ms])
        return None if int(allowed) else max(1.0, int(pttl) / 1000)

    async def request(self, principal: Principal) -> None:
        limit = principal.requests_per_minute or self.per_minute
        window = int(time.time() // 60)
        wait = await self._spend(
            f"{self.prefix}:rate:{principal.identity}:{window}", 1, limit, 61_000
        )
        if wait is not None:
            raise TooManyRequests(
                f"more than {limit} requests per minute for this credential "
                "(RATE_LIMIT_PER_MINUTE or the key's own limit)",
                extra={"limit": "RATE_LIMIT_PER_MINUTE", "requests_per_minute": limit},
                headers={"Retry-After": str(int(wait + 0.999))},
            )

    async def ingest_bytes(self, principal: Principal, size: int) -> None:
        limit = principal.ingest_bytes_per_day or self.bytes_per_day
        day = int(time.time() // 86_400)
        seconds_left = (day + 1) * 86_400 - time.time()
        wait = await self._spend(
            f"{self.prefix}:quota:{principal.identity}:{day}",
            size,
            limit,
            int(seconds_left * 1000) + 60_000,
        )
        if wait is not None:
            raise TooManyRequests(
                f"this request ({size} bytes) would pass the {limit} bytes of documents this "
                "credential may send per day (INGEST_BYTES_PER_DAY or the key's own quota)",
                extra={"limit": "INGEST_BYTES_PER_DAY", "bytes_per_day": limit},
                headers={"Retry-After": str(int(seconds_left) + 1)},
            )
