"""A stack stopped twice over (a second Ctrl-C or SIGTERM while it waits for a service to
shut down) still stops every process: one such stop left Chroma and Redis running, busy, after
a benchmark was cut short."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from rag_devstack import NativeStack, StackPorts

# Runs until a signal stops it.
SLEEPER = [sys.executable, "-c", "import signal; signal.pause()"]


def test_an_interrupted_stop_still_stops_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = NativeStack(tmp_path, StackPorts.free())
    for name in ("redis", "chroma", "query", "gateway"):
        stack._add(name, SLEEPER)
    first = stack.processes["gateway"]
    real_stop = first.stop

    def interrupted(timeout: float = 20.0) -> int | None:
        monkeypatch.setattr(first, "stop", real_stop)
        raise KeyboardInterrupt  # the second Ctrl-C, while the stack waits on the gateway

    monkeypatch.setattr(first, "stop", interrupted)
    with pytest.raises(KeyboardInterrupt):
        stack.stop()
    assert [n for n, p in stack.processes.items() if p.is_running()] == []
