"""`make dev`: run the whole RAG Engine stack natively on loopback until Ctrl-C.

Ports come from DEV_<PART>_PORT variables (see `make help` and docs/development.md); data and
logs go to .dev/ (or DEV_DIR). Ctrl-C (or SIGTERM) stops every process it started.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import time
from pathlib import Path

import httpx
from rag_devstack import (
    SERVICES,
    NativeStack,
    ProcessFailed,
    StackPorts,
    StartCancelled,
    create_api_key,
)

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
    # The gateway's token to ingest and query, and an admin key: from the environment (or
    # .env) when set there, else made up for this run.
    admin_key = _setting("ADMIN_API_KEY") or f"dev-admin-{secrets.token_urlsafe(24)}"
    body_timeout = _setting("NGINX_CLIENT_BODY_TIMEOUT")
    stack = NativeStack(
        workdir,
        ports,
        cwd=ROOT,
        env={
            "ADMIN_API_KEY": admin_key,
            **({"NGINX_CLIENT_BODY_TIMEOUT": body_timeout} if body_timeout else {}),
        },
        internal_token=_setting("INTERNAL_TOKEN") or secrets.token_urlsafe(32),
    )
    received: list[int] = []

    def request_stop(signum: int, _frame: object) -> None:
        # Only flags here: printing from a signal handler can collide with a print in progress.
        received.append(signum)
        stack.cancel()  # a start() in progress gives up and stops whatever it started

    # Ctrl-C, `kill`, or the terminal closing: all stop every process we started.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, request_stop)

    print(
        f"make dev: starting Redis, Chroma, {', '.join(SERVICES)}, a second query replica, "
        f"an ingest worker and nginx (logs in {stack.log_dir})",
        flush=True,
    )
    try:
        stack.start(with_nginx=True, query_replicas=2)
        # An API key of the default tenant that may ingest and query, made through the API.
        dev_key = create_api_key(
            stack.edge_url, admin_key, ["ingest:write", "query:read"], "make dev"
        )
    except (ProcessFailed, httpx.HTTPError) as exc:
        print(f"make dev: {exc}", file=sys.stderr)
        stack.stop()
        return 1
    except StartCancelled:
        print(
            f"make dev: {_signal_name(received)} during start-up; everything stopped.", flush=True
        )
        return 0

    print(_banner(stack, admin_key, dev_key), flush=True)
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


def _setting(name: str) -> str | None:
    """A value from the environment, else from .env (as the services read it)."""
    if os.environ.get(name):
        return os.environ[name]
    dotenv = ROOT / ".env"
    if dotenv.exists():
        for line in dotenv.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == name and value.strip():
                return value.strip().strip("'\"")
    return None


def _banner(stack: NativeStack, admin_key: str, dev_key: str) -> str:
    port = stack.ports
    rows = [
        ("API", f"{stack.edge_url}  (nginx: use this one)", ""),
        ("gateway", stack.api_url("gateway"), f"{stack.health_url('gateway')}/metrics"),
        ("ingest", stack.api_url("ingest"), f"{stack.health_url('ingest')}/metrics"),
        ("query", stack.api_url("query"), f"{stack.health_url('query')}/metrics"),
        (
            "query-2",
            f"http://127.0.0.1:{port.query_2}",
            f"http://127.0.0.1:{port.query_2_health}/metrics",
        ),
        ("worker", "(ingest jobs)", f"http://127.0.0.1:{port.worker_health}/metrics"),
        ("chroma", f"http://127.0.0.1:{port.chroma}", ""),
        ("redis", stack.redis_url, ""),
    ]
    width = max(len(url) for _, url, _ in rows)
    lines = ["", "RAG Engine is running natively:", ""]
    lines += [f"  {name:<8} {url:<{width}}  {metrics}".rstrip() for name, url, metrics in rows]
    lines += [
        "",
        f"  playground {stack.edge_url}/  (paste the API key)",
        f"  API docs  {stack.edge_url}/schema",
        f"  MCP       {stack.edge_url}/mcp  (agents: docs/mcp.md; the API key as a Bearer header)",
        f"  API key   {dev_key}  (tenant 'default': ingest and query)",
        f"  admin key {admin_key}  (ADMIN_API_KEY: creates more keys)",
        "  try",
        f"    export RAG_URL={stack.edge_url} RAG_API_KEY={dev_key}",
        "    .venv/bin/rag ingest docs/ -c notes && .venv/bin/rag query 'What is RAG Engine?' "
        "-c notes --stream",
        f"    curl -s -H 'Authorization: Bearer {dev_key}' \\",
        f"         -H 'content-type: application/json' -d '{{\"name\": \"notes\"}}' "
        f"{stack.edge_url}/v1/collections",
        f"  logs      {stack.log_dir}/",
        "",
        "Press Ctrl-C to stop everything.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
