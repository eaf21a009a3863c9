"""The server runner: WORKERS processes sharing ports and metrics; graceful drain on SIGTERM."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from rag_devstack import NativeStack, StackPorts, descendants, wait_gone

from tests.conftest import REPO_ROOT, Backing
from tests.support.metrics import value

pytestmark = pytest.mark.e2e


def _stack(tmp_path: Path, backing: Backing) -> NativeStack:
    ports = StackPorts.free()
    ports.redis, ports.chroma = backing.redis_port, backing.chroma_port
    return NativeStack(tmp_path, ports)


def test_workers_share_the_ports_and_sum_their_metrics(tmp_path: Path, backing: Backing) -> None:
    with _stack(tmp_path, backing) as stack:
        process = stack.start_service("gateway", {"WORKERS": "2"})
        stack.wait_ready("gateway")
        deadline = time.monotonic() + 30
        while len(descendants(process.pid)) < 2:  # both workers up
            assert time.monotonic() < deadline
            time.sleep(0.1)
        workers = descendants(process.pid)
        for _ in range(40):
            # A new connection each time, so the kernel spreads them over both workers.
            assert httpx.get(f"{stack.api_url('gateway')}/nowhere").status_code == 404
        metrics = httpx.get(f"{stack.health_url('gateway')}/metrics").text
        assert value(metrics, "http_requests_total", route="<unmatched>", status="404") == 40
        log = process.log_path.read_text()
        served_by = {pid for pid in workers if f'"pid": {pid}' in log}
        assert len(served_by) == 2, "both workers should have started"

        process.signal(signal.SIGINT)  # Ctrl-C: the supervisor stops its workers
        assert process.stop(timeout=40) == 0, process.log_tail()
        assert wait_gone(workers) == set()


def test_sigterm_lets_an_in_flight_request_finish_and_turns_not_ready(
    tmp_path: Path, backing: Backing
) -> None:
    """SIGTERM during a 2 s request: the request completes, /ready says draining meanwhile,
    new connections are refused, and the process exits 0."""
    with _stack(tmp_path, backing) as stack:
        process = stack._add(
            "slowtest",
            [sys.executable, "-m", "tests.support.slow_service"],
            {**stack.service_env("gateway"), "PYTHONPATH": str(REPO_ROOT)},
        )
        stack.wait_ready("gateway", name="slowtest")
        api = stack.api_url("gateway")
        result: dict[str, httpx.Response] = {}
        client = threading.Thread(
            target=lambda: result.update(slow=httpx.get(f"{api}/slow?seconds=2", timeout=30))
        )
        client.start()
        time.sleep(0.5)
        process.signal(signal.SIGTERM)
        time.sleep(0.3)
        ready = httpx.get(f"{stack.health_url('gateway')}/ready")
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{api}/health")
        client.join(timeout=30)
        code = process.stop(timeout=30)
    assert ready.status_code == 503
    assert ready.json()["status"] == "draining"
    assert result["slow"].status_code == 200
    assert result["slow"].json() == {"slept": 2.0}
    assert code == 0
