"""Collections: a Redis record (model, dimension, counters) plus one Chroma collection.

Create never leaves half a collection behind: if Chroma refuses, the record is removed again.
A collection's embedding model is set at creation and changed only by a re-embedding
(reembedding/); every change bumps its ``version``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from rag_core.catalog import Collection, CollectionCatalog, Keys
from rag_core.chunks import ChunkStore
from rag_core.embedding.models import ModelSpec, model_spec
from rag_core.errors import Conflict
from rag_core.tenancy import COLLECTION_PATTERN, check_collection_name
from redis.asyncio import Redis

NAME_PATTERN = COLLECTION_PATTERN

CLAIM_EXPIRY_SECONDS = 120

# KEYS: the collection record. ARGV: name, new Chroma name, now, claim expiry.
# Returns the Chroma name to create, or false if the name is taken.
_CLAIM = """
local chroma_id = redis.call('HGET', KEYS[1], 'chroma_id')
local claimed_at = tonumber(redis.call('HGET', KEYS[1], 'claimed_at') or '0')
if chroma_id or (redis.call('EXISTS', KEYS[1]) == 1
                 and tonumber(ARGV[3]) - claimed_at < tonumber(ARGV[4])) then
  return false
end
local chroma_name = redis.call('HGET', KEYS[1], 'chroma_name') or ARGV[2]
redis.call('HSET', KEYS[1], 'name', ARGV[1], 'chroma_name', chroma_name, 'claimed_at', ARGV[3])
return chroma_name
"""


def validate_name(name: str) -> str:
    return check_collection_name(name)


class CollectionRegistry(CollectionCatalog):
    def __init__(
        self,
        redis: Redis,
        chunks: ChunkStore,
        keys: Keys,
        check_model: Callable[[str], ModelSpec] = model_spec,
    ) -> None:
        super().__init__(redis, keys)
        self.check_model = check_model
        self.chunks = chunks
        self._claim_script = redis.register_script(_CLAIM)

    async def create(self, tenant: str, name: str, model: str, description: str = "") -> Collection:
        validate_name(name)
        spec = self.check_model(model)
        key = self.keys.collection(tenant, name)
        chroma_name = await self._claim(key, name)
        try:
            metadata = {"rag_model": model, "rag_dimension": spec.dimension}
            try:
                created = await self.chunks.create_collection(chroma_name, metadata)
            except Conflict:
                # Our own claim's collection, left by a create that died half-way.
                existing = await self.chunks.get_collection(chroma_name)
                if existing is None or existing.metadata.get("rag_model") != model:
                    raise
                created = existing
            now = time.time()
            await self.redis.hset(  # type: ignore[misc]  # redis-py's async typing
                key,
                mapping={
                    "model": model,
                    "dimension": spec.dimension,
                    "chroma_id": created.id,
                    "created_at": now,
                    "version": 0,
                    "chunk_count": 0,
                    "description": description,
                },
            )
            await self.redis.zadd(self.keys.collections(tenant), {name: now})
            await self.redis.sadd(self.keys.namespaces(), tenant)  # type: ignore[misc]  # redis-py's async typing
        except BaseException:
            await self.redis.delete(key)
            with contextlib.suppress(Exception):
                await self.chunks.delete_collection(chroma_name)
            raise
        return await self.get(tenant, name)

    async def _claim(self, key: str, name: str) -> str:
        """Claim the name atomically (two concurrent creates cannot both succeed) together
        with the opaque Chroma name the collection will have. A claim left by a create that
        died before finishing is taken over once it is CLAIM_EXPIRY_SECONDS old."""
        claimed = await self._claim_script(
            keys=[key],
            args=[name, self.keys.new_chroma_name(), time.time(), CLAIM_EXPIRY_SECONDS],
        )
        if not claimed:
            raise Conflict(f"collection {name!r} already exists")
        return claimed.decode() if isinstance(claimed, bytes) else str(claimed)

    async def delete(self, tenant: str, name: str) -> Collection:
        """Remove the collection, its chunks in Chroma and every record of its documents."""
        collection = await self.get(tenant, name)
        await self.chunks.delete_collection(
            collection.chroma_name or self.keys.legacy_chroma_name(tenant, name)
        )
        if collection.migration is not None and collection.migration.chroma_name:
            # A re-embedding's shadow goes too (its job stops at its next step). Former
            # collections of earlier re-embeddings are dropped when their drop is due.
            await self.chunks.delete_collection(collection.migration.chroma_name)
        doomed: list[Any] = [
            self.keys.collection(tenant, name),
            self.keys.documents(tenant, name),
            self.keys.content_hashes(tenant, name),
        ]
        for pattern in self.keys.per_document_patterns(tenant, name):
            async for key in self.redis.scan_iter(match=pattern, count=500):
                doomed.append(key)
        async with self.redis.pipeline(transaction=True) as pipe:
            for start in range(0, len(doomed), 500):
                pipe.delete(*doomed[start : start + 500])
            pipe.zrem(self.keys.collections(tenant), name)
            pipe.xadd(
                self.keys.changes(tenant, name),
                {"op": "collection_deleted"},
                maxlen=10_000,
                approximate=True,
            )
            await pipe.execute()
        return collection
