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


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass
class WorkerContext:
    settings: IngestSettings
    keys: Keys
    redis: Redis
    arq: ArqRedis
    chroma: ChromaClient
    embedder: Embedder
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
        embedder: Embedder,
    ) -> WorkerContext:
        keys = Keys(settings.redis_prefix)
        documents = DocumentStore(redis, keys)
        jobs = JobStore(redis, keys, retention_days=settings.job_retention_days)
        registry = CollectionRegistry(redis, chroma, keys)
        return cls(
            settings=settings,
            keys=keys,
            redis=redis,
            arq=arq,
            chroma=chroma,
            embedder=embedder,
            jobs=jobs,
            documents=documents,
            registry=registry,
            pipeline=IngestPipeline(settings, documents, chroma, embedder),
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
