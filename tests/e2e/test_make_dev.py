"""`make dev`'s runner: starts everything, prints URLs, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from rag_devstack import SERVICES, StackPorts, descendants, wait_gone

from tests.conftest import REPO_ROOT
from tests.support.mcp import initialize

pytestmark = pytest.mark.e2e
DEV_SCRIPT = REPO_ROOT / "deploy" / "scripts" / "dev.py"


def _dev_env(ports: StackPorts, workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({StackPorts.variable(name): str(port) for name, port in ports.items()})
    env["DEV_DIR"] = str(workdir)
    return env


def test_make_dev_runs_the_stack_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    ports = StackPorts.free()
    output = tmp_path / "dev.out"
    with output.open("wb") as sink:
        runner = subprocess.Popen(
            [sys.executable, str(DEV_SCRIPT)],
            env=_dev_env(ports, tmp_path / "dev"),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 90
            while "Press Ctrl-C" not in output.read_text():
                assert runner.poll() is None, output.read_text()
                assert time.monotonic() < deadline, output.read_text()
                time.sleep(0.2)
            banner = output.read_text()
            for service in SERVICES:
                api = f"http://127.0.0.1:{ports.api(service)}"
                assert api in banner
                assert httpx.get(f"{api}/ready").status_code == 200
                health = f"http://127.0.0.1:{ports.health(service)}"
                assert httpx.get(f"{health}/ready").status_code == 200
            # Through nginx, with the key the banner offers.
            edge = f"http://127.0.0.1:{ports.edge}"
            assert f"{edge}  (nginx" in banner
            key = re.search(r"API key   (rag_\S+)", banner)
            assert key is not None, banner
            listed = httpx.get(
                f"{edge}/v1/collections", headers={"Authorization": f"Bearer {key.group(1)}"}
            )
            assert listed.status_code == 200, listed.text
            assert httpx.get(f"{edge}/v1/collections").status_code == 401
            # Agents: the MCP server the banner names answers with the same key.
            assert f"MCP       {edge}/mcp" in banner
            initialized = httpx.post(f"{edge}/mcp", **initialize(key.group(1)), timeout=30)
            assert initialized.status_code == 200, initialized.text
            assert '"name":"rag-engine"' in initialized.text
            assert httpx.get(f"http://127.0.0.1:{ports.query_2_health}/ready").status_code == 200
            started = descendants(runner.pid)
            assert len(started) >= 8  # redis, chroma, 4 services, worker, nginx (and children)

            runner.send_signal(signal.SIGINT)  # what Ctrl-C sends
            assert runner.wait(timeout=60) == 0, output.read_text()
        finally:
            if runner.poll() is None:
                os.killpg(runner.pid, signal.SIGKILL)
    assert "everything stopped" in output.read_text()
    assert wait_gone(started) == set()
    logs = sorted(path.name for path in (tmp_path / "dev" / "logs").iterdir())
    assert logs == [
        "chroma.log",
        "gateway.log",
        "ingest.log",
        "nginx-access.log",
        "nginx-error.log",
        "nginx.log",
        "query-2.log",
        "query.log",
        "redis.log",
        "worker.log",
    ]


def test_make_dev_names_a_taken_port_and_how_to_change_it(tmp_path: Path) -> None:
    ports = StackPorts.free()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports.query))
        squatter.listen()
        result = subprocess.run(
            [sys.executable, str(DEV_SCRIPT)],
            check=False,
            env=_dev_env(ports, tmp_path / "dev"),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"port {ports.query} is already in use (DEV_QUERY_PORT)" in result.stderr
    assert "make dev DEV_QUERY_PORT=" in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP])
def test_a_signal_during_start_up_stops_at_once_and_leaves_nothing(
    tmp_path: Path, signum: signal.Signals
) -> None:
    ports = StackPorts.free()
    runner = subprocess.Popen(
        [sys.executable, str(DEV_SCRIPT)],
        env=_dev_env(ports, tmp_path / "dev"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        started: set[int] = set()
        while len(started) < 2 and time.monotonic() < deadline:  # Redis and Chroma launched
            started |= descendants(runner.pid)
            time.sleep(0.05)
        runner.send_signal(signum)
        output, _ = runner.communicate(timeout=30)
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
    assert runner.returncode == 0
    assert b"Press Ctrl-C" not in output  # it never claimed to be running
    assert wait_gone(started | descendants(runner.pid)) == set()
