"""Coalesce embedding requests of concurrent jobs into full batches.

A worker runs several jobs at once and most documents make only a few chunks; embedding each
job's chunks alone would run the model on tiny batches. Here requests wait while the model is
busy and the next run takes everything waiting (up to ``max_texts``), so the model sees full
batches whatever the documents' sizes, and no request waits longer than one model run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rag_core.embedding.base import Embedder, Vectors


@dataclass
class _Request:
    texts: Sequence[str]
    future: asyncio.Future[Vectors]


class BatchingEmbedder:
    """Wraps an :class:`Embedder`; same interface, better batches under concurrency."""

    def __init__(self, inner: Embedder, *, max_texts: int = 256) -> None:
        self.inner = inner
        self.max_texts = max_texts
        self._queue: list[_Request] = []
        self._runner: asyncio.Task[None] | None = None

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
        future: asyncio.Future[Vectors] = asyncio.get_running_loop().create_future()
        self._queue.append(_Request(texts, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._queue:
            taken: list[_Request] = []
            count = 0
            while self._queue and (
                not taken or count + len(self._queue[0].texts) <= self.max_texts
            ):
                request = self._queue.pop(0)
                taken.append(request)
                count += len(request.texts)
            taken = [r for r in taken if not r.future.cancelled()]
            if not taken:
                continue
            try:
                vectors = await self.inner.embed_documents(
                    [text for request in taken for text in request.texts]
                )
            except Exception as exc:
                for request in taken:
                    if not request.future.done():
                        request.future.set_exception(exc)
                continue
            start = 0
            for request in taken:
                end = start + len(request.texts)
                if not request.future.done():
                    request.future.set_result(vectors[start:end])
                start = end
