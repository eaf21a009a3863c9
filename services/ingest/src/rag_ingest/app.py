"""App factory of the ingest service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from arq.connections import ArqRedis
from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from rag_config import IngestSettings, get_settings
from rag_core.embedding.models import EmbedderFactory
from rag_core.service import (
    Lifespan,
    ServiceSpec,
    build_service_app,
    chroma_lifespan,
    provide_chroma,
    provide_redis,
    redis_lifespan,
)

from rag_ingest.collections.registry import CollectionRegistry
from rag_ingest.collections.routes import CollectionController
from rag_ingest.documents.routes import DocumentController
from rag_ingest.documents.service import IdempotencyGuard, IngestService
from rag_ingest.documents.store import DocumentStore
from rag_ingest.jobs.routes import JobController
from rag_ingest.jobs.store import JobStore
from rag_ingest.keys import Keys
from rag_ingest.worker.context import deserialize_job, serialize_job


def _ingest_lifespan(settings: IngestSettings) -> Lifespan:
    @asynccontextmanager
    async def stores(app: Litestar) -> AsyncIterator[None]:
        keys = Keys(settings.redis_prefix)
        redis, chroma = app.state.redis, app.state.chroma
        # arq's client on the same lazy pool: create_pool would refuse to start without Redis.
        arq = ArqRedis(
            connection_pool=redis.connection_pool,
            job_serializer=serialize_job,
            job_deserializer=deserialize_job,
            default_queue_name=keys.queue(),
        )
        registry = CollectionRegistry(
            redis, chroma, keys, EmbedderFactory(settings).check_available
        )
        documents = DocumentStore(redis, keys)
        jobs = JobStore(redis, keys, retention_days=settings.job_retention_days)
        app.state.update(
            arq=arq,
            registry=registry,
            documents=documents,
            jobs=jobs,
            idempotency=IdempotencyGuard(redis, keys, settings.idempotency_ttl_hours),
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
        yield

    return stores


def _from_state(name: str) -> Provide:
    def provide(state: State) -> object:
        return state[name]

    return Provide(provide, sync_to_thread=False)


def create_app(settings: IngestSettings | None = None) -> Litestar:
    """Build the ingest app; nothing connects until its lifespan starts."""
    settings = settings or get_settings(IngestSettings)
    return build_service_app(
        SERVICE,
        settings,
        route_handlers=[CollectionController, DocumentController, JobController],
        lifespan=[
            redis_lifespan(settings),
            chroma_lifespan(settings, settings),
            _ingest_lifespan(settings),
        ],
        dependencies={
            "redis": Provide(provide_redis, sync_to_thread=False),
            "chroma": Provide(provide_chroma, sync_to_thread=False),
            "settings": Provide(lambda: settings, sync_to_thread=False),
            **{
                name: _from_state(name)
                for name in ("arq", "registry", "documents", "jobs", "idempotency", "ingest")
            },
        },
        description="Accepts documents and queues them for parsing, chunking and embedding.",
        request_max_body_size=settings.max_request_bytes,
    )


SERVICE = ServiceSpec(name="ingest", settings_cls=IngestSettings, app_factory=create_app)
