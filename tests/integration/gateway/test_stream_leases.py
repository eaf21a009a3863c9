"""The open-stream counts on a REAL Redis: a lease is renewed while its stream is served, given
back when it ends, and one a dead gateway left behind lapses by itself."""

from __future__ import annotations

import uuid

import pytest
from rag_core.catalog import Keys
from rag_gateway.auth.principal import Principal
from rag_gateway.limits import TooManyRequests
from rag_gateway.streams import LEASE_SECONDS, StreamLeases
from redis.asyncio import Redis

from tests.conftest import Backing

pytestmark = pytest.mark.integration


async def test_leases_are_renewed_given_back_and_lapse(redis_server: Backing) -> None:
    redis = Redis.from_url(redis_server.redis_url)
    leases = StreamLeases(redis, Keys(f"t{uuid.uuid4().hex[:12]}"), per_tenant=2, per_credential=2)
    caller = Principal("key:abc", "acme", frozenset({"ingest:read"}))
    try:
        first = await leases.open(caller)
        second = await leases.open(caller)
        with pytest.raises(TooManyRequests) as refused:
            await leases.open(caller)
        assert refused.value.extra["limit"] == "MAX_STREAMS_PER_TENANT"
        tenant_set = first.keys[0]

        # Served streams are renewed: their lapse moves on.
        first.serving()
        before = await redis.zscore(tenant_set, first.id)
        await redis.zadd(tenant_set, {first.id: before - 30_000}, xx=True)
        await leases.renew()
        assert await redis.zscore(tenant_set, first.id) >= before
        assert 0 < await redis.pttl(tenant_set) <= LEASE_SECONDS * 1000

        # A lease whose gateway died (never renewed) lapses, and frees its place.
        for key in second.keys:
            await redis.zadd(key, {second.id: 1}, xx=True)
        third = await leases.open(caller)

        # Ended streams count no more, at once.
        await first.release()
        fourth = await leases.open(caller)
        assert set(await redis.zrange(tenant_set, 0, -1)) == {
            third.id.encode(),
            fourth.id.encode(),
        }
        third.close()  # without waiting (a client gone away): dropped in the background
        await leases.close_all()
        fourth.close()
        await leases.close_all()
        assert await redis.zcard(tenant_set) == 0
    finally:
        await redis.aclose()
