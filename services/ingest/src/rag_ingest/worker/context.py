"""Everything a worker's tasks share, built once per worker process."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import msgpack
from arq.connections import ArqRedis
from rag_config import IngestSettings
from rag_core.chroma import ChromaClient
from rag_core.embedding.base import Embedder
from rag_core.embedding.batching import BatchingEmbedder
from rag_core.embedding.models import EmbedderFactory
from redis.asyncio import Redis

from rag_ingest.collections.registry import CollectionRegistry
from rag_ingest.documents.service import IngestService
from rag_ingest.documents.store import DocumentStore
from rag_ingest.jobs.store import JobStore
from rag_ingest.keys import Keys
from rag_ingest.worker.pipeline import IngestPipeline

# msgpack, never pickle: anyone able to write to Redis could otherwise run code in the worker.
serialize_job = msgpack.packb
deserialize_job = partial(msgpack.unpackb, raw=False)


class BatchedEmbedders:
    """The embedder of each collection's model, each wrapped so concurrent jobs share batches."""

    def __init__(self, factory: EmbedderFactory, max_texts: int) -> None:
        self.factory = factory
        self.max_texts = max_texts
        self._wrapped: dict[str, BatchingEmbedder] = {}

    def __call__(self, model: str) -> Embedder:
        if model not in self._wrapped:
            self._wrapped[model] = BatchingEmbedder(
                self.factory.get(model), max_texts=self.max_texts
            )
        return self._wrapped[model]


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass
class WorkerContext:
    settings: IngestSettings
    keys: Keys
    redis: Redis
    arq: ArqRedis
    chroma: ChromaClient
    embedders: BatchedEmbedders
    jobs: JobStore
    documents: DocumentStore
    registry: CollectionRegistry
    pipeline: IngestPipeline
    ingest: IngestService
    worker_id: str = field(default_factory=new_worker_id)

    @classmethod
    def build(
        cls,
        settings: IngestSettings,
        redis: Redis,
        arq: ArqRedis,
        chroma: ChromaClient,
        embedders: BatchedEmbedders,
    ) -> WorkerContext:
        keys = Keys(settings.redis_prefix)
        documents = DocumentStore(redis, keys)
        jobs = JobStore(redis, keys, retention_days=settings.job_retention_days)
        registry = CollectionRegistry(redis, chroma, keys, embedders.factory.check_available)
        return cls(
            settings=settings,
            keys=keys,
            redis=redis,
            arq=arq,
            chroma=chroma,
            embedders=embedders,
            jobs=jobs,
            documents=documents,
            registry=registry,
            pipeline=IngestPipeline(settings, documents, chroma, embedders),
            ingest=IngestService(
                settings=settings,
                redis=redis,
                arq=arq,
                registry=registry,
                documents=documents,
                jobs=jobs,
                keys=keys,
            ),
        )


def worker_context(ctx: dict[str, Any]) -> WorkerContext:
    context: WorkerContext = ctx["rag"]
    return context
