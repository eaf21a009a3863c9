"""App factory of the ingest service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from rag_config import IngestSettings, get_settings
from rag_core.clients import create_redis
from rag_core.embedding.models import EmbedderFactory
from rag_core.service import (
    Lifespan,
    ServiceSpec,
    build_service_app,
    chroma_lifespan,
    provide_redis,
    redis_lifespan,
)
from rag_core.tenancy import tenant_of

from rag_ingest.collections.routes import CollectionController
from rag_ingest.components import IngestComponents
from rag_ingest.documents.routes import DocumentController
from rag_ingest.jobs.events import EventStreams
from rag_ingest.jobs.routes import JobController
from rag_ingest.reembedding.routes import ReembedController


def _ingest_lifespan(settings: IngestSettings) -> Lifespan:
    @asynccontextmanager
    async def stores(app: Litestar) -> AsyncIterator[None]:
        components = IngestComponents.build(
            settings, app.state.redis, app.state.chroma, EmbedderFactory(settings).check_available
        )
        app.state.components = components
        streams = EventStreams(
            create_redis(settings, settings, max_connections=settings.max_event_streams),
            components.keys,
            limit=settings.max_event_streams,
            per_tenant=settings.max_event_streams_per_tenant,
        )
        app.state.event_streams = streams
        try:
            yield
        finally:
            await streams.close()

    return stores


def _component(name: str) -> Provide:
    """The component ``name`` (shared by every tenant: calls name the tenant they serve)."""

    def provide(state: State) -> object:
        return getattr(state.components, name)

    return Provide(provide, sync_to_thread=False)


def _provide_event_streams(state: State) -> EventStreams:
    streams: EventStreams = state.event_streams
    return streams


def create_app(settings: IngestSettings | None = None) -> Litestar:
    """Build the ingest app; nothing connects until its lifespan starts."""
    settings = settings or get_settings(IngestSettings)
    return build_service_app(
        SERVICE,
        settings,
        route_handlers=[CollectionController, DocumentController, JobController, ReembedController],
        lifespan=[
            redis_lifespan(settings),
            chroma_lifespan(settings, settings),
            _ingest_lifespan(settings),
        ],
        dependencies={
            "redis": Provide(provide_redis, sync_to_thread=False),
            "settings": Provide(lambda: settings, sync_to_thread=False),
            "event_streams": Provide(_provide_event_streams, sync_to_thread=False),
            "tenant": Provide(tenant_of, sync_to_thread=False),
            **{
                name: _component(name)
                for name in (
                    "arq",
                    "registry",
                    "jobs",
                    "idempotency",
                    "ingest",
                    # Not "documents": a dependency named like a body field turns that
                    # field's validation errors into 500s (Litestar takes them for its own).
                    "document_service",
                    "reembedding",
                )
            },
        },
        description="Accepts documents and queues them for parsing, chunking and embedding.",
        request_max_body_size=settings.max_request_bytes,
        behind_gateway=True,
        facts={
            "embedding_model": settings.embedding_model,
            "chunk_size_tokens": settings.chunk_size_tokens,
            "chunk_overlap_tokens": settings.chunk_overlap_tokens,
            "max_file_bytes": settings.max_file_bytes,
            # Scanned pages and images are read when OCR is on, in these languages.
            "ocr_languages": settings.ocr_languages if settings.ocr_enabled else None,
        },
    )


SERVICE = ServiceSpec(name="ingest", settings_cls=IngestSettings, app_factory=create_app)
