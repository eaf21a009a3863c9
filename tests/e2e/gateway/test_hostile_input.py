"""Hostile input through the front door (nginx and the gateway): a 1 GB upload refused by its
size before a byte of it is read, bodies nested to crash parsers, invalid UTF-8, huge metadata,
filters that try injection. Each gets a clear 4xx naming what is wrong, and every service
stays ready."""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest
from rag_devstack import NativeStack

from tests.e2e.gateway.conftest import Edge

pytestmark = pytest.mark.e2e
GIB = 1024**3


# Every process of the stack, with its resident memory before this module's hostile input:
# afterwards each must be near it (the defects this module guards against cost gigabytes).
PROCESSES = ("nginx", "gateway", "ingest", "worker", "query", "query-2")
NEAR_BASELINE_MB = 150


@pytest.fixture(scope="module")
def baseline(full_stack: NativeStack) -> dict[str, tuple[int, float]]:
    pids = {name: full_stack.processes[name].pid for name in PROCESSES}
    return {name: (pid, _rss_mb(pid)) for name, pid in pids.items()}


@pytest.fixture(scope="module")
def writer(edge: Edge, baseline: dict[str, tuple[int, float]]) -> dict[str, str]:
    key = edge.new_key("hostile", ["ingest:write", "query:read"], name="hostile input")
    auth = edge.bearer(key)
    assert (
        edge.http.post("/v1/collections", json={"name": "hostile"}, headers=auth).status_code == 201
    )
    posted = edge.http.post(
        "/v1/collections/hostile/documents",
        json={"documents": [{"id": "ok", "text": "Plain text about enzymes."}]},
        headers=auth,
    )
    assert edge.wait_job(posted.json()["jobs"][0]["job_id"], auth)["state"] == "succeeded"
    edge.wait_searchable("hostile", "enzymes", auth, "ok")
    return auth


def nested_and(depth: int) -> dict:
    where: dict = {"a": 1}
    for _ in range(depth):
        where = {"$and": [where, {"b": 2}]}
    return where


def problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict = response.json()
    return body


def raw_request(url: str, head: str, body_bytes: int = 0, chunk: int = 1 << 20) -> tuple[str, int]:
    """Send ``head`` then up to ``body_bytes`` of body until the server answers; (the status
    line, body bytes sent before the answer came)."""
    parts = urlsplit(url)
    sent = 0
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head.encode())
        sock.setblocking(False)
        block = b"x" * chunk
        answer = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                answer += sock.recv(65536)
                if b"\r\n" in answer:
                    break
            except BlockingIOError:
                pass
            if sent < body_bytes:
                try:
                    sent += sock.send(block[: min(chunk, body_bytes - sent)])
                except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                    time.sleep(0.01)
            else:
                time.sleep(0.01)
    return answer.split(b"\r\n", 1)[0].decode(), sent


def test_a_1_gb_upload_is_refused_by_its_size_before_it_is_read(
    edge: Edge, writer: dict[str, str]
) -> None:
    head = (
        "POST /v1/collections/hostile/documents/upload HTTP/1.1\r\n"
        f"Host: {urlsplit(edge.url).netloc}\r\n"
        f"Authorization: {writer['Authorization']}\r\n"
        "Content-Type: multipart/form-data; boundary=xyz\r\n"
        f"Content-Length: {GIB}\r\n\r\n"
    )
    status, sent = raw_request(edge.url, head, body_bytes=GIB)
    assert " 413 " in status, status
    assert sent < 64 * 1024 * 1024, f"{sent} bytes were taken before the refusal"


def _raw_answer(url: str, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """Status line, headers and body of nginx's answer to ``request`` sent as it is."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return status, headers, body


def test_nginxs_own_refusals_are_problem_details(edge: Edge, writer: dict[str, str]) -> None:
    """A body over the limit and a path nginx cannot read were answered with nginx's HTML
    pages: the limit's 413 could never be the problem details the docs promise."""
    host = urlsplit(edge.url).netloc
    too_large = (
        "POST /v1/collections/hostile/documents HTTP/1.1\r\n"
        f"Host: {host}\r\nAuthorization: {writer['Authorization']}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {GIB}\r\nConnection: close\r\n\r\n"
    ).encode()
    unreadable = f"GET /v1/collections/a% HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    long_uri = (
        f"GET /v1/collections/{'c' * 20_000} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    big_header = (
        f"GET /v1/collections HTTP/1.1\r\nHost: {host}\r\nX-Big: {'h' * 20_000}\r\n"
        "Connection: close\r\n\r\n"
    )
    for request, status, names in (
        (too_large, 413, "MAX_REQUEST_BYTES"),
        (unreadable.encode(), 400, ""),
        (long_uri.encode(), 414, "request line"),
        (big_header.encode(), 400, "header"),
    ):
        line, headers, body = _raw_answer(edge.url, request)
        assert f" {status} " in line, (line, body[:200])
        assert headers["content-type"] == "application/problem+json", (headers, body[:200])
        problem = json.loads(body)
        assert problem["status"] == status
        assert names in problem["detail"]
        assert headers["x-content-type-options"] == "nosniff"


def test_a_chunked_upload_is_refused_before_the_limit(edge: Edge, writer: dict[str, str]) -> None:
    """No Content-Length to refuse by: refused (411, uploads need their length) or cut at the
    limit (413), never read to the end."""
    parts = urlsplit(edge.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(
            (
                "POST /v1/collections/hostile/documents/upload HTTP/1.1\r\n"
                f"Host: {parts.netloc}\r\n"
                f"Authorization: {writer['Authorization']}\r\n"
                "Content-Type: multipart/form-data; boundary=xyz\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )
        chunk = b"x" * (1 << 20)
        framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        sent = 0
        answer = b""
        sock.settimeout(0.05)
        while sent < 512 * (1 << 20):
            try:
                sock.sendall(framed)
                sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            except TimeoutError:
                pass
            try:
                answer += sock.recv(65536)
                if answer:
                    break
            except TimeoutError:
                pass
        sock.settimeout(10)
        while b"\r\n" not in answer:
            more = sock.recv(65536)
            if not more:
                break
            answer += more
    status = answer.split(b"\r\n", 1)[0]
    assert b" 411 " in status or b" 413 " in status, answer[:200]
    assert sent < 200 * (1 << 20), f"{sent} bytes were taken before the refusal"


@pytest.mark.parametrize(
    ("body", "status", "names"),
    [
        # Nested 100,000 deep: a recursive parser would overflow its stack.
        (
            '{"documents": [{"text": "x", "metadata": ' + "[" * 100_000 + "]" * 100_000 + "}]}",
            400,
            "",
        ),
        ('{"documents": [{"text": "x", "metadata": {"a": {"b": {"c": {}}}}}]}', 400, "metadata"),
        (
            json.dumps({"documents": [{"text": "x", "metadata": {"v": "m" * (1 << 20)}}]}),
            413,
            "MAX_METADATA_BYTES",
        ),
    ],
)
def test_bodies_built_to_hurt_parsers_are_refused(
    edge: Edge, writer: dict[str, str], body: str, status: int, names: str
) -> None:
    response = edge.http.post(
        "/v1/collections/hostile/documents",
        content=body.encode(),
        headers={**writer, "content-type": "application/json"},
    )
    assert names in json.dumps(problem(response, status))


def test_invalid_utf8_in_json_is_a_400(edge: Edge, writer: dict[str, str]) -> None:
    response = edge.http.post(
        "/v1/collections/hostile/documents",
        content=b'{"documents": [{"text": "caf\xe9 \xff\xfe"}]}',
        headers={**writer, "content-type": "application/json"},
    )
    problem(response, 400)


@pytest.mark.parametrize(
    "hostile",
    [
        {"$where": "sleep(1000)"},
        {"topic": {"$regex": ".*"}},
        {"topic": {"$ne": {"$gt": ""}}},
        {"$or": "1=1"},
        {"$and": [{"topic": "a"}] * 10_000},
        {"__proto__": {"polluted": True}},
        {"_doc": "someone-else"},
        nested_and(200),
    ],
)
def test_filters_that_try_injection_are_422_naming_the_filter(
    edge: Edge, writer: dict[str, str], hostile: dict
) -> None:
    response = edge.http.post(
        "/v1/collections/hostile/search",
        json={"query": "enzymes", "filter": hostile},
        headers=writer,
    )
    body = problem(response, 422)
    assert "filter" in json.dumps(body)


def test_sql_in_a_filter_is_only_data(edge: Edge, writer: dict[str, str]) -> None:
    """Filters reach Chroma as values, never as query text: SQL in a key or a value matches
    nothing and harms nothing."""
    for hostile in (
        {"topic'; DROP TABLE embeddings; --": "a"},
        {"topic": "a' OR '1'='1"},
        {"topic": {"$in": ["x'); DELETE FROM embeddings; --"]}},
    ):
        response = edge.http.post(
            "/v1/collections/hostile/search",
            json={"query": "enzymes", "filter": hostile},
            headers=writer,
        )
        assert response.status_code == 200, response.text
        assert response.json()["results"] == []
    unfiltered = edge.http.post(
        "/v1/collections/hostile/search", json={"query": "enzymes"}, headers=writer
    )
    assert [hit["document_id"] for hit in unfiltered.json()["results"]] == ["ok"]


def _rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status").read().splitlines():  # noqa: SIM115
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_twenty_megabytes_of_text_fail_fast_and_never_stall_the_worker(
    full_stack: NativeStack, edge: Edge, writer: dict[str, str]
) -> None:
    """Chunking once ran in the worker's own process: 25 MB of text froze its event loop for
    47 s (its heartbeat lapsed, so another worker could take the job twice), took it from 1.6
    to 8.2 GB, and failed on MAX_CHUNKS_PER_DOCUMENT only after tokenising all of it."""
    worker = full_stack.processes["worker"].pid
    other = edge.bearer(edge.new_key("bystander", ["ingest:write", "query:read"]))
    assert (
        edge.http.post("/v1/collections", json={"name": "calm"}, headers=other).status_code == 201
    )
    posted = edge.http.post(
        "/v1/collections/calm/documents",
        json={"documents": [{"id": "calm", "text": "Quiet text about otters."}]},
        headers=other,
    )
    assert edge.wait_job(posted.json()["jobs"][0]["job_id"], other)["state"] == "succeeded"
    edge.wait_searchable("calm", "otters", other, "calm")
    before = _rss_mb(worker)

    text = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod. " * 270_000
    upload = edge.http.post(
        "/v1/collections/hostile/documents/upload",
        files={"file": ("huge.txt", text, "text/plain")},
        headers=writer,
    )
    assert upload.status_code == 202, upload.text
    job_id = upload.json()["jobs"][0]["job_id"]
    health = f"{full_stack.health_url('worker')}/health"
    worker_health = httpx.Client(timeout=10)  # one client: each new one costs 30 ms of CPU
    searches = heartbeats = 0
    deadline = time.monotonic() + 170
    while (job := edge.http.get(f"/v1/jobs/{job_id}", headers=writer).json())["state"] not in (
        "succeeded",
        "failed",
        "dead",
    ):
        assert time.monotonic() < deadline, job
        # The worker keeps answering and its heartbeat keeps being written while it works.
        assert worker_health.get(health).status_code == 200
        heartbeats += 1
        found = edge.http.post(
            "/v1/collections/calm/search", json={"query": "otters"}, headers=other
        )
        assert found.status_code == 200
        searches += 1
    worker_health.close()
    assert job["state"] == "failed", job
    assert job["attempts"] == 1, "a property of the document: failed once, never retried"
    assert job["error_stage"] == "chunking"
    assert "MAX_CHUNKS_PER_DOCUMENT" in job["error"]
    assert heartbeats > 0 and searches > 0  # noqa: PT018 - both ran during the job
    assert _rss_mb(worker) < before + 200, "the worker's own memory stays near its baseline"


def test_every_service_is_still_ready_and_near_its_memory_baseline(
    full_stack: NativeStack,
    edge: Edge,
    writer: dict[str, str],
    baseline: dict[str, tuple[int, float]],
) -> None:
    for service in ("gateway", "ingest", "query"):
        assert httpx.get(f"{full_stack.health_url(service)}/ready", timeout=10).status_code == 200
    grown = {
        name: (round(before), round(_rss_mb(pid)))
        for name, (pid, before) in baseline.items()
        if _rss_mb(pid) > before + NEAR_BASELINE_MB
    }
    assert grown == {}, f"MiB before and after the hostile input: {grown}"
    print({name: (round(before), round(_rss_mb(pid))) for name, (pid, before) in baseline.items()})
    hits = edge.http.post(
        "/v1/collections/hostile/search", json={"query": "enzymes"}, headers=writer
    )
    assert hits.status_code == 200
    assert hits.json()["results"][0]["document_id"] == "ok"
