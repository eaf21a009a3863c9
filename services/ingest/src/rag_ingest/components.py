"""The stores and services the ingest API and its worker both use, built the same way."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from arq.connections import ArqRedis
from rag_config import IngestSettings
from rag_core.catalog import Keys
from rag_core.chroma import ChromaClient
from rag_core.chunks import ChromaChunkStore, ChunkStore
from rag_core.embedding.models import ModelSpec
from redis.asyncio import Redis

from rag_ingest.collections.registry import CollectionRegistry
from rag_ingest.documents.service import DocumentService, IngestService
from rag_ingest.idempotency import IdempotencyGuard
from rag_ingest.jobs.store import JobStore
from rag_ingest.queueing import deserialize_job, serialize_job
from rag_ingest.reembedding.service import ReembedService
from rag_ingest.reembedding.store import MigrationStore
from rag_ingest.submissions import JobSubmitter
from rag_ingest.versions import DocumentStore


def queue_client(redis: Redis, keys: Keys) -> ArqRedis:
    """arq's client on the same (lazy) pool: arq's create_pool would refuse to start without
    Redis, and a service must start and report not-ready instead."""
    return ArqRedis(
        connection_pool=redis.connection_pool,
        job_serializer=serialize_job,
        job_deserializer=deserialize_job,
        default_queue_name=keys.queue(),
    )


@dataclass
class IngestComponents:
    settings: IngestSettings
    keys: Keys
    redis: Redis
    arq: ArqRedis
    chunks: ChunkStore
    registry: CollectionRegistry
    documents: DocumentStore
    jobs: JobStore
    submitter: JobSubmitter
    ingest: IngestService
    document_service: DocumentService
    idempotency: IdempotencyGuard
    check_model: Callable[[str], ModelSpec]
    migrations: MigrationStore
    reembedding: ReembedService

    @classmethod
    def build(
        cls,
        settings: IngestSettings,
        redis: Redis,
        chroma: ChromaClient,
        check_model: Callable[[str], ModelSpec],
        *,
        keys: Keys | None = None,
        arq: ArqRedis | None = None,
    ) -> IngestComponents:
        keys = keys or Keys(settings.redis_prefix)
        arq = arq or queue_client(redis, Keys(settings.redis_prefix))
        chunks = ChromaChunkStore(chroma)
        registry = CollectionRegistry(redis, chunks, keys, check_model)
        documents = DocumentStore(redis, keys, grace_seconds=settings.version_grace_seconds)
        jobs = JobStore(redis, keys, retention_days=settings.job_retention_days)
        submitter = JobSubmitter(settings, arq, documents, jobs)
        migrations = MigrationStore(redis, keys)
        return cls(
            settings=settings,
            keys=keys,
            redis=redis,
            arq=arq,
            chunks=chunks,
            registry=registry,
            documents=documents,
            jobs=jobs,
            submitter=submitter,
            ingest=IngestService(
                settings=settings,
                registry=registry,
                documents=documents,
                jobs=jobs,
                submitter=submitter,
            ),
            document_service=DocumentService(registry, documents, chunks, arq),
            idempotency=IdempotencyGuard(redis, keys, settings.idempotency_ttl_hours),
            check_model=check_model,
            migrations=migrations,
            reembedding=ReembedService(
                settings=settings,
                registry=registry,
                migrations=migrations,
                jobs=jobs,
                submitter=submitter,
                check_model=check_model,
                chunks=chunks,
            ),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name)
            for f in fields(IngestComponents)
            if not f.name.startswith("_")
        }
