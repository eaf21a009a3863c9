"""What every service app shares: problem details, telemetry, health routes, client lifespans."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Generic, TypeVar

from litestar import Litestar, MediaType, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.types import ControllerRouterHandler
from rag_config import ChromaSettings, PoolSettings, ServiceSettings
from rag_telemetry import get_logger, instrument_app
from redis.asyncio import Redis

from rag_core.clients import create_redis
from rag_core.errors import problem_details_plugin
from rag_core.health import Readiness, health, ready_summary
from rag_core.tenancy import InternalTokenMiddleware

S = TypeVar("S", bound=ServiceSettings)
Lifespan = Callable[[Litestar], AbstractAsyncContextManager[None]]

log = get_logger("rag.service")


@dataclass(frozen=True)
class ServiceSpec(Generic[S]):
    """How to build one service. ``app_factory`` must be a module-level function (WORKERS>1
    re-imports it in each worker process)."""

    name: str
    settings_cls: type[S]
    app_factory: Callable[[S], Litestar]

    @property
    def program(self) -> str:
        return f"rag-{self.name}"

    @property
    def version(self) -> str:
        return package_version(self.program)


def package_version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "0.0.0+unknown"


def redis_lifespan(settings: ServiceSettings) -> Lifespan:
    """Redis pool on ``app.state.redis``, checked by /ready, closed at shutdown."""

    @asynccontextmanager
    async def redis_client(app: Litestar) -> AsyncIterator[None]:
        redis = create_redis(settings, settings)
        app.state.redis = redis
        app.state.readiness.checks["redis"] = redis.ping
        try:
            yield
        finally:
            await redis.aclose()

    return redis_client


def chroma_lifespan(settings: ChromaSettings, pool: PoolSettings) -> Lifespan:
    """Chroma client on ``app.state.chroma``, checked by /ready, closed at shutdown."""

    @asynccontextmanager
    async def chroma_client(app: Litestar) -> AsyncIterator[None]:
        # Imported here: the gateway, which never talks to Chroma, starts without it (and
        # numpy), about 0.6 s sooner.
        from rag_core.chroma import ChromaClient  # noqa: PLC0415

        chroma = ChromaClient(settings, pool)
        app.state.chroma = chroma
        app.state.readiness.checks["chroma"] = chroma.heartbeat
        try:
            yield
        finally:
            await chroma.close()

    return chroma_client


@asynccontextmanager
async def _readiness_gate(app: Litestar) -> AsyncIterator[None]:
    """Last lifespan: ready only once every client exists; draining as soon as shutdown starts."""
    readiness: Readiness = app.state.readiness
    readiness.started = True
    log.info("service_started")
    try:
        yield
    finally:
        readiness.draining = True
        log.info("service_stopping")


def provide_redis(state: State) -> Redis:
    redis: Redis = state.redis
    return redis


def from_state(name: str) -> Provide:
    """A dependency handing handlers what the lifespan stored as ``app.state.<name>``."""

    def provide(state: State) -> object:
        return state[name]

    return Provide(provide, sync_to_thread=False)


def build_service_app(
    spec: ServiceSpec[S],
    settings: S,
    *,
    route_handlers: Sequence[ControllerRouterHandler] = (),
    lifespan: Sequence[Lifespan] = (),
    dependencies: Mapping[str, Provide] | None = None,
    description: str = "",
    behind_gateway: bool = False,
    openapi_path: str = "/schema",
    facts: Mapping[str, Any] | None = None,
    **litestar_options: Any,
) -> Litestar:
    """A Litestar app with the house plumbing; the service adds its routes and clients.
    ``behind_gateway``: with INTERNAL_TOKEN set, only requests carrying it are served.
    ``facts``: what ``GET /info`` says about this service besides its name and version (the
    gateway's ``/v1/system`` gathers them); settings a client may know, never secrets."""
    readiness = Readiness(timeout=settings.ready_check_timeout_seconds)
    middleware = list(litestar_options.pop("middleware", []))
    if behind_gateway and settings.internal_token is not None:
        middleware.append(InternalTokenMiddleware(settings.internal_token.get_secret_value()))
    app = Litestar(
        route_handlers=[
            health,
            ready_summary,
            # Only services behind the gateway tell: it asks them with the internal token.
            *([_info_route(spec, facts or {})] if behind_gateway else []),
            *route_handlers,
        ],
        middleware=middleware,
        lifespan=[*lifespan, _readiness_gate],
        dependencies=dict(dependencies or {}),
        plugins=[problem_details_plugin()],
        state=State({"readiness": readiness, "settings": settings}),
        openapi_config=OpenAPIConfig(
            title=f"RAG Engine {spec.name}",
            version=spec.version,
            description=description,
            path=openapi_path,
            # The document only: Litestar's default pages (Redoc, RapiDoc, Elements, Swagger)
            # load scripts from CDNs without integrity hashes, and the gateway's would share
            # the playground's origin (its tab keeps the API key); /schema is the public page.
            render_plugins=[JsonRenderPlugin()],
        ),
        logging_config=None,
        debug=False,
        **litestar_options,
    )
    return instrument_app(app)


def _info_route(spec: ServiceSpec[Any], facts: Mapping[str, Any]) -> Any:
    body = {"service": spec.name, "version": spec.version, **facts}

    @get("/info", media_type=MediaType.JSON, include_in_schema=False, sync_to_thread=False)
    def info() -> dict[str, Any]:
        """Name, version and the facts the service chose to tell (behind the internal token)."""
        return body

    return info


def readiness_of(app: Litestar) -> Readiness:
    readiness: Readiness = app.state.readiness
    return readiness


__all__ = [
    "Lifespan",
    "ServiceSpec",
    "build_service_app",
    "chroma_lifespan",
    "from_state",
    "package_version",
    "provide_redis",
    "readiness_of",
    "redis_lifespan",
]
