"""App factory of the gateway service."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.di import Provide
from rag_config import GatewaySettings, get_settings
from rag_core.catalog import Keys
from rag_core.errors import DependencyUnavailable
from rag_core.service import (
    Lifespan,
    ServiceSpec,
    build_service_app,
    from_state,
    provide_redis,
    redis_lifespan,
)

from rag_gateway.admin.routes import AdminController
from rag_gateway.auth.authenticate import Authenticator
from rag_gateway.auth.keys import ApiKeyStore
from rag_gateway.forwarding import forward
from rag_gateway.limits import Limits
from rag_gateway.mcp.endpoint import McpEndpoint, mcp_endpoint
from rag_gateway.openapi import PublicSchema, openapi_document, openapi_page
from rag_gateway.paths import refuse_ambiguous_paths
from rag_gateway.playground.routes import playground_asset, playground_page
from rag_gateway.proxy import Forwarder
from rag_gateway.routing import Upstream
from rag_gateway.streams import UPLOADS, StreamLeases
from rag_gateway.system.routes import system_info


def _gateway_lifespan(settings: GatewaySettings) -> Lifespan:
    @asynccontextmanager
    async def components(app: Litestar) -> AsyncIterator[None]:
        keys = Keys(settings.redis_prefix)
        api_keys = ApiKeyStore(app.state.redis, keys)
        forwarder = Forwarder(settings)
        stream_leases = StreamLeases(
            app.state.redis,
            keys,
            per_tenant=settings.max_streams_per_tenant,
            per_credential=settings.max_streams_per_credential,
        )
        upload_leases = StreamLeases(
            app.state.redis,
            keys,
            per_tenant=settings.max_uploads_per_tenant,
            per_credential=settings.max_uploads_per_credential,
            kind=UPLOADS,
        )
        app.state.update(
            api_keys=api_keys,
            authenticator=Authenticator(settings, api_keys),
            limits=Limits(
                app.state.redis,
                keys,
                per_minute=settings.rate_limit_per_minute,
                bytes_per_day=settings.ingest_bytes_per_day,
            ),
            forwarder=forwarder,
            stream_leases=stream_leases,
            upload_leases=upload_leases,
            schema=PublicSchema(forwarder),
            mcp=McpEndpoint(settings, forwarder, stream_leases) if settings.mcp_enabled else None,
        )

        def upstream_ready(upstream: Upstream) -> object:
            async def check() -> None:
                headers = forwarder.upstream_headers({}, "default", None)
                status, body = await forwarder.json(upstream, "GET", "/ready", headers)
                if status != 200:
                    raise DependencyUnavailable(f"{upstream} is {(body or {}).get('status')}")

            return check

        app.state.readiness.checks["ingest"] = upstream_ready("ingest")
        app.state.readiness.checks["query"] = upstream_ready("query")
        renewing = [
            asyncio.create_task(leases.keep_renewing()) for leases in (stream_leases, upload_leases)
        ]
        try:
            yield
        finally:
            for task in renewing:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if app.state.mcp is not None:
                await app.state.mcp.close()
            await stream_leases.close_all()
            await upload_leases.close_all()
            await forwarder.close()

    return components


def create_app(settings: GatewaySettings | None = None) -> Litestar:
    """Build the gateway app; nothing connects until its lifespan starts."""
    settings = settings or get_settings(GatewaySettings)
    return build_service_app(
        SERVICE,
        settings,
        route_handlers=[
            AdminController,
            system_info,
            forward,
            openapi_document,
            openapi_page,
            playground_page,
            playground_asset,
            mcp_endpoint,
        ],
        lifespan=[redis_lifespan(settings), _gateway_lifespan(settings)],
        dependencies={
            "redis": Provide(provide_redis, sync_to_thread=False),
            **{
                name: from_state(name)
                for name in (
                    "api_keys",
                    "authenticator",
                    "limits",
                    "forwarder",
                    "stream_leases",
                    "upload_leases",
                    "schema",
                )
            },
        },
        description="The front door of RAG Engine: auth, tenants, rate limits and routing.",
        openapi_path="/schema/gateway",
        request_max_body_size=None,  # bodies stream through; nginx and ingest enforce sizes
        before_request=refuse_ambiguous_paths,  # on every route, before any credential
    )


SERVICE = ServiceSpec(name="gateway", settings_cls=GatewaySettings, app_factory=create_app)
