"""Per-key limits in Redis, so every gateway replica counts against the same numbers:
requests per minute, and bytes of documents sent per UTC day (the same daily counter the
ingest worker charges with the pages a URL ingest fetches: rag_core.quota). Over a limit: 429
with Retry-After. The bytes of a document request are counted when it is admitted and given
back when it is refused (a 4xx or 5xx answer, or no answer): a refused upload uses none of
the quota."""

from __future__ import annotations

import time

from rag_core.catalog import Keys
from rag_core.errors import TooManyRequests
from rag_core.quota import (
    TAKE_SCRIPT,
    DailyIngestBytes,
    QuotaCharge,
    QuotaGrant,
    seconds_left_today,
)
from redis.asyncio import Redis

from rag_gateway.auth.principal import Principal

__all__ = ["Limits", "QuotaCharge", "TooManyRequests"]


class Limits:
    def __init__(self, redis: Redis, keys: Keys, *, per_minute: int, bytes_per_day: int) -> None:
        self.redis = redis
        self.keys = keys
        self.per_minute = per_minute
        self.bytes_per_day = bytes_per_day
        self._take = redis.register_script(TAKE_SCRIPT)
        self.ingest_quota = DailyIngestBytes(redis, keys)

    async def _spend(self, counter: str, amount: int, limit: int, ttl_ms: int) -> float | None:
        """None when allowed; else the seconds until the window resets."""
        allowed, pttl = await self._take(keys=[counter], args=[amount, limit, ttl_ms])
        return None if int(allowed) else max(1.0, int(pttl) / 1000)

    async def request(self, principal: Principal) -> None:
        limit = principal.requests_per_minute or self.per_minute
        window = int(time.time() // 60)
        wait = await self._spend(
            self.keys.request_rate(principal.identity, window), 1, limit, 61_000
        )
        if wait is not None:
            raise TooManyRequests(
                f"more than {limit} requests per minute for this credential "
                "(RATE_LIMIT_PER_MINUTE or the key's own limit)",
                extra={"limit": "RATE_LIMIT_PER_MINUTE", "requests_per_minute": limit},
                headers={"Retry-After": str(int(wait + 0.999))},
            )

    def ingest_grant(self, principal: Principal) -> QuotaGrant:
        """Whose daily ingest bytes the caller spends, and how many: sent on to ingest, so
        the pages a URL ingest fetches count against the same quota."""
        return QuotaGrant(principal.identity, principal.ingest_bytes_per_day or self.bytes_per_day)

    async def ingest_bytes(self, principal: Principal, size: int) -> QuotaCharge:
        """Count ``size`` bytes against today's quota (429 over it): the charge, to refund if
        the request is refused. The counter is the one ingest's worker charges too."""
        grant = self.ingest_grant(principal)
        charge = await self.ingest_quota.charge(grant, size)
        if charge is None:
            raise TooManyRequests(
                grant.refusal(f"this request ({size} bytes)"),
                extra={"limit": "INGEST_BYTES_PER_DAY", "bytes_per_day": grant.bytes_per_day},
                headers={"Retry-After": str(int(seconds_left_today()) + 1)},
            )
        return charge
