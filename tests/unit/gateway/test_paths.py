"""The gateway forwards only a path that names what it authorised (the e2e proof, through nginx,
is gateway/test_hostile_paths.py): every spelling of a dot segment and every encoded slash is
refused, ordinary paths pass as they are, and the forwarder refuses a path its HTTP client
would rewrite rather than send another one."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from rag_config import GatewaySettings
from rag_devstack import free_port
from rag_gateway.paths import AmbiguousPath, checked_path
from rag_gateway.proxy import Forwarder


def scope(raw: str) -> dict[str, object]:
    return {"raw_path": raw.encode(), "path": unquote(raw)}


@pytest.mark.parametrize(
    "raw",
    [
        "/v1/collections/c/documents/..",
        "/v1/collections/c/documents/.",
        "/v1/collections/c/documents/%2e%2e",
        "/v1/collections/c/documents/%2E%2e",
        "/v1/collections/c/documents/.%2E",
        "/v1/collections/c/documents/%2e",
        "/v1/collections/c/documents/%2e%2e/",
        "/v1/./collections/c",
        "/v1/collections/a/../b",
        "/v1/collections/c%2fdocuments",
        "/v1/collections/c/documents/a%2F..%2Fb",
    ],
)
def test_ambiguous_paths_are_refused(raw: str) -> None:
    with pytest.raises(AmbiguousPath) as refused:
        checked_path(scope(raw))
    assert refused.value.status_code == 400
    assert refused.value.extra["errors"][0]["field"] == "path"


@pytest.mark.parametrize(
    "raw",
    [
        "/v1/collections/c/documents/v1.2..3",
        "/v1/collections/c/documents/...",
        "/v1/collections/c/documents/a%20b",
        "/v1/collections/c/documents/%252e%252e",  # the id is "%2e%2e", never a dot segment
    ],
)
def test_ordinary_paths_are_forwarded_as_they_came(raw: str) -> None:
    assert checked_path(scope(raw)) == raw


def test_a_raw_path_that_decodes_to_another_route_is_refused() -> None:
    with pytest.raises(AmbiguousPath):
        checked_path({"raw_path": b"/v1/collections/a", "path": "/v1/collections/b"})


async def test_the_forwarder_never_sends_a_path_its_client_would_rewrite() -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    forwarder = Forwarder(GatewaySettings(_env_file=None, ingest_url=nowhere, query_url=nowhere))
    try:
        with pytest.raises(AmbiguousPath):
            await forwarder.send("ingest", "DELETE", "/v1/collections/c/documents/..", {}, None)
    finally:
        await forwarder.close()
