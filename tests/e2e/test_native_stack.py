"""The native stack as real processes: Redis, Chroma and the three services on free ports."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rag_devstack import SERVICES, NativeStack, StackPorts, descendants, pid_alive, wait_gone

from tests.support.metrics import samples, value

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[NativeStack]:
    # The session's model cache: the ONNX model is built once, not again for this stack.
    workdir = tmp_path_factory.mktemp("stack")
    env = {"DATA_DIR": str(model_cache)}
    with NativeStack(workdir, StackPorts.free(), env=env) as native:
        native.start()
        yield native


@pytest.mark.parametrize("service", SERVICES)
def test_health_and_ready_on_both_ports(stack: NativeStack, service: str) -> None:
    for base in (stack.api_url(service), stack.health_url(service)):
        assert httpx.get(f"{base}/health").json() == {"status": "ok"}
        ready = httpx.get(f"{base}/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "ready"
    # /metrics belongs to the health port only.
    assert httpx.get(f"{stack.api_url(service)}/metrics").status_code == 404


@pytest.mark.parametrize("service", SERVICES)
def test_metrics_are_valid_exposition_and_count_our_requests(
    stack: NativeStack, service: str
) -> None:
    metrics_url = f"{stack.health_url(service)}/metrics"
    before = httpx.get(metrics_url).text
    for _ in range(3):
        assert httpx.get(f"{stack.api_url(service)}/schema/openapi.json").status_code == 200
    for path in ("/missing", "/also/missing"):
        assert httpx.get(f"{stack.api_url(service)}{path}").status_code == 404
    response = httpx.get(metrics_url)
    after = response.text
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    names = {name for name, _, _ in samples(after)}
    assert {"process_resident_memory_bytes", "http_request_duration_seconds_bucket"} <= names
    assert value(after, "rag_build_info", service=service) == 1

    def delta(**labels: str) -> float:
        return value(after, "http_requests_total", **labels) - value(
            before, "http_requests_total", **labels
        )

    assert delta(route="/schema/openapi.json", method="GET", status="200") == 3
    assert delta(route="<unmatched>", status="404") == 2


@pytest.mark.parametrize("service", SERVICES)
def test_request_id_and_trace_id_on_every_log_line_of_a_request(
    stack: NativeStack, service: str
) -> None:
    request_id = f"e2e-{service}-1"
    response = httpx.get(
        f"{stack.api_url(service)}/schema/openapi.json", headers={"X-Request-ID": request_id}
    )
    assert response.headers["x-request-id"] == request_id
    log_file: Path = stack.processes[service].log_path
    # The summary line is written just after the response is sent: give it a moment.
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(ln) for ln in log_file.read_text().splitlines() if ln.startswith("{")]
        mine = [line for line in lines if line.get("request_id") == request_id]
        if any(line["event"] == "request" for line in mine) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert mine, "the request left no log line"
    assert all(line["service"] == service for line in mine)
    assert len({line.get("trace_id") for line in mine}) == 1
    assert mine[0].get("trace_id")
    assert any(line["event"] == "request" and line["status"] == 200 for line in mine)


def test_sigterm_stops_every_service_cleanly(stack: NativeStack) -> None:
    """Runs last in this module: each service drains and exits 0, leaving no process."""
    for service in SERVICES:
        process = stack.processes[service]
        children = descendants(process.pid)
        process.signal(signal.SIGTERM)
        code = process.stop(timeout=30)
        assert code == 0, process.log_tail()
        assert not pid_alive(process.pid)
        assert wait_gone(children) == set()
        assert '"event": "stopped"' in process.log_path.read_text()
