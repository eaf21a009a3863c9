"""GET /v1/system costs the same few Redis commands however many keys Redis holds: it reads
counters and indexes, never walks the keyspace (SCAN, KEYS)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
import redis
from rag_core.catalog import Keys
from rag_core.workers import LiveWorkers
from redis.asyncio import Redis as AsyncRedis

from tests.conftest import Backing
from tests.integration.gateway.conftest import ADMIN_KEY, GatewayFactory

pytestmark = pytest.mark.integration
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def command_calls(client: redis.Redis) -> dict[str, int]:
    """Calls per command since Redis started (INFO commandstats), INFO itself left out."""
    stats = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): int(fields["calls"])
        for name, fields in stats.items()
        if name != "cmdstat_info"
    }


def spent(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: calls - before.get(name, 0) for name, calls in after.items()} | dict.fromkeys(
        before.keys() - after.keys(), 0
    )


def test_system_info_does_not_walk_the_keyspace(
    gateway: GatewayFactory, redis_server: Backing
) -> None:
    direct = redis.Redis.from_url(redis_server.redis_url)
    with gateway(rate_limit_per_minute=1000) as client:
        prefix = client.app.state.settings.redis_prefix
        assert client.get("/v1/system", headers=ADMIN).status_code == 200  # warm: scripts loaded

        def one_call() -> dict[str, int]:
            before = command_calls(direct)
            answer = client.get("/v1/system", headers=ADMIN)
            assert answer.status_code == 200, answer.text
            used = {name: n for name, n in spent(before, command_calls(direct)).items() if n}
            assert answer.json()["queue"] == {"depth": 0, "workers": 0}
            return used

        few = one_call()
        # Many more keys (a deployment's documents, jobs, sessions): the answer costs the same.
        with direct.pipeline(transaction=False) as pipe:
            for i in range(10_000):
                pipe.set(f"{prefix}:doc:{i}", "x")
            pipe.execute()
        many = one_call()
    assert "scan" not in many, many
    assert "keys" not in many, many
    assert many == few
    assert sum(many.values()) <= 12, many  # a handful (scripts count their own commands)


def test_workers_are_counted_from_their_heartbeats(
    gateway: GatewayFactory, redis_server: Backing
) -> None:
    """What the worker does (beat every few seconds, leave at shutdown) is what is counted."""
    direct = redis.Redis.from_url(redis_server.redis_url)
    with gateway(rate_limit_per_minute=1000) as client:
        keys = Keys(client.app.state.settings.redis_prefix)

        def workers() -> int:
            answer = client.get("/v1/system", headers=ADMIN)
            assert answer.status_code == 200, answer.text
            return int(answer.json()["queue"]["workers"])

        def as_workers(action: Callable[[LiveWorkers], Awaitable[None]]) -> None:
            async def run() -> None:
                connection = AsyncRedis.from_url(redis_server.redis_url)
                try:
                    await action(LiveWorkers(connection, keys))
                finally:
                    await connection.aclose()

            asyncio.run(run())

        async def three_beat(live: LiveWorkers) -> None:
            for worker_id in ("host-a-1", "host-a-2", "host-b-1"):
                await live.beat(worker_id)

        assert workers() == 0
        as_workers(three_beat)
        # One that stopped beating a minute ago (it was killed) no longer counts.
        direct.zadd(keys.live_workers(), {"host-c-1": time.time() - 60})
        assert workers() == 3
        as_workers(lambda live: live.leave("host-a-2"))
        assert workers() == 2
