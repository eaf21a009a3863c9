"""Clients of the backing services, built in a lifespan and closed with it."""

from __future__ import annotations

from rag_config import PoolSettings, RedisSettings
from redis.asyncio import BlockingConnectionPool, Redis

REDIS_POOL_TIMEOUT_SECONDS = 5.0


def create_redis(
    redis: RedisSettings, pool: PoolSettings, *, max_connections: int | None = None
) -> Redis:
    """A pooled Redis client; connects lazily, so a Redis that is down does not stop start-up.
    ``max_connections`` overrides MAX_CONNECTIONS for a pool with a purpose of its own."""
    connection_pool = BlockingConnectionPool.from_url(
        redis.redis_url.get_secret_value(),
        max_connections=max_connections or pool.max_connections,
        timeout=REDIS_POOL_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_POOL_TIMEOUT_SECONDS,
        health_check_interval=30,
    )
    return Redis(connection_pool=connection_pool)
