"""Search one collection: dense and lexical retrieval, fused, optionally diversified.

Only chunks of each document's active version are returned, and one search reads every
document's active version from one place (the lexical index's map), so a search running
while a document is replaced returns the old version or the new one, never both.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from rag_config import QuerySettings
from rag_core.catalog import Collection, CollectionCatalog
from rag_core.chunks import ChunkStore, StoredChunk
from rag_core.embedding.base import Embedder
from rag_core.errors import DependencyUnavailable
from rag_core.filters import matches
from redis.exceptions import RedisError

from rag_query.metrics import EMPTY_RETRIEVALS, RETRIEVAL_SECONDS
from rag_query.retrieval.fusion import fuse_rankings, fuse_scores, select_diverse
from rag_query.retrieval.lexical import LexicalIndex
from rag_query.retrieval.served import ServedCollections

Mode = Literal["hybrid", "dense", "lexical"]
Fusion = Literal["rrf", "convex"]
# The least each scorer gives: cosine similarity -1, BM25 0 (convex fusion scales from these).
SCORE_FLOORS = {"dense": -1.0, "lexical": 0.0}


@dataclass(frozen=True)
class SearchRequest:
    query: str
    top_k: int = 10
    mode: Mode = "hybrid"
    where: dict[str, Any] | None = None  # already validated
    mmr: bool = False
    mmr_lambda: float = 0.5
    rrf_k: int = 60
    fusion: Fusion = "rrf"
    dense_weight: float = 1.0
    lexical_weight: float = 1.0
    candidates: int = 100
    max_per_document: int | None = None  # at most this many hits of one document


@dataclass
class Hit:
    chunk_id: str
    chunk: StoredChunk | None = None  # None until read from the store (lexical hits)
    score: float = 0.0
    dense_rank: int | None = None
    lexical_rank: int | None = None
    dense_score: float | None = None
    lexical_score: float | None = None

    @property
    def document_id(self) -> str:
        return self.chunk.document_id if self.chunk else ""

    @property
    def text(self) -> str:
        return self.chunk.text if self.chunk else ""


@dataclass
class SearchResult:
    hits: list[Hit]
    timings: dict[str, float] = field(default_factory=dict)


class Retriever:
    def __init__(
        self,
        chunks: ChunkStore,
        catalog: CollectionCatalog,
        served: ServedCollections,
        embedder_for: Callable[[str], Embedder],
        settings: QuerySettings,
    ) -> None:
        self.chunks = chunks
        self.catalog = catalog
        self.served = served
        self.embedder_for = embedder_for
        self.settings = settings

    async def search(self, collection: Collection, request: SearchRequest) -> SearchResult:
        timings: dict[str, float] = {}
        index = self.served.get(collection.namespace, collection.name)
        if index is None:
            try:
                index = await self.served.ensure(collection)
            except (RedisError, OSError) as exc:
                raise DependencyUnavailable(
                    f"collection {collection.name!r} could not be indexed on this replica yet; "
                    "try again in a moment",
                    headers={"Retry-After": "2"},
                ) from exc
        rankings: dict[str, list[str]] = {}
        found: dict[str, Hit] = {}
        vectors: dict[str, np.ndarray] = {}
        if request.mode in ("dense", "hybrid"):
            started = time.perf_counter()
            rankings["dense"] = await self._dense(collection, index, request, found, vectors)
            timings["dense_ms"] = _ms(started)
        if request.mode in ("lexical", "hybrid"):
            started = time.perf_counter()
            accept = functools.partial(matches, request.where) if request.where else None
            lexical = index.search(request.query, request.candidates, accept)
            rankings["lexical"] = [chunk_id for chunk_id, _ in lexical]
            for rank, (chunk_id, score) in enumerate(lexical, start=1):
                hit = found.get(chunk_id)
                if hit is None:
                    hit = found[chunk_id] = Hit(chunk_id)
                hit.lexical_rank, hit.lexical_score = rank, score
            timings["lexical_ms"] = _ms(started)

        started = time.perf_counter()
        weights = {"dense": request.dense_weight, "lexical": request.lexical_weight}
        if request.fusion == "convex":
            scored = {
                "dense": [(c, found[c].dense_score or 0.0) for c in rankings.get("dense", [])],
                "lexical": [
                    (c, found[c].lexical_score or 0.0) for c in rankings.get("lexical", [])
                ],
            }
            fused = fuse_scores(
                {k: v for k, v in scored.items() if k in rankings}, weights, SCORE_FLOORS
            )
        else:
            fused = fuse_rankings(rankings, weights, request.rrf_k)
        per_document: dict[str, int] = {}

        def allowed(hit: Hit) -> bool:  # within max_per_document (counting it)
            seen = per_document.get(hit.document_id, 0)
            if request.max_per_document is not None and seen >= request.max_per_document:
                return False
            per_document[hit.document_id] = seen + 1
            return True

        if request.mmr:  # MMR picks top_k from a wider pool, by their vectors
            pool = fused[: request.top_k * 3]
            completed = await self._completed(collection, pool, found, vectors, need_vectors=True)
            chosen = [hit for hit in completed if allowed(hit)]
        else:  # only what is returned is completed; more if some vanished meanwhile
            chosen, taken = [], 0
            while len(chosen) < request.top_k and taken < len(fused):
                pool = fused[taken : taken + request.top_k - len(chosen)]
                taken += len(pool)
                completed = await self._completed(
                    collection, pool, found, vectors, need_vectors=False
                )
                chosen += [hit for hit in completed if allowed(hit)]
        if request.mmr and chosen:
            order = select_diverse(
                [hit.score for hit in chosen],
                np.stack([vectors[hit.chunk_id] for hit in chosen]),
                request.top_k,
                request.mmr_lambda,
            )
            chosen = [chosen[i] for i in order]
        hits = chosen[: request.top_k]
        await self._document_fields(collection, hits)
        timings["fuse_ms"] = _ms(started)
        RETRIEVAL_SECONDS.labels(request.mode).observe(sum(timings.values()) / 1000)
        if not hits:
            EMPTY_RETRIEVALS.labels(request.mode).inc()
        return SearchResult(hits, timings)

    async def _dense(
        self,
        collection: Collection,
        index: LexicalIndex,
        request: SearchRequest,
        found: dict[str, Hit],
        vectors: dict[str, np.ndarray],
    ) -> list[str]:
        embedder = self.embedder_for(collection.embedding_model)
        query_vector = await embedder.embed_query(request.query)
        neighbours = await self.chunks.nearest(
            collection.chroma_id,
            query_vector,
            count=request.candidates,
            where=request.where,
            vectors=request.mmr,
        )
        ranking = []
        for neighbour in neighbours:
            chunk = neighbour.chunk
            if index.active_tag(chunk.document_id) != chunk.version:
                continue  # another version than the one this replica serves
            ranking.append(chunk.id)
            found[chunk.id] = Hit(
                chunk.id,
                chunk,
                dense_rank=len(ranking),
                dense_score=neighbour.similarity,
            )
            if chunk.vector is not None:
                vectors[chunk.id] = chunk.vector
        return ranking

    async def _completed(
        self,
        collection: Collection,
        pool: list[tuple[str, float]],
        found: dict[str, Hit],
        vectors: dict[str, np.ndarray],
        *,
        need_vectors: bool,
    ) -> list[Hit]:
        """The hits of ``pool`` (fused ids and scores), scored and completed."""
        hits = [found[chunk_id] for chunk_id, _ in pool]
        for hit, (_, score) in zip(hits, pool, strict=True):
            hit.score = score
        await self._complete(collection, hits, vectors, need_vectors=need_vectors)
        return hits

    async def _complete(
        self,
        collection: Collection,
        hits: list[Hit],
        vectors: dict[str, np.ndarray],
        *,
        need_vectors: bool,
    ) -> None:
        """Text and metadata (and vectors for MMR) of hits only the lexical side found."""
        missing = [
            hit.chunk_id
            for hit in hits
            if hit.chunk is None or (need_vectors and hit.chunk_id not in vectors)
        ]
        if not missing:
            return
        stored = await self.chunks.get(collection.chroma_id, missing, vectors=need_vectors)
        by_id = {chunk.id: chunk for chunk in stored}
        for hit in hits:
            chunk = by_id.get(hit.chunk_id)
            if chunk is None:
                continue
            hit.chunk = chunk
            if chunk.vector is not None:
                vectors[hit.chunk_id] = chunk.vector
        hits[:] = [hit for hit in hits if hit.chunk is not None]  # cleaned up meanwhile

    async def _document_fields(self, collection: Collection, hits: list[Hit]) -> None:
        """A document's title and source, kept once in its record rather than in each of its
        chunks (a 2 MB source once grew Chroma by 135 MB). Chunks stored before carry them."""
        chunks = [hit.chunk for hit in hits if hit.chunk is not None]
        wanted = sorted({c.document_id for c in chunks if c.source is None})
        if not wanted:
            return
        records = await self.catalog.documents(collection.namespace, collection.name, wanted)
        for chunk in chunks:
            record = records.get(chunk.document_id)
            if record is None or chunk.source is not None:
                continue
            chunk.source = record.source or None
            chunk.title = record.title or chunk.title


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
