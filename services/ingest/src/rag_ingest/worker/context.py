"""Everything a worker's tasks share, built once per worker process."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from typing import Any

from rag_config import IngestSettings
from rag_core.chroma import ChromaClient
from rag_core.embedding.base import Embedder
from rag_core.embedding.batching import BatchingEmbedder
from rag_core.embedding.models import EmbedderFactory
from redis.asyncio import Redis

from rag_ingest.components import IngestComponents
from rag_ingest.parsing.pool import ParserPool
from rag_ingest.reembedding.migration import Reembedder
from rag_ingest.worker.pipeline import IngestPipeline


class BatchedEmbedders:
    """The embedder of each collection's model, each wrapped so concurrent jobs share batches."""

    def __init__(self, factory: EmbedderFactory, max_texts: int, concurrency: int) -> None:
        self.factory = factory
        self.max_texts = max_texts
        self.concurrency = concurrency
        self._wrapped: dict[str, BatchingEmbedder] = {}

    def __call__(self, model: str) -> Embedder:
        if model not in self._wrapped:
            self._wrapped[model] = BatchingEmbedder(
                self.factory.get(model), max_texts=self.max_texts, concurrency=self.concurrency
            )
        return self._wrapped[model]


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass
class WorkerContext(IngestComponents):
    """The shared components plus what only the worker has."""

    embedders: BatchedEmbedders
    pipeline: IngestPipeline
    reembedder: Reembedder
    worker_id: str = field(default_factory=new_worker_id)

    @classmethod
    def create(
        cls,
        settings: IngestSettings,
        redis: Redis,
        chroma: ChromaClient,
        embedders: BatchedEmbedders,
        parsers: ParserPool,
        *,
        pipeline: type[IngestPipeline] = IngestPipeline,
        worker_id: str | None = None,
    ) -> WorkerContext:
        """``pipeline`` and ``worker_id``: what tests choose (a pipeline that can pause)."""
        shared = IngestComponents.build(settings, redis, chroma, embedders.factory.check_available)
        return cls(
            **shared.as_dict(),
            worker_id=worker_id or new_worker_id(),
            embedders=embedders,
            pipeline=pipeline(
                settings,
                shared.documents,
                shared.chunks,
                embedders,
                parsers,
                find_collection=shared.registry.find,
            ),
            reembedder=Reembedder(
                settings,
                redis,
                shared.keys,
                shared.registry,
                shared.migrations,
                shared.documents,
                shared.chunks,
                embedders,
            ),
        )


def worker_context(ctx: dict[str, Any]) -> WorkerContext:
    context: WorkerContext = ctx["rag"]
    return context
