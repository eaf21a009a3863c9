"""Liveness, readiness and the ops app that serves them with /metrics on the health port."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from litestar import Litestar, MediaType, Response, get
from litestar.datastructures import State
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE
from rag_telemetry import METRICS_CONTENT_TYPE, get_logger, render_metrics

ReadinessCheck = Callable[[], Awaitable[object]]

log = get_logger("rag.health")


@dataclass
class Readiness:
    """Named dependency checks behind ``/ready``; each must answer within ``timeout``.

    Created with the app; the lifespan installs the checks once the clients exist and sets
    ``draining`` when shutdown begins, so load balancers stop sending new work.
    """

    timeout: float = 2.0
    checks: dict[str, ReadinessCheck] = field(default_factory=dict)
    started: bool = False
    draining: bool = False

    async def report(self) -> tuple[bool, dict[str, Any]]:
        if self.draining:
            return False, {"status": "draining", "checks": {}}
        if not self.started:
            return False, {"status": "starting", "checks": {}}
        names = list(self.checks)
        results = await asyncio.gather(*(self._run(self.checks[name]) for name in names))
        checks = dict(zip(names, results, strict=True))
        ready = all(result["status"] == "ok" for result in checks.values())
        return ready, {"status": "ready" if ready else "unavailable", "checks": checks}

    async def _run(self, check: ReadinessCheck) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                await check()
        except TimeoutError:
            return {"status": "error", "error": f"no answer within {self.timeout:g}s"}
        except Exception as exc:
            return {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:300]}
        return {"status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


@get("/health", media_type=MediaType.JSON, include_in_schema=False, sync_to_thread=False)
def health() -> dict[str, str]:
    """Alive: the process answers. Checks nothing external."""
    return {"status": "ok"}


async def _ready_response(state: State, *, detailed: bool) -> Response[dict[str, Any]]:
    readiness: Readiness = state.readiness
    ok, body = await readiness.report()
    if not ok and body["checks"]:
        log.warning("not_ready", checks=body["checks"])
    if not detailed:
        # Error texts name hosts and ports: only the internal health port shows them.
        body["checks"] = {name: {"status": c["status"]} for name, c in body["checks"].items()}
    return Response(body, status_code=HTTP_200_OK if ok else HTTP_503_SERVICE_UNAVAILABLE)


@get("/ready", media_type=MediaType.JSON, include_in_schema=False)
async def ready(state: State) -> Response[dict[str, Any]]:
    """Ready: every dependency answers; 503 with each failing check and its reason otherwise."""
    return await _ready_response(state, detailed=True)


@get("/ready", media_type=MediaType.JSON, include_in_schema=False)
async def ready_summary(state: State) -> Response[dict[str, Any]]:
    """The API port's /ready: the same verdict, without dependency error details."""
    return await _ready_response(state, detailed=False)


@get("/metrics", include_in_schema=False, sync_to_thread=False)
def metrics() -> Response[bytes]:
    return Response(render_metrics(), media_type=METRICS_CONTENT_TYPE)


def create_ops_app(readiness: Readiness) -> Litestar:
    """The health/metrics app (port 8089 in containers), sharing the API app's readiness."""
    return Litestar(
        route_handlers=[health, ready, metrics],
        state=State({"readiness": readiness}),
        openapi_config=None,
        logging_config=None,
    )
