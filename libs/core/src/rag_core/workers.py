"""Which ingest workers are alive, kept as an index: every worker scores its id with the time
of its heartbeat in one sorted set, so counting the live ones is one command however many keys
Redis holds (no walk of the keyspace). Times are Redis's own clock, so hosts whose clocks
differ still agree."""

from __future__ import annotations

from redis.asyncio import Redis

from rag_core.catalog import Keys

LIVE_SECONDS = 15  # a worker whose last heartbeat is older counts as gone

# KEYS: the set; ARGV: worker id, seconds a heartbeat stays live. Also drops workers long gone,
# so the set holds only the workers of the last LIVE_SECONDS.
_BEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
return 1
"""
# KEYS: the set; ARGV: seconds a heartbeat stays live.
_COUNT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
return redis.call('ZCOUNT', KEYS[1], now - tonumber(ARGV[1]), '+inf')
"""


class LiveWorkers:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.key = keys.live_workers()
        self._beat = redis.register_script(_BEAT)
        self._count = redis.register_script(_COUNT)

    async def beat(self, worker_id: str) -> None:
        """``worker_id`` is alive now."""
        await self._beat(keys=[self.key], args=[worker_id, LIVE_SECONDS])

    async def leave(self, worker_id: str) -> None:
        """``worker_id`` stopped: it no longer counts, without waiting for LIVE_SECONDS."""
        await self.redis.zrem(self.key, worker_id)

    async def count(self) -> int:
        """Workers whose last heartbeat is at most LIVE_SECONDS old."""
        return int(await self._count(keys=[self.key], args=[LIVE_SECONDS]))
