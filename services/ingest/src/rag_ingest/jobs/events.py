"""Following a job's events: blocking reads on its Redis stream, on a pool of their own.

A follower waits for new events with a blocking read that holds a Redis connection for up to
the heartbeat interval. On the API's pool, a few hundred followers would starve every other
request of connections; here they have MAX_EVENT_STREAMS connections of their own, and one
follower more is answered 503 with Retry-After instead of waiting. Each tenant may hold at
most MAX_EVENT_STREAMS_PER_TENANT of them, so one tenant's followers cannot take the pool from
the others: its next one is answered 429.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from rag_core.catalog import Keys
from rag_core.errors import DependencyUnavailable, TooManyRequests
from redis.asyncio import Redis

RETRY_AFTER_SECONDS = "5"


class TooManyStreams(DependencyUnavailable):
    problem = "too-many-event-streams"
    title = "Too many event streams"


class TooManyTenantStreams(TooManyRequests):
    problem = "too-many-tenant-event-streams"
    title = "Too many event streams for this tenant"


class StreamSlot:
    """One open stream's place in the counts, given back exactly once however it ends."""

    def __init__(self, streams: EventStreams, tenant: str) -> None:
        self._streams: EventStreams | None = streams
        self.tenant = tenant

    def release(self) -> None:
        if self._streams is not None:
            streams, self._streams = self._streams, None
            streams.give_back(self.tenant)


class EventStreams:
    def __init__(self, redis: Redis, keys: Keys, *, limit: int, per_tenant: int) -> None:
        self.redis = redis
        self.keys = keys
        self.limit = limit
        self.per_tenant = per_tenant
        self.open = 0
        self.open_by_tenant: Counter[str] = Counter()

    def reserve(self, tenant: str) -> StreamSlot:
        """A place for one more stream of ``tenant``, taken at once (so a burst of requests
        cannot all pass the check before any stream starts). The tenant's own limit is checked
        first: a tenant over it is told so (429), not that the service is busy (503)."""
        if self.open_by_tenant[tenant] >= self.per_tenant:
            raise TooManyTenantStreams(
                f"{self.open_by_tenant[tenant]} job event streams of this tenant are open, the "
                "most one tenant may hold on this process (MAX_EVENT_STREAMS_PER_TENANT); poll "
                "GET /v1/jobs/{id} or close a stream",
                extra={"limit": "MAX_EVENT_STREAMS_PER_TENANT"},
                headers={"Retry-After": RETRY_AFTER_SECONDS},
            )
        if self.open >= self.limit:
            raise TooManyStreams(
                f"{self.open} job event streams are open, the most this process serves "
                "(MAX_EVENT_STREAMS); poll GET /v1/jobs/{id} or try again shortly",
                extra={"limit": "MAX_EVENT_STREAMS"},
                headers={"Retry-After": RETRY_AFTER_SECONDS},
            )
        self.open += 1
        self.open_by_tenant[tenant] += 1
        return StreamSlot(self, tenant)

    def give_back(self, tenant: str) -> None:
        self.open -= 1
        self.open_by_tenant[tenant] -= 1
        if self.open_by_tenant[tenant] <= 0:
            del self.open_by_tenant[tenant]  # no entry kept for every tenant ever seen

    async def read(
        self, job_id: str, *, after: str, block_ms: int | None
    ) -> list[tuple[str, dict[str, str]]]:
        """Events after ``after`` (a stream id); waits up to ``block_ms`` for new ones (None:
        not at all; Redis reads 0 as for ever, so it is never passed)."""
        assert block_ms is None or block_ms > 0
        reply: Any = await self.redis.xread({self.keys.job_events(job_id): after}, block=block_ms)
        return [
            (entry_id.decode(), {k.decode(): v.decode() for k, v in fields.items()})
            for _stream, entries in reply or []
            for entry_id, fields in entries
        ]

    async def close(self) -> None:
        await self.redis.aclose()
