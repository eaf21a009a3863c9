"""The gateway app in-process on a REAL Redis, each test under its own key prefix. Ingest and
query are not running: a request the gateway forwards answers 502, so a refusal the gateway
makes itself (401, 404, 429) is told apart from one that reached a service."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from rag_config import GatewaySettings
from rag_devstack import free_port
from rag_gateway.app import create_app

from tests.conftest import Backing

ADMIN_KEY = "admin-" + "k" * 40
JWT_SECRET = "s" * 48

GatewayFactory = Callable[..., AbstractContextManager[TestClient[Litestar]]]


@pytest.fixture
def gateway(redis_server: Backing) -> GatewayFactory:
    """``with gateway(**settings) as client``: a gateway with these settings over a fresh
    key prefix, no upstream behind it."""

    @contextmanager
    def start(**overrides: Any) -> Iterator[TestClient[Litestar]]:
        nowhere = f"http://127.0.0.1:{free_port()}"
        settings = GatewaySettings(
            _env_file=None,
            **{
                "redis_url": redis_server.redis_url,
                "redis_prefix": f"t{uuid.uuid4().hex[:12]}",
                "admin_api_key": ADMIN_KEY,
                "jwt_secret": JWT_SECRET,
                "ingest_url": nowhere,
                "query_url": nowhere,
                "upstream_retries": 0,
                "log_level": "WARNING",
                **overrides,
            },
        )
        with TestClient(app=create_app(settings), raise_server_exceptions=False) as client:
            yield client

    return start
