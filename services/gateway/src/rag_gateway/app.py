"""App factory of the gateway service."""

from __future__ import annotations

from litestar import Litestar
from litestar.di import Provide
from rag_config import GatewaySettings, get_settings
from rag_core.service import (
    ServiceSpec,
    build_service_app,
    provide_redis,
    redis_lifespan,
)


def create_app(settings: GatewaySettings | None = None) -> Litestar:
    """Build the gateway app; nothing connects until its lifespan starts."""
    settings = settings or get_settings(GatewaySettings)
    return build_service_app(
        SERVICE,
        settings,
        lifespan=[redis_lifespan(settings)],
        dependencies={
            "redis": Provide(provide_redis, sync_to_thread=False),
        },
        description="The front door of RAG Engine: auth, tenants, rate limits and routing.",
    )


SERVICE = ServiceSpec(name="gateway", settings_cls=GatewaySettings, app_factory=create_app)
