"""App factory of the ingest service."""

from __future__ import annotations

from litestar import Litestar
from litestar.di import Provide
from rag_config import IngestSettings, get_settings
from rag_core.service import (
    ServiceSpec,
    build_service_app,
    chroma_lifespan,
    provide_chroma,
    provide_redis,
    redis_lifespan,
)


def create_app(settings: IngestSettings | None = None) -> Litestar:
    """Build the ingest app; nothing connects until its lifespan starts."""
    settings = settings or get_settings(IngestSettings)
    return build_service_app(
        SERVICE,
        settings,
        lifespan=[redis_lifespan(settings), chroma_lifespan(settings, settings)],
        dependencies={
            "redis": Provide(provide_redis, sync_to_thread=False),
            "chroma": Provide(provide_chroma, sync_to_thread=False),
        },
        description="Accepts documents and queues them for parsing, chunking and embedding.",
    )


SERVICE = ServiceSpec(name="ingest", settings_cls=IngestSettings, app_factory=create_app)
