"""Coalesce embedding requests of concurrent jobs into full batches.

A worker runs several jobs at once and most documents make only a few chunks; embedding each
job's chunks alone would run the model on tiny batches. Requests wait while the model is
busy and the next run takes everything waiting (up to ``max_texts``), so the model sees full
batches whatever the documents' sizes, and no request waits longer than one model run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rag_core.coalescing import Coalescer
from rag_core.embedding.base import Embedder, EmbeddingError, Vectors


def _one_requests_fault(exc: BaseException) -> bool:
    """A provider refusing an input (too long, filtered) fails that request alone; an outage
    fails them all."""
    return not (isinstance(exc, EmbeddingError) and exc.transient)


class BatchingEmbedder:
    """Wraps an :class:`Embedder`; same interface, better batches under concurrency."""

    def __init__(self, inner: Embedder, *, max_texts: int = 256, concurrency: int = 1) -> None:
        self.inner = inner
        self._batches: Coalescer[Sequence[str], Vectors] = Coalescer(
            self._embed,
            size=len,
            max_size=max_texts,
            isolate=_one_requests_fault,
            concurrency=concurrency,
        )

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    @property
    def max_tokens(self) -> int:
        return self.inner.max_tokens

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.inner.count_tokens(texts)

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return self.inner.token_spans(text)

    async def embed_query(self, text: str) -> Vectors:
        return await self.inner.embed_query(text)

    async def embed_documents(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return await self._batches.submit(texts)

    async def _embed(self, requests: list[Sequence[str]]) -> list[Vectors]:
        vectors = await self.inner.embed_documents([text for texts in requests for text in texts])
        results, start = [], 0
        for texts in requests:
            results.append(vectors[start : start + len(texts)])
            start += len(texts)
        return results
