"""How many background evaluations a tenant runs at once, counted over every query replica.

Each running evaluation holds a lease: a member of its tenant's sorted set in Redis, scored by
when it lapses. The replica running it renews the lease every third of
EVALUATION_LEASE_SECONDS and removes it when the run ends, fails or is cancelled. A replica
that dies stops renewing, and its leases lapse within EVALUATION_LEASE_SECONDS; a plain
counter would keep a slot forever for every run a dead replica took with it. Times are
Redis's own clock, so replicas whose clocks differ count alike.
"""

from __future__ import annotations

import asyncio

from rag_core.catalog import Keys
from rag_core.errors import TooManyRequests
from rag_telemetry import get_logger
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = get_logger("rag.evaluation")

_NOW_MS = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
"""
# KEYS: the tenant's slots; ARGV: limit, lease ms, evaluation id. 1 when taken, else 0.
# The set itself expires a lease after its last write: nothing stays behind a dead replica.
_TAKE = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
)
# KEYS: the tenant's slots; ARGV: lease ms, evaluation id. 1 when the lease had lapsed.
_RENEW = (
    _NOW_MS
    + """
local added = redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return added
"""
)


class TooManyEvaluations(TooManyRequests):
    problem = "too-many-evaluations"
    title = "Too many evaluations running"


class EvaluationSlots:
    def __init__(self, redis: Redis, keys: Keys, *, per_tenant: int, lease_seconds: int) -> None:
        self.keys = keys
        self.per_tenant = per_tenant
        self.lease_seconds = lease_seconds
        self.redis = redis
        self._take = redis.register_script(_TAKE)
        self._renew = redis.register_script(_RENEW)

    def _slots(self, namespace: str) -> str:
        return self.keys.in_namespace(namespace).evaluation_slots()

    async def take(self, namespace: str, evaluation_id: str) -> None:
        """Hold a slot for ``evaluation_id``, or refuse with 429 when the tenant has none left."""
        taken = await self._take(
            keys=[self._slots(namespace)],
            args=[self.per_tenant, self.lease_seconds * 1000, evaluation_id],
        )
        if not int(taken):
            raise TooManyEvaluations(
                f"this tenant already runs {self.per_tenant} background evaluations, the most "
                "it may run at once over every replica (MAX_EVALUATIONS_PER_TENANT); wait for "
                "one to end (GET /v1/evaluations/{id}), or evaluate a few cases synchronously",
                extra={"limit": "MAX_EVALUATIONS_PER_TENANT", "max_evaluations": self.per_tenant},
                headers={"Retry-After": str(self.lease_seconds)},
            )

    async def keep(self, namespace: str, evaluation_id: str) -> None:
        """Renew the lease until cancelled (when the run ends)."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                lapsed = await self._renew(
                    keys=[self._slots(namespace)], args=[self.lease_seconds * 1000, evaluation_id]
                )
            except RedisError as exc:  # the next renewal may get through before it lapses
                log.warning("evaluation_lease_not_renewed", error=type(exc).__name__)
                continue
            if int(lapsed):
                # This process stalled longer than the lease: the run counts again from now on.
                log.warning("evaluation_lease_lapsed", evaluation_id=evaluation_id)

    async def give_back(self, namespace: str, evaluation_id: str) -> None:
        try:
            await self.redis.zrem(self._slots(namespace), evaluation_id)
        except RedisError as exc:  # the lease lapses by itself
            log.warning("evaluation_slot_not_given_back", error=type(exc).__name__)
