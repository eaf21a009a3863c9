"""GET /v1/system: the deployment at a glance for any valid credential: each service's
readiness and version, the facts ingest and query tell about themselves (embedder, chunking,
search mode, generators), and the ingest queue (depth, workers reporting). Its Redis cost is a
few commands whatever Redis holds: a queue length and an index of live workers, never a walk
of the keyspace."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from litestar import Request, get
from litestar.di import NamedDependency, Provide
from rag_core.catalog import Keys
from rag_core.errors import RagError
from rag_core.health import Readiness
from rag_core.service import package_version
from rag_core.workers import LiveWorkers
from redis.asyncio import Redis

from rag_gateway.auth.principal import Principal
from rag_gateway.policy import provide_principal
from rag_gateway.proxy import Forwarder
from rag_gateway.routing import Upstream

UPSTREAMS: tuple[Upstream, ...] = ("ingest", "query")


class ServiceState(msgspec.Struct):
    # ready; unavailable (a dependency is down), starting or draining (its /ready says so);
    # unreachable (no answer within READY_CHECK_TIMEOUT_SECONDS)
    status: str
    version: str | None = None
    facts: dict[str, Any] = msgspec.field(default_factory=dict)


class QueueState(msgspec.Struct):
    """The deployment's one ingest queue (shared by every tenant: counts, never contents)."""

    depth: int  # jobs waiting for a worker
    workers: int  # worker processes that sent a heartbeat within the last 15 s


class SystemInfo(msgspec.Struct):
    status: str  # ready when every service is, else degraded
    tenant: str
    services: dict[str, ServiceState]
    queue: QueueState


async def _upstream(forwarder: Forwarder, upstream: Upstream, seconds: float) -> ServiceState:
    headers = forwarder.upstream_headers({}, "default", None)
    try:
        async with asyncio.timeout(seconds):  # a hung service must not hang this answer
            ready, info = await asyncio.gather(
                forwarder.json(upstream, "GET", "/ready", headers),
                forwarder.json(upstream, "GET", "/info", headers),
            )
    except (RagError, TimeoutError, msgspec.DecodeError):
        return ServiceState("unreachable")
    status = (ready[1] or {}).get("status", "unavailable") if ready[0] in (200, 503) else "error"
    facts = dict(info[1]) if info[0] == 200 and isinstance(info[1], dict) else {}
    version = facts.pop("version", None)
    facts.pop("service", None)
    return ServiceState(status, version, facts)


async def _queue(redis: Redis, keys: Keys) -> QueueState:
    depth, workers = await asyncio.gather(
        redis.zcard(keys.queue()), LiveWorkers(redis, keys).count()
    )
    return QueueState(int(depth), workers)


@get(
    "/v1/system",
    summary="The deployment: services, versions, embedder, queue",
    tags=["system"],
    dependencies={"principal": Provide(provide_principal)},  # any valid credential
)
async def system_info(
    request: Request[Any, Any, Any],
    principal: NamedDependency[Principal],
    forwarder: NamedDependency[Forwarder],
    redis: NamedDependency[Redis],
) -> SystemInfo:
    """Any valid credential may ask. `status` is `ready` when every service is; a service is
    `ready`, `unavailable` (up, a dependency is not) or `unreachable`."""
    state = request.app.state
    readiness: Readiness = state.readiness
    (gateway_ok, _), upstreams, queue = await asyncio.gather(
        readiness.report(),
        asyncio.gather(
            *(
                _upstream(forwarder, u, state.settings.ready_check_timeout_seconds)
                for u in UPSTREAMS
            )
        ),
        _queue(redis, Keys(state.settings.redis_prefix)),
    )
    services = {
        "gateway": ServiceState(
            "ready" if gateway_ok else "unavailable", package_version("rag-gateway")
        ),
        **dict(zip(UPSTREAMS, upstreams, strict=True)),
    }
    ready = all(s.status == "ready" for s in services.values())
    return SystemInfo("ready" if ready else "degraded", principal.tenant, services, queue)
