"""The server runner: WORKERS processes sharing ports and metrics; graceful drain on SIGTERM."""

from __future__ import annotations

import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from rag_devstack import ManagedProcess, NativeStack, StackPorts, descendants, wait_gone

from tests.conftest import REPO_ROOT, Backing
from tests.support.metrics import samples, value

pytestmark = pytest.mark.e2e


def _stack(tmp_path: Path, backing: Backing) -> NativeStack:
    ports = StackPorts.free()
    ports.redis, ports.chroma = backing.redis_port, backing.chroma_port
    return NativeStack(tmp_path, ports)


def _start_slow_service(stack: NativeStack, overrides: dict[str, str]) -> ManagedProcess:
    env = {**stack.service_env("gateway", overrides), "PYTHONPATH": str(REPO_ROOT)}
    process = stack._add("slowtest", [sys.executable, "-m", "tests.support.slow_service"], env)
    stack.wait_ready("gateway", name="slowtest")
    return process


def test_workers_share_the_ports_and_sum_their_metrics(tmp_path: Path, backing: Backing) -> None:
    with _stack(tmp_path, backing) as stack:
        process = _start_slow_service(stack, {"WORKERS": "2"})
        api = stack.api_url("gateway")
        # While one worker's event loop is blocked, the other must accept the next request.
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(httpx.get, f"{api}/block?seconds=1.5", timeout=30)
            time.sleep(0.4)
            second = pool.submit(httpx.get, f"{api}/block?seconds=0.1", timeout=30)
            pids = {first.result().json()["pid"], second.result().json()["pid"]}
        workers = descendants(process.pid)
        assert len(pids) == 2
        assert pids <= workers
        # Each worker's process metrics are sampled every few seconds: wait for both.
        deadline = time.monotonic() + 30
        while True:
            metrics = httpx.get(f"{stack.health_url('gateway')}/metrics").text
            rss = {
                labels["pid"]
                for name, labels, _ in samples(metrics)
                if name == "process_resident_memory_bytes"
            }
            if {str(pid) for pid in pids} <= rss:
                break
            assert time.monotonic() < deadline, (pids, rss)
            time.sleep(0.2)
        # Each worker counted one request; /metrics sums them whichever worker answers.
        assert value(metrics, "http_requests_total", route="/block", status="200") == 2

        process.signal(signal.SIGINT)  # Ctrl-C: the supervisor stops its workers
        assert process.stop(timeout=40) == 0, process.log_tail()
        assert wait_gone(workers) == set()


def test_sigterm_lets_an_in_flight_request_finish_and_turns_not_ready(
    tmp_path: Path, backing: Backing
) -> None:
    """SIGTERM during a 2 s request: the request completes, /ready says draining meanwhile,
    new connections are refused, and the process exits 0."""
    with _stack(tmp_path, backing) as stack:
        process = _start_slow_service(stack, {})
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
