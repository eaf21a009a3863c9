"""The daily ingest byte quota: one Redis counter per caller and UTC day, which the gateway
charges with the bodies of document requests and the ingest worker with the pages it fetches
for a URL ingest (a URL request is a few bytes; its pages are not).

The gateway tells ingest whose quota a request spends in ``X-RAG-Ingest-Quota``, a header it
removes from every client request (only the gateway may say it), and ingest keeps that with
the job.
"""

from __future__ import annotations

import json
import time
from typing import Annotated

import msgspec
from redis.asyncio import Redis

from rag_core.catalog import Keys
from rag_core.errors import InvalidInput

INGEST_QUOTA_HEADER = "x-rag-ingest-quota"
DAY_SECONDS = 86_400

# KEYS: counter; ARGV: amount, limit, ttl ms. Counts only what is allowed; returns {allowed, pttl}.
TAKE_SCRIPT = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + tonumber(ARGV[1]) > tonumber(ARGV[2]) then
  return {0, redis.call('PTTL', KEYS[1])}
end
redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return {1, 0}
"""


class QuotaGrant(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Whose daily ingest bytes a piece of work spends, and how many that caller has a day."""

    identity: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    bytes_per_day: Annotated[int, msgspec.Meta(ge=1)]

    def to_header(self) -> str:
        # ASCII-only JSON: a header value cannot carry whatever a token's subject holds.
        return json.dumps(msgspec.to_builtins(self), separators=(",", ":"))

    @classmethod
    def from_header(cls, value: str) -> QuotaGrant:
        try:
            return msgspec.json.decode(value, type=cls)
        except msgspec.DecodeError:
            raise InvalidInput.for_field(
                INGEST_QUOTA_HEADER,
                "invalid",
                detail=f"{INGEST_QUOTA_HEADER} is not valid (only the gateway sends it)",
            ) from None

    def refusal(self, what: str) -> str:
        """Why ``what`` (a request, a page) is refused, naming the quota."""
        return (
            f"{what} would pass the {self.bytes_per_day} bytes of documents this credential "
            "may send per UTC day (INGEST_BYTES_PER_DAY or the key's own quota)"
        )


def seconds_left_today(now: float | None = None) -> float:
    now = time.time() if now is None else now
    return (int(now // DAY_SECONDS) + 1) * DAY_SECONDS - now


class DailyIngestBytes:
    """The counters, shared by every gateway replica and every ingest worker."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._take = redis.register_script(TAKE_SCRIPT)

    def _counter(self, grant: QuotaGrant, now: float) -> str:
        return self.keys.ingest_quota(grant.identity, int(now // DAY_SECONDS))

    async def spend(self, grant: QuotaGrant, amount: int) -> bool:
        """Count ``amount`` bytes if they fit in today's quota; a refusal counts nothing."""
        now = time.time()
        allowed, _pttl = await self._take(
            keys=[self._counter(grant, now)],
            args=[amount, grant.bytes_per_day, int(seconds_left_today(now) * 1000) + 60_000],
        )
        return bool(int(allowed))

    async def remaining(self, grant: QuotaGrant) -> int:
        used = await self.redis.get(self._counter(grant, time.time()))
        return max(0, grant.bytes_per_day - int(used or 0))
