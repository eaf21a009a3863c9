"""Ids become path segments: the SDK never sends one that would name another resource. `..`
used to go out as it was (quoted with no safe characters, dots stay dots), and
`delete_document("c", "..")` became `DELETE /v1/collections/c/documents/..`, which the HTTP
client resolved to `DELETE /v1/collections/c`: the whole collection."""

from __future__ import annotations

import httpx
import pytest
from rag_client import AsyncClient, Client, Settings


def recording() -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    return httpx.MockTransport(handle), seen


SETTINGS = Settings(url="http://127.0.0.1:9", api_key="k", retries=0)


@pytest.mark.parametrize("bad", [".", "..", ""])
def test_dot_and_empty_ids_are_refused_before_anything_is_sent(bad: str) -> None:
    transport, seen = recording()
    with Client(settings=SETTINGS, transport=transport) as client:
        for send in (
            lambda: client.delete_document("c", bad),
            lambda: client.get_document("c", bad),
            lambda: client.replace_document("c", bad, "text"),
            lambda: client.delete_collection(bad),
            lambda: client.get_job(bad),
            lambda: client.delete_session(bad),
        ):
            with pytest.raises(ValueError, match="cannot be a collection, document or other id"):
                send()
    assert seen == []


async def test_the_async_client_refuses_them_too() -> None:
    transport, seen = recording()
    async with AsyncClient(settings=SETTINGS, transport=transport) as client:
        with pytest.raises(ValueError, match="it would change the path"):
            await client.delete_document("c", "..")
    assert seen == []


def test_ids_with_dots_and_slashes_inside_are_sent_as_one_segment() -> None:
    transport, seen = recording()
    with Client(settings=SETTINGS, transport=transport) as client:
        client.delete_document("c", "v1.2..3")
        client.delete_document("c", "...")
        client.delete_document("c", "a/../b")
    assert [r.url.raw_path for r in seen] == [
        b"/v1/collections/c/documents/v1.2..3",
        b"/v1/collections/c/documents/...",
        b"/v1/collections/c/documents/a%2F..%2Fb",
    ]
