"""A service with a deliberately slow route, run by the real server runner in e2e tests."""

from __future__ import annotations

import asyncio
import os
import time

from litestar import Litestar, get
from rag_config import GatewaySettings
from rag_core.server import run_service
from rag_core.service import ServiceSpec, build_service_app, redis_lifespan


@get("/slow", sync_to_thread=False)
async def slow(seconds: float = 2.0) -> dict[str, float]:
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@get("/block", sync_to_thread=False)
def block(seconds: float = 1.0) -> dict[str, int]:
    """Blocks its worker's event loop, so a concurrent request must go to another worker."""
    time.sleep(seconds)
    return {"pid": os.getpid()}


def create_app(settings: GatewaySettings) -> Litestar:
    return build_service_app(
        SPEC, settings, route_handlers=[slow, block], lifespan=[redis_lifespan(settings)]
    )


SPEC = ServiceSpec(name="slowtest", settings_cls=GatewaySettings, app_factory=create_app)

if __name__ == "__main__":
    run_service(SPEC)
