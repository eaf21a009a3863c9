"""Clients of the backing services, built in a lifespan and closed with it."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from rag_config import ChromaSettings, PoolSettings, RedisSettings
from redis.asyncio import BlockingConnectionPool, Redis

if TYPE_CHECKING:
    from chromadb.api import AsyncClientAPI

REDIS_POOL_TIMEOUT_SECONDS = 5.0


def create_redis(redis: RedisSettings, pool: PoolSettings) -> Redis:
    """A pooled Redis client; connects lazily, so a Redis that is down does not stop start-up."""
    connection_pool = BlockingConnectionPool.from_url(
        redis.redis_url.get_secret_value(),
        max_connections=pool.max_connections,
        timeout=REDIS_POOL_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_POOL_TIMEOUT_SECONDS,
        health_check_interval=30,
    )
    return Redis(connection_pool=connection_pool)


class ChromaConnection:
    """Chroma's async client, created on first use.

    Creating the client already talks to the server, so it cannot happen at start-up: a service
    must come up (and say "not ready") while Chroma is still starting or down.
    """

    def __init__(self, settings: ChromaSettings) -> None:
        self._settings = settings
        self._client: AsyncClientAPI | None = None
        self._lock = asyncio.Lock()

    async def client(self) -> AsyncClientAPI:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    self._client = await self._connect()
        return self._client

    async def _connect(self) -> AsyncClientAPI:
        import chromadb  # noqa: PLC0415 - heavy import, paid only by services that use Chroma
        from chromadb.config import Settings  # noqa: PLC0415

        return await chromadb.AsyncHttpClient(
            host=self._settings.chroma_host,
            port=self._settings.chroma_port,
            ssl=self._settings.chroma_ssl,
            # Never phone home; never let the client pick an embedding function for us.
            settings=Settings(anonymized_telemetry=False),
        )

    async def heartbeat(self) -> Any:
        client = await self.client()
        return await client.heartbeat()
