"""Following a job's events: blocking reads on its Redis stream, on a pool of their own.

A follower waits for new events with a blocking read that holds a Redis connection for up to
the heartbeat interval. On the API's pool, a few hundred followers would starve every other
request of connections; here they have MAX_EVENT_STREAMS connections of their own, and one
follower more is answered 503 with Retry-After instead of waiting.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from rag_core.catalog import Keys
from rag_core.errors import DependencyUnavailable
from redis.asyncio import Redis


class TooManyStreams(DependencyUnavailable):
    problem = "too-many-event-streams"
    title = "Too many event streams"


class EventStreams:
    def __init__(self, redis: Redis, keys: Keys, *, limit: int) -> None:
        self.redis = redis
        self.keys = keys
        self.limit = limit
        self.open = 0

    def check_capacity(self) -> None:
        if self.open >= self.limit:
            raise TooManyStreams(
                f"{self.open} job event streams are open, the most this process serves "
                "(MAX_EVENT_STREAMS); poll GET /v1/jobs/{id} or try again shortly",
                extra={"limit": "MAX_EVENT_STREAMS"},
                headers={"Retry-After": "5"},
            )

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        self.open += 1
        try:
            yield
        finally:
            self.open -= 1

    async def read(
        self, job_id: str, *, after: str, block_ms: int
    ) -> list[tuple[str, dict[str, str]]]:
        """Events after ``after`` (a stream id); waits up to ``block_ms`` for new ones."""
        reply: Any = await self.redis.xread({self.keys.job_events(job_id): after}, block=block_ms)
        return [
            (entry_id.decode(), {k.decode(): v.decode() for k, v in fields.items()})
            for _stream, entries in reply or []
            for entry_id, fields in entries
        ]

    async def close(self) -> None:
        await self.redis.aclose()
