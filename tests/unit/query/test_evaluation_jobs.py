"""A background evaluation running when its query service stops is recorded as interrupted,
not left "running" for a week (a client following it would wait all that time)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import msgspec
from rag_core.catalog import Keys
from rag_query.evaluation.service import EvaluationJobs, EvaluationRecord


class MemoryRedis:
    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}

    async def set(self, key: str, value: bytes, ex: int | None = None) -> None:
        self.values[key] = value

    async def get(self, key: str) -> bytes | None:
        return self.values.get(key)


class NoLimit:
    """Slots that are never short (their Redis accounting is tested end to end)."""

    async def take(self, *_: Any) -> None:
        pass

    async def keep(self, *_: Any) -> None:
        await asyncio.sleep(3600)

    async def give_back(self, *_: Any) -> None:
        pass


class Endless:
    async def run(self, *_: Any) -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {}


def test_stopping_the_service_fails_running_evaluations_with_the_reason() -> None:
    async def scenario() -> EvaluationRecord | None:
        redis = MemoryRedis()
        jobs = EvaluationJobs(
            cast(Any, redis), Keys("rag"), cast(Any, Endless()), cast(Any, NoLimit())
        )
        plan = SimpleNamespace(collection="c", cases=[1, 2])
        started = await jobs.start(cast(Any, plan), "default")
        await asyncio.sleep(0.05)
        assert (await jobs.get("default", started.id)).state == "running"  # type: ignore[union-attr]
        await jobs.close()
        return await jobs.get("default", started.id)

    record = asyncio.run(scenario())
    assert record is not None
    assert record.state == "failed"
    assert record.error == "interrupted: the query service stopped"
    assert msgspec.to_builtins(record)["collection"] == "c"
