"""Leases on a REAL Redis (``rag_core.leases``, behind stream, upload and evaluation limits):
taken only where every set has room, renewed, taken back after a stall only when asked, and
dropped."""

from __future__ import annotations

import uuid

import pytest
from rag_core.leases import Leases
from redis.asyncio import Redis

from tests.conftest import Backing

pytestmark = pytest.mark.integration


async def test_a_lease_needs_room_in_every_set_and_says_which_is_full(
    redis_server: Backing,
) -> None:
    redis = Redis.from_url(redis_server.redis_url)
    tenant, caller = (f"t{uuid.uuid4().hex}:{part}" for part in ("tenant", "caller"))
    leases = Leases(redis, 60)
    try:
        assert await leases.take("a", [(tenant, 3), (caller, 1)]) == 0
        assert await leases.take("b", [(tenant, 3), (caller, 1)]) == 2, "the caller's set is full"
        assert await redis.zcard(tenant) == 1, "a refused lease is in no set"
        assert await leases.take("b", [(tenant, 1), (caller, 5)]) == 1, "the tenant's set is full"
        await leases.drop("a", [tenant, caller])
        assert await leases.take("b", [(tenant, 1), (caller, 1)]) == 0
    finally:
        await redis.delete(tenant, caller)
        await redis.aclose()


async def test_renewing_moves_the_lapse_and_takes_back_a_lapsed_lease_only_when_asked(
    redis_server: Backing,
) -> None:
    redis = Redis.from_url(redis_server.redis_url)
    key = f"t{uuid.uuid4().hex}:set"
    leases = Leases(redis, 60)
    try:
        assert await leases.take("run", [(key, 1)]) == 0
        lapse = await redis.zscore(key, "run")
        await redis.zadd(key, {"run": lapse - 30_000}, xx=True)  # half its time went by
        assert await leases.renew("run", [key]) == 0
        assert await redis.zscore(key, "run") >= lapse
        await redis.zadd(key, {"run": 0}, xx=True)  # it lapsed: a stall longer than the lease
        assert await leases.take("other", [(key, 1)]) == 0, "a lapsed lease frees its place"
        await leases.drop("other", [key])
        # A dropped stream's lease stays dropped; a stalled evaluation counts again.
        assert await leases.renew("run", [key]) == 0
        assert await redis.zscore(key, "run") is None
        assert await leases.renew("run", [key], take_back=True) == 1
        assert await redis.zscore(key, "run") is not None
        assert 0 < await redis.pttl(key) <= 60_000
    finally:
        await redis.delete(key)
        await redis.aclose()
