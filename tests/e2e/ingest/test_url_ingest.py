"""URL ingest from a local web server: crawl depth, redirects, and SSRF refusals."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from rag_devstack import NativeStack, StackPorts, free_port, http_ok

from tests.support.documents import make_pdf
from tests.support.ingest import IngestClient

pytestmark = pytest.mark.e2e
ALLOWED_HOST = "127.0.0.2"  # the only network the test stack may fetch from
ADMIN_KEY = "admin-" + "q" * 40
QUOTA_PAGE_BYTES = 4000


def _site(loopback_port: int) -> dict[str, tuple[int, str, bytes]]:
    page = "<html><body><main><h1>{t}</h1><p>{body}</p>{links}</main></body></html>"
    return {
        "/": (
            200,
            "text/html",
            page.format(
                t="Home",
                body="Welcome to the handbook.",
                links='<a href="/a.html">A</a> <a href="/paper.pdf">paper</a> '
                '<a href="http://other.invalid/x">elsewhere</a> <a href="#top">top</a>',
            ).encode(),
        ),
        "/a.html": (
            200,
            "text/html",
            page.format(
                t="Page A",
                body="Alpha content about enzymes.",
                links='<a href="/c.html">C</a>',
            ).encode(),
        ),
        "/c.html": (
            200,
            "text/html",
            page.format(t="Page C", body="Deep page.", links="").encode(),
        ),
        "/paper.pdf": (200, "application/pdf", make_pdf(["A paper about ribosomes."])),
        "/moved": (301, "/a.html", b""),
        "/to-loopback": (302, f"http://127.0.0.1:{loopback_port}/", b""),
        "/image.png": (200, "image/png", b"\x89PNG\r\n\x1a\n\x00\x00\x00binary"),
        "/blob.bin": (200, "application/octet-stream", b"\x00\x01\x02binary\x00" * 10),
        "/hub": (
            200,
            "text/html",
            page.format(
                t="Hub",
                body="Links, some of them bad.",
                links='<a href="/a.html">A</a> <a href="/flaky">flaky</a> <a href="/drip">drip</a>',
            ).encode(),
        ),
        "/flaky": (503, "text/plain", b"try later"),
        "/drip": (200, "text/plain", b"x" * 20),  # sent a byte every 0.5 s
        "/quota/hub": (
            200,
            "text/html",
            page.format(
                t="Quota hub",
                body="Three big pages.",
                links="".join(f'<a href="/quota/{n}.html">{n}</a> ' for n in (1, 2, 3)),
            ).encode(),
        ),
        **{f"/quota/{n}.html": (200, "text/html", _big_page(n)) for n in (1, 2, 3)},
    }


def _big_page(number: int) -> bytes:
    """An HTML page of exactly QUOTA_PAGE_BYTES."""
    head = f"<html><body><h1>Big page {number}</h1><p>".encode()
    tail = b"</p></body></html>"
    words = f"fact{number} " * QUOTA_PAGE_BYTES
    return head + words.encode()[: QUOTA_PAGE_BYTES - len(head) - len(tail)] + tail


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    pages = _site(free_port())

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, kind, body = pages.get(self.path, (404, "text/plain", b"missing"))
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", kind)
            else:
                self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.path == "/drip":  # every read is quick, the whole fetch is not
                for byte in body:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.5)
                return
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((ALLOWED_HOST, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://{ALLOWED_HOST}:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def fetch_stack(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path
) -> Iterator[NativeStack]:
    stack = NativeStack(
        tmp_path_factory.mktemp("fetch"),
        StackPorts.free(),
        env={
            "DATA_DIR": str(model_cache),
            "FETCH_ALLOW_NETWORKS": f"{ALLOWED_HOST}/32",
            "FETCH_TIMEOUT_SECONDS": "3",
            "ADMIN_API_KEY": ADMIN_KEY,
        },
    )
    with stack:
        stack.start(services=["ingest"])
        yield stack


@pytest.fixture(scope="module")
def fetching_client(fetch_stack: NativeStack) -> IngestClient:
    return IngestClient(fetch_stack.api_url("ingest"))


@pytest.fixture(scope="module")
def fetching_gateway(fetch_stack: NativeStack) -> httpx.Client:
    """The gateway in front of the fetching stack's ingest API (no query service: it answers
    /health, not /ready)."""
    gateway = fetch_stack.start_service("gateway")
    gateway.wait_until(
        lambda: http_ok(f"{fetch_stack.health_url('gateway')}/health"), timeout=60, what="up"
    )
    return httpx.Client(base_url=fetch_stack.api_url("gateway"), timeout=30)


def _ingest_url(client: IngestClient, collection: str, **body: object) -> dict:
    response = client.http.post(f"/v1/collections/{collection}/documents/url", json=body)
    assert response.status_code == 202, response.text
    [job] = client.wait([response.json()["jobs"][0]["job_id"]])
    return job


def test_crawl_to_depth_one_ingests_linked_pages_of_the_same_site(
    fetching_client: IngestClient, site: str
) -> None:
    collection = fetching_client.create_collection()
    job = _ingest_url(
        fetching_client, collection, url=f"{site}/", max_depth=1, metadata={"crawl": "handbook"}
    )
    assert job["state"] == "succeeded", job
    urls = [page["url"] for page in job["result"]["pages"]]
    assert urls == [f"{site}/", f"{site}/a.html", f"{site}/paper.pdf"]  # not c.html (depth 2)
    children = fetching_client.wait([page["job_id"] for page in job["result"]["pages"]])
    assert [c["result"]["format"] for c in children] == ["html", "html", "pdf"]
    paper = fetching_client.document(collection, children[2]["document_id"]).json()
    assert paper["source"] == f"{site}/paper.pdf"
    assert paper["metadata"] == {"crawl": "handbook"}
    assert paper["chunks"][0]["page"] == 1
    # The same crawl again changes nothing.
    again = _ingest_url(fetching_client, collection, url=f"{site}/", max_depth=1)
    statuses = {
        c["result"]["status"]
        for c in fetching_client.wait([page["job_id"] for page in again["result"]["pages"]])
    }
    assert statuses <= {"unchanged", "replaced"}  # replaced: metadata differs this time


def test_later_pages_that_fail_are_listed_and_the_crawl_goes_on(
    fetching_client: IngestClient, site: str
) -> None:
    collection = fetching_client.create_collection()
    job = _ingest_url(fetching_client, collection, url=f"{site}/hub", max_depth=1)
    assert job["state"] == "succeeded", job
    assert [p["url"] for p in job["result"]["pages"]] == [f"{site}/hub", f"{site}/a.html"]
    reasons = {s["url"]: s["reason"] for s in job["result"]["skipped"]}
    assert "503" in reasons[f"{site}/flaky"]
    assert "longer than 3s" in reasons[f"{site}/drip"]  # FETCH_TIMEOUT_SECONDS for it all


def test_redirects_are_followed_and_checked(fetching_client: IngestClient, site: str) -> None:
    collection = fetching_client.create_collection()
    moved = _ingest_url(fetching_client, collection, url=f"{site}/moved")
    assert moved["result"]["pages"][0]["url"] == f"{site}/a.html"
    sneaky = _ingest_url(fetching_client, collection, url=f"{site}/to-loopback")
    assert sneaky["state"] == "failed"
    assert sneaky["error_stage"] == "fetching"
    assert "127.0.0.1" in sneaky["error"]
    assert "loopback" in sneaky["error"]


def test_unsupported_or_missing_pages_fail_with_the_reason(
    fetching_client: IngestClient, site: str
) -> None:
    collection = fetching_client.create_collection()
    blob = _ingest_url(fetching_client, collection, url=f"{site}/blob.bin")
    assert blob["state"] == "failed"
    assert "binary content" in blob["error"]
    # An image is a document (read by OCR): a broken one fails its own job, with the reason.
    image = _ingest_url(fetching_client, collection, url=f"{site}/image.png")
    assert image["state"] == "succeeded", image
    [page] = fetching_client.wait([page["job_id"] for page in image["result"]["pages"]])
    assert page["state"] == "failed"
    assert "not a readable image" in page["error"]
    missing = _ingest_url(fetching_client, collection, url=f"{site}/nope")
    assert missing["state"] == "failed"
    assert "404" in missing["error"]


def _gateway_job(gateway: httpx.Client, response: httpx.Response, auth: dict[str, str]) -> dict:
    assert response.status_code == 202, response.text
    job_id = response.json()["jobs"][0]["job_id"]
    deadline = time.monotonic() + 60
    while (job := gateway.get(f"/v1/jobs/{job_id}", headers=auth).json())["state"] not in (
        "succeeded",
        "failed",
        "dead",
    ):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    return job


def test_pages_fetched_for_url_ingest_count_against_the_callers_daily_quota(
    fetching_gateway: httpx.Client, site: str
) -> None:
    gateway = fetching_gateway
    created = gateway.post(
        "/v1/admin/keys",
        json={"tenant": "crawler", "scopes": ["ingest:write"], "ingest_bytes_per_day": 10_000},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert created.status_code == 201, created.text
    auth = {"Authorization": f"Bearer {created.json()['key']}"}
    assert gateway.post("/v1/collections", json={"name": "site"}, headers=auth).status_code == 201
    # A small request, big pages: the hub and two pages fit in the 10,000 bytes, not a third.
    crawl = _gateway_job(
        gateway,
        gateway.post(
            "/v1/collections/site/documents/url",
            json={"url": f"{site}/quota/hub", "max_depth": 1},
            headers=auth,
        ),
        auth,
    )
    assert crawl["state"] == "succeeded", crawl
    pages = [page["url"] for page in crawl["result"]["pages"]]
    assert pages == [f"{site}/quota/hub", f"{site}/quota/1.html", f"{site}/quota/2.html"]
    [skipped] = crawl["result"]["skipped"]
    assert skipped["url"] == f"{site}/quota/3.html"
    assert "INGEST_BYTES_PER_DAY" in skipped["reason"]
    # A URL whose first page no longer fits fails at once, saying why; it is not retried.
    # Only the gateway says whose quota it is: a client's own header is dropped.
    forged = '{"identity":"key:someone-else","bytes_per_day":1000000000}'
    single = _gateway_job(
        gateway,
        gateway.post(
            "/v1/collections/site/documents/url",
            json={"url": f"{site}/quota/3.html"},
            headers={**auth, "X-RAG-Ingest-Quota": forged},
        ),
        auth,
    )
    assert single["state"] == "failed", single
    assert single["error_stage"] == "fetching"
    assert "INGEST_BYTES_PER_DAY" in single["error"]
    assert single["attempts"] == 1
    # The gateway counts what the worker fetched: 2,000 bytes more would pass the quota.
    over = gateway.post(
        "/v1/collections/site/documents", json={"documents": [{"text": "x" * 2000}]}, headers=auth
    )
    assert over.status_code == 429, over.text
    assert "INGEST_BYTES_PER_DAY" in over.json()["detail"]


def test_private_addresses_are_refused_by_default(client: IngestClient, site: str) -> None:
    """The shared stack has no FETCH_ALLOW_NETWORKS: loopback, private, link-local refused."""
    collection = client.create_collection()
    for url in (f"{site}/", "http://10.1.2.3/", "http://169.254.169.254/latest/meta-data"):
        job = _ingest_url(client, collection, url=url)
        assert job["state"] == "failed", url
        assert "not allowed" in job["error"]
        assert job["attempts"] == 1


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"url": "ftp://example.org/file"}, 422, "url"),
        ({"url": "file:///etc/passwd"}, 422, "url"),
        ({"url": "http://user:pw@example.org/"}, 422, "url"),
        ({"url": "http://example.org/", "max_depth": 4}, 400, "max_depth"),
    ],
)
def test_invalid_url_requests(client: IngestClient, body: dict, status: int, field: str) -> None:
    collection = client.create_collection()
    response = client.http.post(f"/v1/collections/{collection}/documents/url", json=body)
    assert response.status_code == status, response.text
    assert field in response.text


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1/",
        "http://[zz]/",
        "http://127.0.0.1:abc/",
        "http://[::1]:99999/",
        f"http://{'a' * 64}.example.org/",
    ],
)
def test_malformed_hosts_and_ports_are_refused_naming_url(client: IngestClient, url: str) -> None:
    """422 at once, not a 500 (a bracketed host urllib cannot read) nor a job that crashes
    in the worker until it is dead (a port that is not a number)."""
    collection = client.create_collection()
    response = client.http.post(f"/v1/collections/{collection}/documents/url", json={"url": url})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == "url"
    assert client.http.get("/v1/jobs", params={"collection": collection}).json()["jobs"] == []


def test_a_redirect_to_a_malformed_url_fails_once_with_the_reason(
    fetching_client: IngestClient,
) -> None:
    """A Location the worker cannot read fails the job, with a sentence, on its first
    attempt; it is not an internal error retried until the job is dead."""
    targets = {"/bad-port": "http://127.0.0.2:abc/", "/bad-host": "http://[::1/"}

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", targets[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((ALLOWED_HOST, 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        collection = fetching_client.create_collection()
        base = f"http://{ALLOWED_HOST}:{server.server_address[1]}"
        for path, location in targets.items():
            job = _ingest_url(fetching_client, collection, url=f"{base}{path}")
            assert job["state"] == "failed", (job["state"], job["error"], job["attempts"])
            assert job["attempts"] == 1
            assert job["error_stage"] == "fetching"
            assert location in job["error"]
    finally:
        server.shutdown()
