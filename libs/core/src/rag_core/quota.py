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
from dataclasses import dataclass, field
from typing import Annotated

import msgspec
from rag_telemetry import get_logger
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from rag_core.catalog import Keys
from rag_core.errors import InvalidInput

log = get_logger("rag.quota")

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

# KEYS: counter; ARGV: amount. Gives back at most what the counter holds (never below 0, and
# never makes a counter that has lapsed); keeps its expiry. Returns what was given back.
GIVE_BACK_SCRIPT = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local back = math.min(used, tonumber(ARGV[1]))
if back > 0 then redis.call('DECRBY', KEYS[1], back) end
return back
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


@dataclass
class QuotaCharge:
    """Bytes counted against one day's quota (that day's counter, even when the work ends
    after midnight), to give back once if the work is refused after all."""

    counter: str
    amount: int
    _give_back: AsyncScript = field(repr=False)
    _given_back: bool = field(default=False, init=False)

    async def refund(self) -> None:
        """Give the bytes back (once); a Redis failure only loses the refund, never the answer."""
        if self._given_back:
            return
        self._given_back = True
        try:
            await self._give_back(keys=[self.counter], args=[self.amount])
        except Exception as exc:  # the caller's answer matters more than the refund
            log.warning("ingest_quota_refund_failed", error=type(exc).__name__)


class DailyIngestBytes:
    """The counters, shared by every gateway replica and every ingest worker."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._take = redis.register_script(TAKE_SCRIPT)
        self._give_back = redis.register_script(GIVE_BACK_SCRIPT)

    def _counter(self, grant: QuotaGrant, now: float) -> str:
        return self.keys.ingest_quota(grant.identity, int(now // DAY_SECONDS))

    async def charge(self, grant: QuotaGrant, amount: int) -> QuotaCharge | None:
        """Count ``amount`` bytes if they fit in today's quota: the charge, to refund if the
        work is refused; None when they do not fit (nothing counted)."""
        now = time.time()
        counter = self._counter(grant, now)
        allowed, _pttl = await self._take(
            keys=[counter],
            args=[amount, grant.bytes_per_day, int(seconds_left_today(now) * 1000) + 60_000],
        )
        return QuotaCharge(counter, amount, self._give_back) if int(allowed) else None

    async def spend(self, grant: QuotaGrant, amount: int) -> bool:
        """Count ``amount`` bytes if they fit in today's quota; a refusal counts nothing."""
        return await self.charge(grant, amount) is not None

    async def remaining(self, grant: QuotaGrant) -> int:
        used = await self.redis.get(self._counter(grant, time.time()))
        return max(0, grant.bytes_per_day - int(used or 0))
