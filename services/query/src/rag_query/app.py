"""App factory of the query service."""

from __future__ import annotations

from litestar import Litestar
from litestar.di import Provide
from rag_config import QuerySettings, get_settings
from rag_core.service import (
    ServiceSpec,
    build_service_app,
    chroma_lifespan,
    provide_chroma,
    provide_redis,
    redis_lifespan,
)


def create_app(settings: QuerySettings | None = None) -> Litestar:
    """Build the query app; nothing connects until its lifespan starts."""
    settings = settings or get_settings(QuerySettings)
    return build_service_app(
        SERVICE,
        settings,
        lifespan=[redis_lifespan(settings), chroma_lifespan(settings, settings)],
        dependencies={
            "redis": Provide(provide_redis, sync_to_thread=False),
            "chroma": Provide(provide_chroma, sync_to_thread=False),
        },
        description="Hybrid retrieval and grounded answers with citations.",
    )


SERVICE = ServiceSpec(name="query", settings_cls=QuerySettings, app_factory=create_app)
