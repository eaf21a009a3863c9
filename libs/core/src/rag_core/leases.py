"""Leases counted in Redis, shared by every replica: how many of something may run at once.

A lease is a member of one or more sorted sets (a tenant's, a credential's), scored by when it
lapses. The process holding it renews it every third of the lease time and drops it when the
work ends; a process that dies stops renewing, and its leases lapse by themselves, where a
plain counter would keep a place for ever for every piece of work a dead replica took with
it. Times are Redis's own clock, so replicas whose clocks differ count alike. Each set expires
a lease time after its last write: nothing stays behind.

Used for streams and uploads at the gateway and background evaluations at the query service.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

_NOW_MS = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
"""
# KEYS: the sets; ARGV: lease ms, lease id, then one limit per set. Drops lapsed leases, then
# adds this one to every set if each has room. Returns 0 (taken) or the 1-based index of the
# first set that is at its limit.
_TAKE = (
    _NOW_MS
    + """
for i = 1, #KEYS do redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now) end
for i = 1, #KEYS do
  if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[2 + i]) then return i end
end
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], now + tonumber(ARGV[1]), ARGV[2])
  redis.call('PEXPIRE', KEYS[i], ARGV[1])
end
return 0
"""
)
# KEYS: the sets of one lease; ARGV: lease ms, lease id, '1' to take a lapsed lease back.
# Pushes the lapse back; without '1' a lease dropped meanwhile stays dropped (ZADD XX).
# Returns how many sets the lease had lapsed from and was taken back into.
_RENEW = (
    _NOW_MS
    + """
local back = 0
for i = 1, #KEYS do
  if ARGV[3] == '1' then
    back = back + redis.call('ZADD', KEYS[i], now + tonumber(ARGV[1]), ARGV[2])
  else
    redis.call('ZADD', KEYS[i], 'XX', now + tonumber(ARGV[1]), ARGV[2])
  end
  redis.call('PEXPIRE', KEYS[i], ARGV[1])
end
return back
"""
)


class Leases:
    """Take, renew and drop leases of ``lease_seconds`` in sets of Redis sorted sets."""

    def __init__(self, redis: Redis, lease_seconds: float) -> None:
        self.redis = redis
        self.lease_seconds = lease_seconds
        self._take = redis.register_script(_TAKE)
        self._renew = redis.register_script(_RENEW)

    @property
    def lease_ms(self) -> int:
        return int(self.lease_seconds * 1000)

    async def take(self, lease_id: str, limits: Sequence[tuple[str, int]]) -> int:
        """Add ``lease_id`` to every set if each holds fewer live leases than its limit:
        0 when taken, else the 1-based position in ``limits`` of the first set that is full."""
        keys = [key for key, _ in limits]
        args: list[str | int] = [self.lease_ms, lease_id, *(limit for _, limit in limits)]
        return int(await self._take(keys=keys, args=args))

    async def renew(self, lease_id: str, keys: Sequence[str], *, take_back: bool = False) -> int:
        """Push back the lapse of ``lease_id``; ``take_back``: a lease that lapsed meanwhile
        (its holder stalled) counts again. Returns how many sets it was taken back into."""
        args: list[str | int] = [self.lease_ms, lease_id, "1" if take_back else "0"]
        return int(await self._renew(keys=list(keys), args=args))

    async def renew_in(self, pipe: Pipeline, lease_id: str, keys: Sequence[str]) -> None:
        """Queue the renewal of a lease (never taken back) in ``pipe``."""
        await self._renew(keys=list(keys), args=[self.lease_ms, lease_id, "0"], client=pipe)

    async def drop(self, lease_id: str, keys: Sequence[str]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zrem(key, lease_id)
            await pipe.execute()
