"""How many background evaluations a tenant runs at once, counted over every query replica.

Each running evaluation holds a lease (``rag_core.leases``) in its tenant's set: the replica
running it renews the lease every third of EVALUATION_LEASE_SECONDS and drops it when the run
ends, fails or is cancelled; the leases of a replica that died lapse within
EVALUATION_LEASE_SECONDS.
"""

from __future__ import annotations

import asyncio

from rag_core.catalog import Keys
from rag_core.errors import TooManyRequests
from rag_core.leases import Leases
from rag_telemetry import get_logger
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = get_logger("rag.evaluation")


class TooManyEvaluations(TooManyRequests):
    problem = "too-many-evaluations"
    title = "Too many evaluations running"


class EvaluationSlots:
    def __init__(self, redis: Redis, keys: Keys, *, per_tenant: int, lease_seconds: int) -> None:
        self.keys = keys
        self.per_tenant = per_tenant
        self.lease_seconds = lease_seconds
        self.leases = Leases(redis, lease_seconds)

    def _slots(self, namespace: str) -> str:
        return self.keys.evaluation_slots(namespace)

    async def take(self, namespace: str, evaluation_id: str) -> None:
        """Hold a slot for ``evaluation_id``, or refuse with 429 when the tenant has none left."""
        full = await self.leases.take(evaluation_id, [(self._slots(namespace), self.per_tenant)])
        if full:
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
                lapsed = await self.leases.renew(
                    evaluation_id, [self._slots(namespace)], take_back=True
                )
            except RedisError as exc:  # the next renewal may get through before it lapses
                log.warning("evaluation_lease_not_renewed", error=type(exc).__name__)
                continue
            if lapsed:
                # This process stalled longer than the lease: the run counts again from now on.
                log.warning("evaluation_lease_lapsed", evaluation_id=evaluation_id)

    async def give_back(self, namespace: str, evaluation_id: str) -> None:
        try:
            await self.leases.drop(evaluation_id, [self._slots(namespace)])
        except RedisError as exc:  # the lease lapses by itself
            log.warning("evaluation_slot_not_given_back", error=type(exc).__name__)
