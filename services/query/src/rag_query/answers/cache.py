"""The answer cache: an answer is stored under the collection (its Chroma id, new at every
creation) and version it was computed from, the normalised question and every parameter that
shapes it. Any change to the collection makes a new version, and a collection created again
has a new Chroma id, so a cached answer can never be stale: it is simply not found."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
from rag_core.catalog import Collection, Keys
from redis.asyncio import Redis

from rag_query.metrics import ANSWER_CACHE


def normalise(question: str) -> str:
    return " ".join(question.lower().split())


class AnswerCache:
    def __init__(self, redis: Redis, keys: Keys, *, ttl_seconds: int) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl = ttl_seconds

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    def key(
        self, collection: Collection, version: int, question: str, params: dict[str, Any]
    ) -> str:
        """Keyed by the collection's Chroma id as well as its version: a collection deleted
        and created again starts at version 0 again, and must not find the old answers."""
        identity = msgspec.json.encode(
            {"q": normalise(question), "v": version, "p": params}, order="sorted"
        )
        digest = hashlib.sha256(identity).hexdigest()[:40]
        return self.keys.answer(collection.namespace, collection.name, collection.chroma_id, digest)

    async def get(self, key: str) -> dict[str, Any] | None:
        raw = await self.redis.get(key)
        ANSWER_CACHE.labels("hit" if raw else "miss").inc()
        return msgspec.json.decode(raw) if raw else None

    async def put(self, key: str, answer: dict[str, Any]) -> None:
        await self.redis.set(key, msgspec.json.encode(answer), ex=self.ttl)
