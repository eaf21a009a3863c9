"""The whole stack as `make dev` runs it (nginx, gateway, ingest, worker, two query replicas),
and helpers to get credentials: every request of these tests goes through nginx."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import msgspec
import pytest
from rag_client import Client
from rag_devstack import NativeStack, StackPorts
from rag_devstack.processes import tls_context

ADMIN_KEY = "admin-" + "k" * 40
JWT_SECRET = "s" * 48
INTERNAL_TOKEN = "i" * 48


@pytest.fixture(scope="package")
def full_stack(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path
) -> Iterator[NativeStack]:
    stack = NativeStack(
        tmp_path_factory.mktemp("full"),
        StackPorts.free(),
        env={
            "DATA_DIR": str(model_cache),
            "ADMIN_API_KEY": ADMIN_KEY,
            "JWT_SECRET": JWT_SECRET,
            "VERSION_GRACE_SECONDS": "2",
        },
        internal_token=INTERNAL_TOKEN,
    )
    with stack:
        stack.start(with_nginx=True, query_replicas=2)
        yield stack


@dataclass
class Edge:
    """A client of the public API, through nginx only."""

    url: str

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.url, timeout=60, verify=tls_context())

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_KEY}"}

    def new_key(self, tenant: str, scopes: list[str], **extra: object) -> str:
        response = self.http.post(
            "/v1/admin/keys",
            json={"tenant": tenant, "scopes": scopes, **extra},
            headers=self.admin(),
        )
        assert response.status_code == 201, response.text
        key: str = response.json()["key"]
        return key

    @staticmethod
    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def wait_searchable(
        self,
        collection: str,
        query: str,
        headers: dict[str, str],
        document_id: str | None = None,
        mode: str | None = None,
    ) -> None:
        """Until several searches in a row find ``document_id`` (or anything): every query
        replica behind nginx has indexed it (``mode="lexical"``: each replica's lexical index
        has followed the change, which dense search does not wait for)."""
        deadline = time.monotonic() + 30
        seen = 0
        body: dict[str, object] = {"query": query} | ({"mode": mode} if mode else {})
        while seen < 6:
            found = self.http.post(
                f"/v1/collections/{collection}/search", json=body, headers=headers
            )
            hits = found.json()["results"] if found.status_code == 200 else []
            good = bool(hits) and document_id in (None, hits[0]["document_id"])
            seen = seen + 1 if good else 0
            assert time.monotonic() < deadline, f"{collection} not searchable: {found.text}"
            time.sleep(0.1)

    def wait_job(self, job_id: str, headers: dict[str, str], timeout: float = 60) -> dict:
        """The job's final record (a JSON object), waited for by the SDK as the caller."""
        token = headers["Authorization"].removeprefix("Bearer ")
        transport = httpx.HTTPTransport(verify=tls_context())
        with Client(self.url, token, transport=transport) as sdk:
            job = sdk.wait_job(job_id, poll_seconds=0.2, max_seconds=timeout)
        return msgspec.structs.asdict(job)


def make_jwt(
    tenant: str, scopes: str, *, expires_in: float = 300, secret: str = JWT_SECRET, **claims: object
) -> str:
    return jwt.encode(
        {
            "tenant": tenant,
            "scope": scopes,
            "exp": int(time.time() + expires_in),
            "sub": "tester",
            **claims,
        },
        secret,
        algorithm="HS256",
    )


def load_stack(workdir: Path, model_cache: Path) -> NativeStack:
    """The stack behind nginx for load and fuzzing: no rate limit in the way, quiet logs."""
    return NativeStack(
        workdir,
        StackPorts.free(),
        env={
            "DATA_DIR": str(model_cache),
            "ADMIN_API_KEY": ADMIN_KEY,
            "RATE_LIMIT_PER_MINUTE": "1000000",
            "LOG_LEVEL": "WARNING",
        },
    )


@pytest.fixture(scope="package")
def edge(full_stack: NativeStack) -> Edge:
    return Edge(full_stack.edge_url)
