"""Limits shared by gateway replicas, and query replicas failing under load without a single
failed client request."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest
from rag_devstack import NativeStack, free_port, http_ok

from tests.e2e.gateway.conftest import Edge

pytestmark = pytest.mark.e2e


def test_the_rate_limit_holds_across_two_gateway_replicas(
    full_stack: NativeStack, edge: Edge
) -> None:
    port, health = free_port(), free_port()
    second = full_stack.start_service(
        "gateway", {"PORT": str(port), "HEALTH_PORT": str(health)}, name="gateway-2"
    )
    try:
        second.wait_until(
            lambda: http_ok(f"http://127.0.0.1:{health}/ready"), timeout=60, what="ready"
        )
        key = edge.bearer(
            edge.new_key("limited", ["query:read", "ingest:read"], requests_per_minute=10)
        )
        replicas = [full_stack.api_url("gateway"), f"http://127.0.0.1:{port}"]
        while int(time.time()) % 60 > 50:  # not across a minute boundary
            time.sleep(1)
        statuses = [
            httpx.get(f"{replicas[i % 2]}/v1/collections", headers=key).status_code
            for i in range(12)
        ]
        assert statuses[:10] == [200] * 10
        refused = httpx.get(f"{replicas[1]}/v1/collections", headers=key)
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert 1 <= int(refused.headers["retry-after"]) <= 61
        assert "RATE_LIMIT_PER_MINUTE" in refused.json()["detail"]
        assert statuses[10:] == [429, 429]
    finally:
        second.stop()


def test_the_daily_ingest_quota_is_counted_in_bytes(edge: Edge) -> None:
    key = edge.bearer(edge.new_key("quota", ["ingest:write"], ingest_bytes_per_day=2000))
    assert edge.http.post("/v1/collections", json={"name": "notes"}, headers=key).status_code == 201
    small = {"documents": [{"text": "a" * 900}]}
    assert (
        edge.http.post("/v1/collections/notes/documents", json=small, headers=key).status_code
        == 202
    )
    over = edge.http.post(
        "/v1/collections/notes/documents", json={"documents": [{"text": "b" * 1500}]}, headers=key
    )
    assert over.status_code == 429
    assert "INGEST_BYTES_PER_DAY" in over.json()["detail"]
    assert int(over.headers["retry-after"]) > 0
    # A refused request uses none of the quota.
    assert (
        edge.http.post("/v1/collections/notes/documents", json=small, headers=key).status_code
        == 202
    )


def test_killing_a_query_replica_under_load_fails_no_client_request(
    full_stack: NativeStack, edge: Edge
) -> None:
    key = edge.bearer(edge.new_key("load", ["ingest:write", "query:read"]))
    assert edge.http.post("/v1/collections", json={"name": "load"}, headers=key).status_code == 201
    docs = [{"id": f"d{i}", "text": f"Document {i} talks about topic {i % 7}."} for i in range(20)]
    response = edge.http.post(
        "/v1/collections/load/documents", json={"documents": docs}, headers=key
    )
    for job in response.json()["jobs"]:
        edge.wait_job(job["job_id"], key)
    edge.wait_searchable("load", "document 19 topic", key, document_id="d19", mode="lexical")
    failures: list[str] = []
    done = 0
    lock = threading.Lock()
    requests_per_client, clients = 60, 4

    def client() -> None:
        nonlocal done
        with httpx.Client(base_url=full_stack.edge_url, timeout=30) as http:
            for i in range(requests_per_client):
                try:
                    r = http.post(
                        "/v1/collections/load/search", json={"query": f"topic {i % 7}"}, headers=key
                    )
                    if r.status_code != 200 or not r.json()["results"]:
                        failures.append(f"{r.status_code} {r.text[:100]}")
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                with lock:
                    done += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    while done < 40:
        time.sleep(0.02)
    full_stack.processes["query-2"].signal(signal.SIGKILL)
    for thread in threads:
        thread.join(timeout=120)
    try:
        assert done == requests_per_client * clients
        assert failures == []
        access = (full_stack.log_dir / "nginx-access.log").read_text()
        assert f":{full_stack.ports.query_2}" in access, "both replicas served requests"
    finally:
        full_stack.processes["query-2"].stop()
        full_stack.start_query_replica()
        full_stack.wait_query_replica()
