"""Each service's app, against a REAL redis-server and a REAL Chroma server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from rag_config import GatewaySettings, IngestSettings, QuerySettings, ServiceSettings
from rag_core.health import create_ops_app
from rag_devstack import NativeStack, StackPorts, free_port
from rag_gateway.app import create_app as create_gateway
from rag_ingest.app import create_app as create_ingest
from rag_query.app import create_app as create_query

from tests.conftest import Backing

SERVICES: dict[str, tuple[type[ServiceSettings], Any, set[str]]] = {
    "gateway": (GatewaySettings, create_gateway, {"redis", "ingest", "query"}),
    "ingest": (IngestSettings, create_ingest, {"redis", "chroma"}),
    "query": (QuerySettings, create_query, {"redis", "chroma", "lexical"}),
}


def settings_for(service: str, redis_url: str, chroma_port: int) -> ServiceSettings:
    settings_cls = SERVICES[service][0]
    values: dict[str, Any] = {"redis_url": redis_url, "ready_check_timeout_seconds": 1.0}
    if "chroma_port" in settings_cls.model_fields:
        values |= {"chroma_host": "127.0.0.1", "chroma_port": chroma_port}
    return settings_cls(_env_file=None, **values)


def create(service: str, settings: ServiceSettings) -> Litestar:
    app: Litestar = SERVICES[service][1](settings)
    return app


async def test_the_gateway_is_not_ready_while_what_it_routes_to_is_down(backing: Backing) -> None:
    settings = settings_for("gateway", backing.redis_url, backing.chroma_port)
    settings = settings.model_copy(
        update={
            "ingest_url": f"http://127.0.0.1:{free_port()}",
            "query_url": f"http://127.0.0.1:{free_port()}",
        }
    )
    async with AsyncTestClient(create("gateway", settings)) as client:
        response = await client.get("/ready")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks == {
        "redis": {"status": "ok"},
        "ingest": {"status": "error"},
        "query": {"status": "error"},
    }


@pytest.mark.parametrize("service", ["ingest", "query"])
async def test_ready_when_its_dependencies_answer(service: str, backing: Backing) -> None:
    app = create(service, settings_for(service, backing.redis_url, backing.chroma_port))
    async with AsyncTestClient(app) as client:
        for _ in range(50):  # the query service's lexical index builds in the background
            response = await client.get("/ready")
            if response.status_code == 200:
                break
            await asyncio.sleep(0.1)
        health = await client.get("/health")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == SERVICES[service][2]
    assert all(check["status"] == "ok" for check in body["checks"].values())
    assert health.json() == {"status": "ok"}


@pytest.mark.parametrize("service", SERVICES)
async def test_not_ready_names_the_dependency_that_is_down(service: str, backing: Backing) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    app = create(service, settings_for(service, dead_redis, backing.chroma_port))
    async with AsyncTestClient(app) as client:
        response = await client.get("/ready")
        health = await client.get("/health")
        async with AsyncTestClient(create_ops_app(app.state.readiness)) as ops:
            detailed = await ops.get("/ready")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["redis"] == {"status": "error"}, "no host or port on the public port"
    if "chroma" in checks:
        assert checks["chroma"]["status"] == "ok"
    # The internal health port says why.
    assert detailed.status_code == 503
    assert "Connection" in detailed.json()["checks"]["redis"]["error"]
    # Liveness never depends on anything external.
    assert health.status_code == 200


@pytest.mark.parametrize("service", ["ingest", "query"])
async def test_chroma_down_at_start_then_up_becomes_ready(
    service: str, backing: Backing, tmp_path: Path
) -> None:
    """A service starts while Chroma is unreachable and turns ready once a real one answers."""
    late = NativeStack(tmp_path, StackPorts.free())
    app = create(service, settings_for(service, backing.redis_url, late.ports.chroma))
    async with AsyncTestClient(app) as client:
        down = await client.get("/ready")
        assert down.status_code == 503
        assert down.json()["checks"]["chroma"]["status"] == "error"
        with late:
            late.start_chroma()
            late.wait_chroma()
            for _ in range(50):
                up = await client.get("/ready")
                if up.status_code == 200:
                    break
                await asyncio.sleep(0.1)
    assert up.status_code == 200, up.text
