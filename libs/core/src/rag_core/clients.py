"""Clients of the backing services, built in a lifespan and closed with it."""

from __future__ import annotations

import httpx
from rag_config import ChromaSettings, PoolSettings, RedisSettings
from redis.asyncio import BlockingConnectionPool, Redis

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


class ChromaClient:
    """Chroma's HTTP API over one pooled httpx client with timeouts.

    Not chromadb's own async client: that one has no request timeout (a hung Chroma would
    hang every request), shares its connection pool across instances, and has no public way
    to close it. Creating this client does not connect, so a service starts while Chroma is
    down and turns ready when it answers.
    """

    def __init__(self, settings: ChromaSettings, pool: PoolSettings) -> None:
        scheme = "https" if settings.chroma_ssl else "http"
        self.base_url = f"{scheme}://{settings.chroma_host}:{settings.chroma_port}"
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(settings.chroma_timeout_seconds),
            limits=httpx.Limits(
                max_connections=pool.max_connections,
                max_keepalive_connections=pool.pool_size,
            ),
        )

    async def heartbeat(self) -> int:
        response = await self._http.get("/api/v2/heartbeat")
        response.raise_for_status()
        return int(response.json()["nanosecond heartbeat"])

    async def close(self) -> None:
        await self._http.aclose()
