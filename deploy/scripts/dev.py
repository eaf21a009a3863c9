"""`make dev`: run the whole RAG Engine stack natively on loopback until Ctrl-C.

Ports come from DEV_<PART>_PORT variables (see `make help` and docs/development.md); data and
logs go to .dev/ (or DEV_DIR). Ctrl-C (or SIGTERM) stops every process it started.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from rag_devstack import SERVICES, NativeStack, ProcessFailed, StackPorts, StartCancelled

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    try:
        ports = StackPorts.from_env(os.environ)
    except ValueError as exc:
        print(f"make dev: {exc}", file=sys.stderr)
        return 2
    taken = ports.taken()
    if taken:
        for variable, port in taken:
            print(f"make dev: port {port} is already in use ({variable})", file=sys.stderr)
        example = " ".join(f"{variable}={port + 1000}" for variable, port in taken)
        print(f"make dev: choose free ports, e.g.  make dev {example}", file=sys.stderr)
        return 1

    workdir = Path(os.environ.get("DEV_DIR") or ROOT / ".dev").resolve()
    stack = NativeStack(workdir, ports, cwd=ROOT)
    received: list[int] = []

    def request_stop(signum: int, _frame: object) -> None:
        # Only flags here: printing from a signal handler can collide with a print in progress.
        received.append(signum)
        stack.cancel()  # a start() in progress gives up and stops whatever it started

    # Ctrl-C, `kill`, or the terminal closing: all stop every process we started.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, request_stop)

    print(
        f"make dev: starting Redis, Chroma, {', '.join(SERVICES)} and an ingest worker "
        f"(logs in {stack.log_dir})",
        flush=True,
    )
    try:
        stack.start()
    except ProcessFailed as exc:
        print(f"make dev: {exc}", file=sys.stderr)
        return 1
    except StartCancelled:
        print(
            f"make dev: {_signal_name(received)} during start-up; everything stopped.", flush=True
        )
        return 0

    print(_banner(stack), flush=True)
    exit_code = 0
    try:
        while not received:
            time.sleep(0.3)
            died = stack.unexpected_exits()
            if died:
                for name, code in died:
                    print(
                        f"make dev: {name} exited with code {code}; last log lines:\n"
                        f"{stack.processes[name].log_tail(15)}",
                        file=sys.stderr,
                    )
                exit_code = 1
                break
    finally:
        if received:
            print(f"\nmake dev: {_signal_name(received)} received, stopping...", flush=True)
        stack.stop()
        print("make dev: everything stopped.", flush=True)
    return exit_code


def _signal_name(received: list[int]) -> str:
    return signal.Signals(received[0]).name if received else "signal"


def _banner(stack: NativeStack) -> str:
    rows = [
        ("gateway", stack.api_url("gateway"), f"{stack.health_url('gateway')}/metrics"),
        ("ingest", stack.api_url("ingest"), f"{stack.health_url('ingest')}/metrics"),
        ("query", stack.api_url("query"), f"{stack.health_url('query')}/metrics"),
        ("worker", "(ingest jobs)", f"http://127.0.0.1:{stack.ports.worker_health}/metrics"),
        ("chroma", f"http://127.0.0.1:{stack.ports.chroma}", ""),
        ("redis", stack.redis_url, ""),
    ]
    width = max(len(url) for _, url, _ in rows)
    lines = ["", "RAG Engine is running natively:", ""]
    lines += [f"  {name:<8} {url:<{width}}  {metrics}".rstrip() for name, url, metrics in rows]
    lines += [
        "",
        f"  API docs  {stack.api_url('gateway')}/schema",
        f"  try       curl -s {stack.api_url('gateway')}/ready",
        f"  logs      {stack.log_dir}/",
        "",
        "Press Ctrl-C to stop everything.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
