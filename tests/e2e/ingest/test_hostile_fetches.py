"""URL ingest of hostile pages (issue 22): each fails once, with its reason, and costs the
worker little memory."""

from __future__ import annotations

import re
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from rag_devstack import NativeStack, StackPorts

from tests.support.ingest import IngestClient

pytestmark = pytest.mark.e2e
HOST = "127.0.0.3"  # the only network this stack may fetch from
MAX_FILE_BYTES = 4 * 1024 * 1024
ZEROS = 256 * 1024 * 1024  # what each compression bomb expands to
MEMORY_HEADROOM = 64 * 1024 * 1024  # the worker's peak may grow this much while it fetches
DEPTH = 1_000_000


def _compress(chunks: Iterator[bytes], coding: str) -> bytes:
    wbits = zlib.MAX_WBITS | 16 if coding == "gzip" else zlib.MAX_WBITS
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    return b"".join(compressor.compress(chunk) for chunk in chunks) + compressor.flush()


def _bomb(codings: tuple[str, ...]) -> bytes:
    """ZEROS zero bytes with each content-coding applied in turn (a few hundred KB at most)."""
    block = bytes(1024 * 1024)
    body = _compress((block for _ in range(ZEROS // len(block))), codings[0])
    for coding in codings[1:]:
        body = _compress(iter([body]), coding)
    return body


BOMBS = {
    "gzip": ("gzip",),
    "deflate": ("deflate",),
    "gzip-gzip": ("gzip", "gzip"),
    "gzip-gzip-gzip": ("gzip", "gzip", "gzip"),
}


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    pages: dict[str, tuple[str, bytes, str | None]] = {
        "/deep.json": ("application/json", b"[" * DEPTH + b"]" * DEPTH, None),
        "/corrupt-gzip": ("text/plain", b"this is not gzip at all", "gzip"),
        "/brotli": ("text/plain", b"\x1b\x03\x00\xf8\xa5\x14", "br"),
        **{
            f"/bomb/{name}": ("text/plain", _bomb(codings), ", ".join(codings))
            for name, codings in BOMBS.items()
        },
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            kind, body, encoding = pages.get(self.path, ("text/plain", b"missing", None))
            self.send_response(200 if self.path in pages else 404)
            self.send_header("Content-Type", kind)
            if encoding:
                self.send_header("Content-Encoding", encoding)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((HOST, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://{HOST}:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def hostile_stack(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path
) -> Iterator[NativeStack]:
    stack = NativeStack(
        tmp_path_factory.mktemp("hostile"),
        StackPorts.free(),
        env={
            "DATA_DIR": str(model_cache),
            "FETCH_ALLOW_NETWORKS": f"{HOST}/32",
            "MAX_FILE_BYTES": str(MAX_FILE_BYTES),
            "JOB_MAX_TRIES": "3",  # a wrongly retried job goes dead sooner
        },
    )
    with stack:
        stack.start(services=["ingest"])
        yield stack


@pytest.fixture(scope="module")
def client(hostile_stack: NativeStack) -> IngestClient:
    return IngestClient(hostile_stack.api_url("ingest"))


def _ingest_url(client: IngestClient, url: str) -> dict:
    collection = client.create_collection()
    response = client.http.post(f"/v1/collections/{collection}/documents/url", json={"url": url})
    assert response.status_code == 202, response.text
    [job] = client.wait([response.json()["jobs"][0]["job_id"]])
    return job


def _kib(status: Path, field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", status.read_text(), re.M)
    assert match, field
    return int(match.group(1)) * 1024


@pytest.mark.parametrize(
    ("bomb", "reason"),
    [
        ("gzip", "MAX_FILE_BYTES"),
        ("deflate", "MAX_FILE_BYTES"),
        ("gzip-gzip", "more than one content-coding"),
        ("gzip-gzip-gzip", "more than one content-coding"),
    ],
)
def test_compression_bombs_fail_once_without_inflating_the_worker(
    client: IngestClient, hostile_stack: NativeStack, site: str, bomb: str, reason: str
) -> None:
    worker = Path("/proc") / str(hostile_stack.processes["worker"].pid)
    (worker / "clear_refs").write_text("5")  # the peak resident size restarts from now
    before = _kib(worker / "status", "VmHWM")
    job = _ingest_url(client, f"{site}/bomb/{bomb}")
    grown = _kib(worker / "status", "VmHWM") - before
    assert grown < MEMORY_HEADROOM, f"the worker's peak grew {grown >> 20} MiB"
    assert job["state"] == "failed", job
    assert job["error_stage"] == "fetching"
    assert reason in job["error"]
    assert job["attempts"] == 1, "the page is the problem: it is not retried"


def test_json_nested_a_million_deep_fails_once_with_its_reason(
    client: IngestClient, site: str
) -> None:
    crawl = _ingest_url(client, f"{site}/deep.json")
    # The URL job hands the page on; its own job finds the nesting, in the parser pool.
    assert crawl["state"] == "succeeded", crawl
    [page] = client.wait([crawl["result"]["pages"][0]["job_id"]])
    assert page["state"] == "failed", page
    assert page["error_stage"] == "parsing"
    assert "nested too deeply" in page["error"]
    assert page["attempts"] == 1, "the page is the problem: it is not retried"


def test_small_deep_json_uploads_fail_once_with_their_reason(client: IngestClient) -> None:
    """Small documents are prepared in the worker itself, after a format check there."""
    collection = client.create_collection()
    deep = b"[" * 30_000 + b"]" * 30_000
    response = client.upload(collection, [("deep.json", deep, "application/json")])
    assert response.status_code == 202, response.text
    [job] = client.wait([response.json()["jobs"][0]["job_id"]])
    assert job["state"] == "failed", job
    assert job["error_stage"] == "parsing"
    assert "nested too deeply" in job["error"]
    assert job["attempts"] == 1


@pytest.mark.parametrize(
    ("page", "reason"),
    [
        ("/corrupt-gzip", "cannot be decoded"),
        ("/brotli", "Content-Encoding 'br'"),
    ],
)
def test_unreadable_pages_fail_once_with_their_reason(
    client: IngestClient, site: str, page: str, reason: str
) -> None:
    job = _ingest_url(client, f"{site}{page}")
    assert job["state"] == "failed", job
    assert job["error_stage"] == "fetching"
    assert reason in job["error"]
    assert job["attempts"] == 1, "the page is the problem: it is not retried"
