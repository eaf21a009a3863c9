"""Every collection as this replica serves it: its BM25 index, the active version of each of
its documents, and the collection version those reflect (which the answer cache keys on).
Built from the chunk store at start and kept current by following the collections' change
streams.

Ingest appends every switch and delete to ``<prefix>:changes:<ns>:<collection>``; this task
reads all those streams with one blocking read, so a change reaches the index within a second.
Every replica builds from the same source (Chroma plus the active-version records) and applies
the same changes in stream order, so every replica answers alike; after a restart it builds
again. The index's map of active versions also decides which dense hits are current, so one
search never mixes two versions of a document.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from rag_core.catalog import Collection, CollectionCatalog, Keys
from rag_core.chunks import ChunkStore, CollectionMissing, indexed_text
from rag_core.errors import DependencyUnavailable
from rag_telemetry import get_logger
from redis.asyncio import Redis
from redis.exceptions import RedisError

from rag_query.retrieval.analyzer import Analyzer
from rag_query.retrieval.lexical import AnalyzedChunk, IndexedChunk, LexicalIndex

log = get_logger("rag.lexical")
FETCH_DOCUMENTS = 100  # documents per batch while building
BLOCK_MS = 1000


Where = tuple[str, str]  # (namespace, collection)


@dataclass
class _Followed:
    namespace: str
    name: str
    chroma_id: str
    index: LexicalIndex
    cursor: str  # the last change applied
    version: int  # the collection version that change made
    former: set[str] = field(default_factory=set)  # Chroma ids it moved from (re-embeddings)

    @property
    def key(self) -> Where:
        return (self.namespace, self.name)


class ServedCollections:
    """This replica's view of every collection, one ``LexicalIndex`` each (which also maps
    each document to its active version)."""

    def __init__(
        self,
        redis: Redis,
        chunks: ChunkStore,
        keys: Keys,
        *,
        k1: float,
        b: float,
    ) -> None:
        self.redis = redis
        self.chunks = chunks
        self.keys = keys
        self.catalog = CollectionCatalog(redis, keys)
        self.k1 = k1
        self.b = b
        self.analyzer = Analyzer()
        self._followed: dict[Where, _Followed] = {}
        self._building: dict[Where, asyncio.Lock] = {}
        # Analysis off the event loop, one thread: the stemmer is not thread-safe.
        self._analysis = ThreadPoolExecutor(max_workers=1, thread_name_prefix="analyze")
        self.started = False
        self.lag_seconds = 0.0

    def get(self, namespace: str, collection: str) -> LexicalIndex | None:
        followed = self._followed.get((namespace, collection))
        return followed.index if followed else None

    async def ensure(self, collection: Collection) -> LexicalIndex:
        """The collection's index, built now if this replica has not got to it yet (a
        collection created a moment ago): a search waits for the build rather than failing."""
        current = await self._build_if_needed(collection)
        return current.index

    async def _build_if_needed(self, collection: Collection) -> _Followed:
        key = (collection.namespace, collection.name)
        chroma_id = collection.chroma_id
        current = self._followed.get(key)
        if current is not None and current.chroma_id == chroma_id:
            return current
        if current is not None and (
            current.chroma_id in collection.lineage or chroma_id in current.former
        ):
            # Re-embedded: the same chunks (ids, text, versions) are in another Chroma
            # collection now (or the caller read the collection before the switch this index
            # has followed). The index stays; following the change stream, it reads what
            # changed before the switch from the former one and what changed after from the
            # new one (the switch is an entry of the stream).
            return current
        async with self._building.setdefault(key, asyncio.Lock()):
            current = self._followed.get(key)
            if current is None or current.chroma_id != chroma_id:
                current = await self._build(collection.namespace, collection.name, chroma_id)
                self._followed[key] = current
            return current

    def version(self, collection: Collection) -> int | None:
        """The collection version this replica's index reflects: what an answer computed now
        is based on (the answer cache keys on it, so it never serves a stale answer). None
        while the index is of an earlier collection of that name (deleted, then re-created)."""
        followed = self._followed.get((collection.namespace, collection.name))
        if followed is None or followed.chroma_id != collection.chroma_id:
            return None
        return followed.version

    async def check_ready(self) -> None:
        """For /ready: every collection is indexed and its changes are being followed."""
        if not self.started:
            raise DependencyUnavailable("the lexical index is still being built")

    async def run(self) -> None:
        """Build, then follow, until cancelled; Redis or Chroma outages are waited out."""
        delay = 0.5
        while True:
            try:
                await self._sync_collections()
                self.started = True
                await self._follow_once()
                delay = 0.5
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, DependencyUnavailable, CollectionMissing) as exc:
                log.warning("lexical_follow_failed", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    def close(self) -> None:
        self._analysis.shutdown(wait=False, cancel_futures=True)

    async def _sync_collections(self) -> None:
        """Start following new collections (building their index), drop deleted ones."""
        wanted: set[Where] = set()
        for namespace in await self.catalog.namespaces():
            for name in await self.catalog.names(namespace):
                collection = await self.catalog.find(namespace, name)
                if collection is None:
                    continue
                wanted.add((namespace, name))
                await self._build_if_needed(collection)
        for gone in set(self._followed) - wanted:
            del self._followed[gone]
            self._building.pop(gone, None)
            log.info("lexical_index_dropped", namespace=gone[0], collection=gone[1])

    async def _build(self, namespace: str, name: str, chroma_id: str) -> _Followed:
        started = time.perf_counter()
        # Changes after this point are replayed on top of what is read below (idempotently).
        # The Chroma collection is read with it: a caller's may be from before a re-embedding
        # whose switch is already behind that point, and would never be followed away from.
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xrevrange(self.keys.changes(namespace, name), count=1)
            pipe.hmget(self.keys.collection(namespace, name), ["chroma_id", "lineage"])
            last, (current, lineage) = await pipe.execute()
        chroma_id = current.decode() if current else chroma_id
        former = set(lineage.decode().split()) if lineage else set()
        cursor = last[0][0].decode() if last else "0-0"
        version = int(last[0][1].get(b"collection_version", 0)) if last else 0
        index = LexicalIndex(self.analyzer, k1=self.k1, b=self.b)
        ids = [
            i.decode() for i in await self.redis.zrange(self.keys.documents(namespace, name), 0, -1)
        ]
        for start in range(0, len(ids), FETCH_DOCUMENTS):
            batch = ids[start : start + FETCH_DOCUMENTS]
            records = await self.catalog.documents(namespace, name, batch)
            wanted = {doc: record.tag for doc, record in records.items()}
            await self._apply(index, chroma_id, wanted, removed=())
        log.info(
            "lexical_index_built",
            namespace=namespace,
            collection=name,
            documents=len(index.documents),
            chunks=len(index),
            seconds=round(time.perf_counter() - started, 2),
        )
        return _Followed(namespace, name, chroma_id, index, cursor, version, former)

    async def _apply(
        self,
        index: LexicalIndex,
        chroma_id: str,
        wanted: dict[str, str],
        removed: Iterable[str],
    ) -> None:
        """Load the chunks of ``wanted`` (document -> tag) from the store and index them."""
        for document_id in removed:
            index.remove_document(document_id)
        stored = await self.chunks.versions(chroma_id, wanted)
        chunks = {
            doc: [IndexedChunk(c.id, indexed_text(c), c.metadata) for c in found]
            for doc, found in stored.items()
        }
        analyzed = await asyncio.get_running_loop().run_in_executor(
            self._analysis, _analyze_all, index, chunks
        )
        for doc, found_chunks in analyzed.items():
            index.apply_document(doc, wanted[doc], found_chunks)

    async def _apply_moving(
        self, followed: _Followed, wanted: dict[str, str], removed: set[str], moved_to: str
    ) -> None:
        """Apply the changes made before a re-embedding's switch, from the former Chroma
        collection; if that one is dropped already (this replica lagged more than
        VERSION_GRACE_SECONDS), from the new one, which had every active version at the
        switch."""
        try:
            await self._apply(followed.index, followed.chroma_id, wanted, removed)
        except CollectionMissing:
            await self._apply(followed.index, moved_to, wanted, removed)

    async def _follow_once(self) -> None:
        if not self._followed:
            await asyncio.sleep(BLOCK_MS / 1000)
            return
        by_stream = {self.keys.changes(f.namespace, f.name): f for f in self._followed.values()}
        streams: dict[Any, Any] = {stream: f.cursor for stream, f in by_stream.items()}
        reply: Any = await self.redis.xread(streams, count=1000, block=BLOCK_MS)
        for stream, entries in reply or []:
            followed = by_stream.get(stream.decode())
            if followed is None or self._followed.get(followed.key) is not followed:
                continue
            wanted: dict[str, str] = {}
            removed: set[str] = set()
            dropped = False
            cursor, version = followed.cursor, followed.version
            for entry_id, raw in entries:
                fields = {k.decode(): v.decode() for k, v in raw.items()}
                op, doc = fields.get("op"), fields.get("document_id", "")
                if op == "upsert":
                    wanted[doc] = fields["version"]
                    removed.discard(doc)
                elif op == "delete":
                    wanted.pop(doc, None)
                    removed.add(doc)
                elif op == "collection_deleted":
                    dropped = True
                elif op == "reembedded":
                    # What changed before the switch is read where it was written.
                    await self._apply_moving(followed, wanted, removed, fields["chroma_id"])
                    followed.former.add(followed.chroma_id)
                    followed.chroma_id, wanted, removed = fields["chroma_id"], {}, set()
                    log.info(
                        "lexical_index_moved",
                        namespace=followed.namespace,
                        collection=followed.name,
                    )
                if "collection_version" in fields:
                    version = int(fields["collection_version"])
                cursor = entry_id.decode()
            if dropped:
                self._followed.pop(followed.key, None)  # rebuilt if the name comes back
                continue
            try:
                await self._apply(followed.index, followed.chroma_id, wanted, removed)
            except CollectionMissing:
                # Its Chroma collection was dropped before this replica got here (it lagged
                # past a re-embedding's grace period): built again from the current one.
                log.warning(
                    "lexical_index_rebuilt",
                    namespace=followed.namespace,
                    collection=followed.name,
                    reason="its Chroma collection is gone",
                )
                self._followed.pop(followed.key, None)
                continue
            # Only now: until the index has the changes, answers must not claim their version.
            followed.cursor, followed.version = cursor, version
            with contextlib.suppress(ValueError):
                self.lag_seconds = time.time() - int(cursor.split("-")[0]) / 1000


def _analyze_all(
    index: LexicalIndex, chunks: dict[str, list[IndexedChunk]]
) -> dict[str, list[AnalyzedChunk]]:
    return {doc: index.analyze(found) for doc, found in chunks.items()}
