"""Long-lived streams cannot take what other tenants need: the gateway keeps them in a pool of
their own (MAX_STREAM_CONNECTIONS, apart from MAX_CONNECTIONS), and counts each tenant's and
each credential's open streams (MAX_STREAMS_PER_TENANT, MAX_STREAMS_PER_CREDENTIAL): over
either, 429 with Retry-After; a stream that ends, or whose client goes away, counts no more.

The stack runs no ingest worker, so every job stays queued and its event stream stays open for
as long as the test holds it. The gateway's ordinary pool is 4 connections: with one shared
pool, the fifth open stream would wait for a connection, and so would every search."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from rag_devstack import NativeStack, StackPorts

pytestmark = pytest.mark.e2e
ADMIN = {"Authorization": "Bearer " + "admin-" + "k" * 40}
GATEWAY_LIMITS = {
    "MAX_CONNECTIONS": "4",
    "MAX_STREAMS_PER_TENANT": "3",
    "MAX_STREAMS_PER_CREDENTIAL": "2",
    # Without a pool of their own, a request waiting for a connection fails after this (and
    # it is longer than the 15 s between an event stream's keep-alives).
    "UPSTREAM_TIMEOUT_SECONDS": "30",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[NativeStack]:
    stack = NativeStack(
        tmp_path_factory.mktemp("streams"),
        StackPorts.free(),
        env={"DATA_DIR": str(model_cache), "ADMIN_API_KEY": ADMIN["Authorization"][7:]},
    )
    with stack:
        stack.start(services=["ingest", "query"], with_worker=False)
        stack.start_service("gateway", GATEWAY_LIMITS)
        stack.wait_ready("gateway")
        yield stack


@pytest.fixture(scope="module")
def http(stack: NativeStack) -> Iterator[httpx.Client]:
    # Room for every stream the tests hold open at once, plus the requests beside them.
    limits = httpx.Limits(max_connections=50, max_keepalive_connections=10)
    with httpx.Client(base_url=stack.api_url("gateway"), timeout=60, limits=limits) as client:
        yield client


def new_key(http: httpx.Client, tenant: str) -> dict[str, str]:
    created = http.post(
        "/v1/admin/keys",
        json={"tenant": tenant, "scopes": ["ingest:write", "query:read"]},
        headers=ADMIN,
    )
    assert created.status_code == 201, created.text
    return {"Authorization": f"Bearer {created.json()['key']}"}


def queued_job(http: httpx.Client, key: dict[str, str], collection: str) -> str:
    """A job that stays queued (no worker runs here): its event stream never ends."""
    created = http.post("/v1/collections", json={"name": collection}, headers=key)
    assert created.status_code in (201, 409), created.text
    sent = http.post(
        f"/v1/collections/{collection}/documents",
        json={"documents": [{"text": f"Notes of {collection}."}]},
        headers=key,
    )
    assert sent.status_code == 202, sent.text
    return str(sent.json()["jobs"][0]["job_id"])


def open_events(
    http: httpx.Client, streams: ExitStack, key: dict[str, str], job_id: str
) -> httpx.Response:
    """The job's event stream, its headers read and its body left open (held by ``streams``)."""
    request = http.build_request("GET", f"/v1/jobs/{job_id}/events", headers=key)
    response = http.send(request, stream=True)
    streams.callback(response.close)
    return response


def search_answers(http: httpx.Client, key: dict[str, str], collection: str) -> None:
    found = http.post(f"/v1/collections/{collection}/search", json={"query": "notes"}, headers=key)
    assert found.status_code == 200, found.text


def refused(response: httpx.Response, limit: str) -> None:
    assert response.status_code == 429  # before reading: an accepted stream never ends
    response.read()
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["limit"] == limit
    assert limit in response.json()["detail"]


def test_open_streams_are_capped_per_credential_and_tenant_and_never_block_searches(
    http: httpx.Client,
) -> None:
    first, second = new_key(http, "streamer"), new_key(http, "streamer")
    neighbour, searcher = new_key(http, "neighbour"), new_key(http, "searcher")
    job = queued_job(http, first, "inbox")
    neighbours_job = queued_job(http, neighbour, "inbox")
    assert http.post("/v1/collections", json={"name": "docs"}, headers=searcher).status_code == 201
    with ExitStack() as streams:
        for _ in range(2):
            opened = open_events(http, streams, first, job)
            assert opened.status_code == 200
            assert opened.headers["content-type"].startswith("text/event-stream")
        refused(open_events(http, streams, first, job), "MAX_STREAMS_PER_CREDENTIAL")
        assert open_events(http, streams, second, job).status_code == 200
        refused(open_events(http, streams, second, job), "MAX_STREAMS_PER_TENANT")
        search_answers(http, searcher, "docs")
        # Another tenant's streams are its own to count. With theirs as many streams are open
        # as the gateway's ordinary pool has connections (4), then more: searches still answer.
        for _ in range(2):
            assert open_events(http, streams, neighbour, neighbours_job).status_code == 200
            search_answers(http, searcher, "docs")


def test_a_stream_counts_no_more_once_its_client_goes_away(http: httpx.Client) -> None:
    key = new_key(http, "leaver")
    job = queued_job(http, key, "inbox")
    with ExitStack() as streams:
        held = [open_events(http, streams, key, job) for _ in range(2)]
        assert [r.status_code for r in held] == [200, 200]
        refused(open_events(http, streams, key, job), "MAX_STREAMS_PER_CREDENTIAL")
        held[0].close()  # the client goes away mid-stream
        deadline = time.monotonic() + 30
        while True:
            again = open_events(http, streams, key, job)
            if again.status_code == 200:
                break
            refused(again, "MAX_STREAMS_PER_CREDENTIAL")
            assert time.monotonic() < deadline, "the closed stream still counts"
            time.sleep(0.1)  # poll again (well within RATE_LIMIT_PER_MINUTE)


def test_streams_that_end_count_no_more(http: httpx.Client) -> None:
    """Streamed answers, one after another, more of them than the credential may hold."""
    key = new_key(http, "asker")
    assert http.post("/v1/collections", json={"name": "faq"}, headers=key).status_code == 201
    for _ in range(5):
        with http.stream(
            "POST",
            "/v1/collections/faq/query",
            json={"query": "what is here?", "stream": True},
            headers=key,
        ) as answer:
            assert answer.status_code == 200, answer.read()
            assert answer.headers["content-type"].startswith("text/event-stream")
            assert b"event: done" in answer.read()
    # Not asking for a stream is an ordinary request, whatever the streams open.
    with ExitStack() as streams:
        job = queued_job(http, key, "faq")
        assert [open_events(http, streams, key, job).status_code for _ in range(2)] == [200, 200]
        plain = http.post("/v1/collections/faq/query", json={"query": "what?"}, headers=key)
        assert plain.status_code == 200, plain.text
        assert plain.headers["content-type"].startswith("application/json")
