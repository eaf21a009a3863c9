"""A service that dies half-way through an answer (headers sent, body cut off): the gateway in
process on a REAL Redis, in front of a loopback service that cuts its first answers. A caller
never gets a cut body under a 200: a request that only reads is asked again, any other one is a
clean 502 and is never sent twice."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.integration.gateway.conftest import ADMIN_KEY, GatewayFactory

pytestmark = pytest.mark.integration

ANSWER = json.dumps({"results": [{"id": "d1:0", "text": "x" * 2000}]}).encode()


class CuttingService:
    """Answers 200 with a Content-Length, then closes before sending the body, ``cuts`` times;
    answers whole after that. Counts the requests of each path."""

    def __init__(self, cuts: int) -> None:
        self.cuts = cuts
        self.seen: list[str] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                service.seen.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(ANSWER)))
                self.end_headers()
                if len(service.seen) <= service.cuts:
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(ANSWER)

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def cutting() -> Iterator[type[CuttingService]]:
    started: list[CuttingService] = []

    def start(cuts: int) -> CuttingService:
        service = CuttingService(cuts)
        threading.Thread(target=service.server.serve_forever, daemon=True).start()
        started.append(service)
        return service

    yield start  # type: ignore[misc]
    for service in started:
        service.server.shutdown()
        service.server.server_close()


AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


def test_a_search_cut_off_half_way_is_asked_again(
    gateway: GatewayFactory, cutting: type[CuttingService]
) -> None:
    service = cutting(1)
    with gateway(query_url=service.url, upstream_retries=1) as client:
        response = client.post("/v1/collections/c/search", json={"query": "q"}, headers=AUTH)
    assert response.status_code == 200
    assert response.content == ANSWER
    assert service.seen == ["/v1/collections/c/search"] * 2


def test_a_read_cut_off_every_time_is_a_clean_502(
    gateway: GatewayFactory, cutting: type[CuttingService]
) -> None:
    service = cutting(10)
    with gateway(ingest_url=service.url, upstream_retries=1) as client:
        response = client.get("/v1/collections/c/documents/d1", headers=AUTH)
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "failed while answering" in response.json()["detail"]
    assert len(service.seen) == 2  # the first try and one retry


def test_an_answer_cut_off_is_a_502_and_never_sent_twice(
    gateway: GatewayFactory, cutting: type[CuttingService]
) -> None:
    # An answer may have added a turn to a chat session: it is not asked again.
    service = cutting(1)
    with gateway(query_url=service.url, upstream_retries=1) as client:
        response = client.post("/v1/collections/c/query", json={"query": "q"}, headers=AUTH)
    assert response.status_code == 502
    assert "may have taken effect" in response.json()["detail"]
    assert service.seen == ["/v1/collections/c/query"]
