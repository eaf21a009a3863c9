"""nginx's internal listener sends a request that reached a failing query replica to another
replica only when it only reads (a search). A POST that may have acted already (an evaluation
starting a background run, an answer adding a session turn) is never sent twice."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from rag_devstack import ManagedProcess, executable, free_port, http_ok
from rag_devstack.nginx import write_native_config

pytestmark = pytest.mark.integration
REPLICAS = 5  # each dropped request takes one out for fail_timeout: enough stay for a retry


class DyingReplicas:
    """Query replicas that die while handling each path's first request (the connection
    closes without an answer) and answer every later one."""

    def __init__(self, count: int) -> None:
        self.received: Counter[str] = Counter()
        lock = threading.Lock()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    received[self.path] += 1
                    first = received[self.path] == 1
                if first:
                    self.close_connection = True
                    return
                body = b'{"answered": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = answer

            def log_message(self, *args: object) -> None:
                pass

        self.servers = [ThreadingHTTPServer(("127.0.0.1", 0), Handler) for _ in range(count)]
        for server in self.servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{server.server_address[1]}" for server in self.servers]

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def query_lb(tmp_path: Path) -> Iterator[tuple[str, DyingReplicas]]:
    replicas = DyingReplicas(REPLICAS)
    listen = f"127.0.0.1:{free_port()}"
    config = write_native_config(
        tmp_path / "nginx",
        tmp_path / "logs",
        edge_listen=f"127.0.0.1:{free_port()}",
        query_lb_listen=listen,
        gateways=[f"127.0.0.1:{free_port()}"],
        queries=replicas.addresses,
    )
    nginx = ManagedProcess(
        "nginx",
        [executable("nginx"), "-p", str(config.parent), "-c", str(config), "-g", "daemon off;"],
        log_path=tmp_path / "nginx.log",
    ).start()
    try:
        url = f"http://{listen}"
        nginx.wait_until(lambda: http_ok(f"{url}/nginx_status"), timeout=20, what="answering")
        yield url, replicas
    finally:
        nginx.stop()
        replicas.close()


def test_only_searches_are_sent_again_after_a_replica_died_with_them(
    query_lb: tuple[str, DyingReplicas],
) -> None:
    url, replicas = query_lb
    with httpx.Client(base_url=url, timeout=30) as http:
        for path, body in (
            ("/v1/evaluate", {"collection": "c", "cases": [{"query": "q"}], "background": True}),
            ("/v1/evaluate/beir", {"collection": "c"}),
            ("/v1/collections/c/query", {"query": "q", "session_id": "s1"}),
        ):
            response = http.post(path, json=body)
            assert response.status_code == 502, (path, response.text)
            assert replicas.received[path] == 1, f"{path} was sent to a second replica"
        search = http.post("/v1/collections/c/search", json={"query": "q"})
        assert search.status_code == 200, search.text
        assert replicas.received["/v1/collections/c/search"] == 2  # the other replica answered
