"""Slow uploads cannot take what other tenants need (issue 22). Uploads whose bodies trickle in a
byte a second used to ride the gateway's one pool of connections: 120 of them held it, and
another tenant's search waited 40 s. Now each tenant and each key may have only so many
document writes in progress (MAX_UPLOADS_PER_TENANT, MAX_UPLOADS_PER_CREDENTIAL: 429 with
Retry-After), they travel on a pool of their own (MAX_UPLOAD_CONNECTIONS), nginx cuts a body
that stalls (client_body_timeout, NGINX_CLIENT_BODY_TIMEOUT) and the gateway one that takes
too long in all (UPLOAD_BODY_TIMEOUT_SECONDS: 408).

The gateway's ordinary pool is 4 connections here and it waits UPSTREAM_TIMEOUT_SECONDS (15)
for one: with one shared pool, the held uploads took all of it and searches failed (503)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from rag_devstack import NativeStack, StackPorts, free_port, http_ok

from tests.support.metrics import value

pytestmark = pytest.mark.e2e
ADMIN = {"Authorization": "Bearer " + "admin-" + "k" * 40}
GATEWAY_LIMITS = {
    "MAX_CONNECTIONS": "4",
    "MAX_UPLOADS_PER_TENANT": "3",
    "MAX_UPLOADS_PER_CREDENTIAL": "2",
    "UPSTREAM_TIMEOUT_SECONDS": "15",
}
BODY_TIMEOUT_SECONDS = 4  # nginx's client_body_timeout here; uploads trickle every second
BOUNDARY = "slowslowslow"
PART_HEAD = (
    f"--{BOUNDARY}\r\n"
    'Content-Disposition: form-data; name="file"; filename="slow.txt"\r\n'
    "Content-Type: text/plain\r\n\r\n"
).encode()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[NativeStack]:
    stack = NativeStack(
        tmp_path_factory.mktemp("slow"),
        StackPorts.free(),
        env={
            "DATA_DIR": str(model_cache),
            "ADMIN_API_KEY": ADMIN["Authorization"][7:],
            "NGINX_CLIENT_BODY_TIMEOUT": f"{BODY_TIMEOUT_SECONDS}s",
        },
    )
    with stack:
        # No worker: accepted uploads stay queued, nothing else competes for the two cores.
        stack.start(services=["ingest", "query"], with_worker=False)
        stack.start_service("gateway", GATEWAY_LIMITS)
        stack.wait_ready("gateway")
        stack.start_nginx()
        stack.wait_nginx()
        yield stack


@pytest.fixture(scope="module")
def http(stack: NativeStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.edge_url, timeout=60) as client:
        yield client


def new_key(http: httpx.Client, tenant: str) -> dict[str, str]:
    created = http.post(
        "/v1/admin/keys",
        json={"tenant": tenant, "scopes": ["ingest:write", "query:read"]},
        headers=ADMIN,
    )
    assert created.status_code == 201, created.text
    return {"Authorization": f"Bearer {created.json()['key']}"}


class SlowUpload:
    """An upload over a raw socket whose body comes a byte at a time, for as long as the test
    likes (its Content-Length is far more than it ever sends)."""

    def __init__(self, url: str, key: dict[str, str], collection: str) -> None:
        parts = urlsplit(url)
        assert parts.hostname is not None
        assert parts.port is not None
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
        self.sock.sendall(
            (
                f"POST /v1/collections/{collection}/documents/upload HTTP/1.1\r\n"
                f"Host: {parts.netloc}\r\n"
                f"Authorization: {key['Authorization']}\r\n"
                f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
                f"Content-Length: {1 << 20}\r\n\r\n"
            ).encode()
            + PART_HEAD
        )
        self.sock.setblocking(False)
        self.received = b""
        self.closed_by_server = False
        self.trickling = True

    def tick(self) -> None:
        if self.trickling and not self.closed_by_server:
            try:
                self.sock.send(b"x")
            except OSError:
                self.closed_by_server = True

    def answer(self) -> bytes | None:
        """The status line, once the server has sent one (None until then)."""
        try:
            while True:
                more = self.sock.recv(65536)
                if not more:
                    self.closed_by_server = True
                    break
                self.received += more
        except BlockingIOError:
            pass
        except OSError:
            self.closed_by_server = True
        if b"\r\n" not in self.received:
            return None
        return self.received.split(b"\r\n", 1)[0]

    def whole(self) -> bool:
        """Whether the whole answer is in: its headers and all of its body (the status line
        and the body may come in separate reads)."""
        if self.answer() is None:
            return False
        head, ended, body = self.received.partition(b"\r\n\r\n")
        if not ended:
            return self.closed_by_server
        for line in head.lower().split(b"\r\n"):
            if line.startswith(b"content-length:"):
                return len(body) >= int(line.split(b":", 1)[1])
            if line.startswith(b"transfer-encoding:") and b"chunked" in line:
                return body.endswith(b"0\r\n\r\n") or self.closed_by_server
        return self.closed_by_server

    def close(self) -> None:
        self.trickling = False
        self.sock.close()


class Trickle:
    """Sends a byte of every open upload's body each second, from a thread of its own."""

    def __init__(self) -> None:
        self.uploads: list[SlowUpload] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.wait(1.0):
            for upload in list(self.uploads):
                upload.tick()

    def open(
        self, streams: ExitStack, url: str, key: dict[str, str], collection: str
    ) -> SlowUpload:
        upload = SlowUpload(url, key, collection)
        streams.callback(upload.close)
        self.uploads.append(upload)
        return upload

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def wait_for(what: str, ready: Callable[[], bool], timeout: float = 60) -> None:
    """Until ``ready()`` is true; the timeout only catches a hang."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def refusals(uploads: list[SlowUpload]) -> list[SlowUpload]:
    return [u for u in uploads if u.answer() is not None or u.closed_by_server]


def assert_refused(upload: SlowUpload, limit: str) -> None:
    wait_for("the whole refusal", upload.whole, 30)
    assert b" 429 " in (upload.answer() or b""), upload.received[:300]
    head, _, body = upload.received.partition(b"\r\n\r\n")
    assert b"retry-after:" in head.lower(), head
    assert b"application/problem+json" in head.lower(), head
    assert limit.encode() in body, body


def quick_upload(http: httpx.Client, key: dict[str, str], collection: str) -> httpx.Response:
    return http.post(
        f"/v1/collections/{collection}/documents/upload",
        files={"file": ("quick.txt", b"A quick note about otters.", "text/plain")},
        headers=key,
    )


def test_slow_uploads_are_capped_per_key_and_tenant_and_never_block_other_tenants(
    stack: NativeStack, http: httpx.Client
) -> None:
    first, second = new_key(http, "trickler"), new_key(http, "trickler")
    neighbour, searcher = new_key(http, "neighbour"), new_key(http, "searcher")
    for key in (first, neighbour):
        assert http.post("/v1/collections", json={"name": "inbox"}, headers=key).is_success
    assert http.post("/v1/collections", json={"name": "docs"}, headers=searcher).is_success
    trickle = Trickle()
    with ExitStack() as streams:
        streams.callback(trickle.close)
        # One key, 10 uploads at once: 2 are taken (its limit), 8 refused by the key's limit
        # (the tenant's, 3, is not reached by one key).
        by_first = [trickle.open(streams, stack.edge_url, first, "inbox") for _ in range(10)]
        wait_for("8 refusals", lambda: len(refusals(by_first)) >= 8)
        held = [u for u in by_first if u not in refusals(by_first)]
        assert len(held) == 2
        for upload in refusals(by_first):
            assert_refused(upload, "MAX_UPLOADS_PER_CREDENTIAL")
        # The tenant's second key, 14 at once: the tenant has room for one more, 13 refused.
        by_second = [trickle.open(streams, stack.edge_url, second, "inbox") for _ in range(14)]
        wait_for("13 refusals", lambda: len(refusals(by_second)) >= 13)
        held += [u for u in by_second if u not in refusals(by_second)]
        assert len(held) == 3
        for upload in refusals(by_second):
            assert_refused(upload, "MAX_UPLOADS_PER_TENANT")
        # 24 slow uploads were sent, 3 are still trickling in: other tenants are served.
        for _ in range(3):
            found = http.post("/v1/collections/docs/search", json={"query": "x"}, headers=searcher)
            assert found.status_code == 200, found.text
        accepted = quick_upload(http, neighbour, "inbox")
        assert accepted.status_code == 202, accepted.text
        assert all(u.answer() is None and not u.closed_by_server for u in held)

        # One of them stalls: nginx cuts it (client_body_timeout), and its place is free again.
        stalled = held[0]
        stalled.trickling = False
        wait_for("nginx to cut the stalled body", lambda: stalled in refusals([stalled]), 30)
        status = stalled.answer()
        assert status is None or b" 408 " in status, stalled.received[:300]
        assert all(u.answer() is None for u in held[1:]), "only the stalled one is cut"

        def the_key_has_room() -> bool:
            again = quick_upload(http, first, "inbox")
            assert again.status_code in (202, 429), again.text
            return again.status_code == 202

        wait_for("the stalled upload to count no more", the_key_has_room)


def test_a_body_that_takes_too_long_in_all_is_cut_by_the_gateway(stack: NativeStack) -> None:
    """However steadily it trickles, a body has UPLOAD_BODY_TIMEOUT_SECONDS to arrive (a second
    gateway with 3 s; nginx's per-read timeout never fires on a byte a second)."""
    port, health = free_port(), free_port()
    process = stack.start_service(
        "gateway",
        {
            **GATEWAY_LIMITS,
            "PORT": str(port),
            "HEALTH_PORT": str(health),
            "UPLOAD_BODY_TIMEOUT_SECONDS": "3",
        },
        name="gateway-deadline",
    )
    process.wait_until(
        lambda: http_ok(f"http://127.0.0.1:{health}/ready"), timeout=60, what="ready"
    )
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, timeout=60) as http:
        key = new_key(http, "deadline")
        assert http.post("/v1/collections", json={"name": "inbox"}, headers=key).is_success
    trickle = Trickle()
    with ExitStack() as streams:
        streams.callback(trickle.close)
        upload = trickle.open(streams, url, key, "inbox")
        wait_for("the gateway to cut the body", upload.whole)
        assert b" 408 " in (upload.answer() or b""), upload.received[:300]
        assert b"UPLOAD_BODY_TIMEOUT_SECONDS" in upload.received
        # Its place is free again: the same key uploads at once.
        with httpx.Client(base_url=url, timeout=60) as http:
            assert quick_upload(http, key, "inbox").status_code == 202


def test_slow_search_bodies_wait_in_nginx_and_never_reach_the_gateway(
    stack: NativeStack, http: httpx.Client
) -> None:
    """A search, question or chat body is small: nginx reads it whole before the gateway sees
    the request. With request buffering off for every path, each body that trickled in held a
    request open in the gateway for as long as its client liked."""
    key = new_key(http, "slow-json")
    assert http.post("/v1/collections", json={"name": "notes"}, headers=key).is_success
    edge = urlsplit(stack.edge_url)
    assert edge.hostname is not None
    assert edge.port is not None
    metrics = f"{stack.health_url('gateway')}/metrics"
    in_flight = value(httpx.get(metrics, timeout=10).text, "http_requests_in_flight")
    body = b'{"query": "what do the notes say?"}'
    with ExitStack() as held:
        for path in (
            "/v1/collections/notes/search",
            "/v1/collections/notes/query",
            "/v1/chat/completions",
        ):
            sock = held.enter_context(socket.create_connection((edge.hostname, edge.port)))
            sock.sendall(
                (
                    f"POST {path} HTTP/1.1\r\nHost: {edge.netloc}\r\n"
                    f"Authorization: {key['Authorization']}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                ).encode()
                + body[:5]  # the rest never comes while the test looks
            )
        # A fence: a whole request sent after them, through the same nginx, answered. nginx
        # passed each request above on as soon as it had read its headers, if it ever does.
        assert http.get("/v1/collections", headers=key).status_code == 200
        now = value(httpx.get(metrics, timeout=10).text, "http_requests_in_flight")
        assert now == in_flight, "the gateway serves requests whose bodies have not come"
    # A whole body goes through as before.
    found = http.post("/v1/collections/notes/search", json={"query": "notes"}, headers=key)
    assert found.status_code == 200, found.text


def test_every_service_is_still_ready(stack: NativeStack) -> None:
    for service in ("gateway", "ingest", "query"):
        assert httpx.get(f"{stack.health_url(service)}/ready", timeout=10).status_code == 200
