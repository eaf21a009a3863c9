"""The whole RAG Engine stack as native processes on loopback.

Used by ``make dev``, by the end-to-end tests (on free ports) and by the benchmarks, so all
three run the system the same way.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from types import TracebackType

from rag_devstack.nginx import write_native_config
from rag_devstack.processes import (
    LOOPBACK,
    ManagedProcess,
    ProcessFailed,
    free_port,
    http_ok,
    port_is_free,
    redis_answers,
)

SERVICES = ("ingest", "query", "gateway")
START_TIMEOUT_SECONDS = 60.0


@dataclass
class StackPorts:
    """Loopback ports of the native stack; each can be changed by ``DEV_<FIELD>``."""

    redis: int = 6380
    chroma: int = 8001
    gateway: int = 8100
    gateway_health: int = 8190
    ingest: int = 8110
    ingest_health: int = 8191
    query: int = 8120
    query_health: int = 8192
    worker_health: int = 8193
    query_2: int = 8122
    query_2_health: int = 8194
    edge: int = 8080
    query_lb: int = 8129

    @staticmethod
    def variable(field: str) -> str:
        return f"DEV_{field.upper()}_PORT"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> StackPorts:
        values: dict[str, int] = {}
        for field in fields(cls):
            raw = env.get(cls.variable(field.name))
            if raw is None or raw == "":
                continue
            if not raw.isdigit() or not 0 < int(raw) < 65536:
                raise ValueError(f"{cls.variable(field.name)}={raw!r}: allowed: a port 1-65535")
            values[field.name] = int(raw)
        return cls(**values)

    @classmethod
    def free(cls) -> StackPorts:
        ports: set[int] = set()
        values: dict[str, int] = {}
        for field in fields(cls):
            port = free_port()
            while port in ports:
                port = free_port()
            ports.add(port)
            values[field.name] = port
        return cls(**values)

    def items(self) -> Iterable[tuple[str, int]]:
        return ((field.name, getattr(self, field.name)) for field in fields(self))

    def taken(self) -> list[tuple[str, int]]:
        """(variable, port) for every port something else already listens on."""
        return [
            (self.variable(name), port) for name, port in self.items() if not port_is_free(port)
        ]

    def api(self, service: str) -> int:
        return int(getattr(self, service))

    def health(self, service: str) -> int:
        return int(getattr(self, f"{service}_health"))

    def worker(self) -> int:
        return self.worker_health


def executable(name: str) -> str:
    """A program from the project's venv, else from PATH (and sbin, where Debian puts nginx)."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")
    if found is None:
        raise ProcessFailed(f"{name} is not installed; run `make setup`")
    return found


# The `chroma` script imports the whole chromadb client package (1.5 s of CPU, most of a
# Chroma start) only to hand its arguments to the server in chromadb_rust_bindings. Calling
# that directly runs the same server, `chroma run`, with its own argument parsing.
CHROMA_SERVER = (
    "import sys, chromadb_rust_bindings; chromadb_rust_bindings.cli(['chroma', *sys.argv[1:]])"
)


def chroma_command(python: str) -> list[str]:
    """The start of a `chroma run ...` command line, by the quick path where the installed
    chromadb has it, else the `chroma` script."""
    spec = importlib.util.find_spec("chromadb_rust_bindings")
    if spec is not None and Path(python).resolve() == Path(sys.executable).resolve():
        return [python, "-c", CHROMA_SERVER]
    return [executable("chroma")]


class NativeStack:
    """Redis, Chroma and the services, each a managed process logging to ``workdir/logs``."""

    def __init__(
        self,
        workdir: Path,
        ports: StackPorts,
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        python: str = sys.executable,
        internal_token: str | None = None,
    ) -> None:
        self.workdir = workdir
        self.ports = ports
        self.cwd = cwd or workdir
        self.extra_env = dict(env or {})
        self.python = python
        self.internal_token = internal_token
        self.processes: dict[str, ManagedProcess] = {}
        self._cancelled = threading.Event()
        self.with_nginx = False

    def cancel(self) -> None:
        """Make a ``start`` in progress give up (safe to call from a signal handler)."""
        self._cancelled.set()

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"

    @property
    def redis_url(self) -> str:
        return f"redis://{LOOPBACK}:{self.ports.redis}/0"

    def api_url(self, service: str) -> str:
        return f"http://{LOOPBACK}:{self.ports.api(service)}"

    def health_url(self, service: str) -> str:
        return f"http://{LOOPBACK}:{self.ports.health(service)}"

    def service_env(
        self, service: str, overrides: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "ENVIRONMENT": "development",
                "HOST": LOOPBACK,
                "PORT": str(self.ports.api(service)),
                "HEALTH_PORT": str(self.ports.health(service)),
                "REDIS_URL": self.redis_url,
                "CHROMA_HOST": LOOPBACK,
                "CHROMA_PORT": str(self.ports.chroma),
                "LOG_FORMAT": "json",
                "DATA_DIR": str(self.workdir / "data"),
                "PYTHONUNBUFFERED": "1",
                "ORT_DISABLE_TELEMETRY": "1",
            }
        )
        if self.internal_token:
            env["INTERNAL_TOKEN"] = self.internal_token
        if service == "gateway":
            env["INGEST_URL"] = self.api_url("ingest")
            # Through nginx's internal listener to every query replica, when nginx runs.
            env["QUERY_URL"] = (
                f"http://{LOOPBACK}:{self.ports.query_lb}"
                if self.with_nginx
                else self.api_url("query")
            )
        env.update(self.extra_env)
        env.update(overrides or {})
        return env

    def _add(
        self, name: str, argv: list[str], env: Mapping[str, str] | None = None
    ) -> ManagedProcess:
        process = ManagedProcess(
            name, argv, log_path=self.log_dir / f"{name}.log", env=env, cwd=self.cwd
        )
        self.processes[name] = process.start()
        return process

    def start_redis(self) -> ManagedProcess:
        data = self.workdir / "data" / "redis"
        data.mkdir(parents=True, exist_ok=True)
        return self._add(
            "redis",
            [
                executable("redis-server"),
                "--bind",
                LOOPBACK,
                "--port",
                str(self.ports.redis),
                "--dir",
                str(data),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--maxmemory-policy",
                "noeviction",
                "--save",
                "",
                "--daemonize",
                "no",
                "--logfile",
                "",
            ],
        )

    def start_chroma(self) -> ManagedProcess:
        data = self.workdir / "data" / "chroma"
        data.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "ANONYMIZED_TELEMETRY": "False", "NO_COLOR": "1"}
        return self._add(
            "chroma",
            [
                *chroma_command(self.python),
                "run",
                "--host",
                LOOPBACK,
                "--port",
                str(self.ports.chroma),
                "--path",
                str(data),
            ],
            env,
        )

    def start_service(
        self, service: str, overrides: Mapping[str, str] | None = None, *, name: str | None = None
    ) -> ManagedProcess:
        return self._add(
            name or service,
            [self.python, "-m", f"rag_{service}"],
            self.service_env(service, overrides),
        )

    def start_worker(
        self,
        overrides: Mapping[str, str] | None = None,
        *,
        name: str = "worker",
        health_port: int | None = None,
    ) -> ManagedProcess:
        """An ingest worker (``python -m rag_ingest.worker``); its only port is HEALTH_PORT."""
        env = self.service_env("ingest", overrides)
        env["HEALTH_PORT"] = str(health_port or self.ports.worker_health)
        return self._add(name, [self.python, "-m", "rag_ingest.worker"], env)

    def wait_worker(
        self,
        *,
        name: str = "worker",
        health_port: int | None = None,
        timeout: float = START_TIMEOUT_SECONDS,
    ) -> None:
        url = f"http://{LOOPBACK}:{health_port or self.ports.worker_health}/ready"
        self.processes[name].wait_until(
            lambda: http_ok(url), timeout=timeout, what="ready", cancelled=self._cancelled.is_set
        )

    def wait_redis(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        self.processes["redis"].wait_until(
            lambda: redis_answers(self.ports.redis),
            timeout=timeout,
            what="answering PING",
            cancelled=self._cancelled.is_set,
        )

    def wait_chroma(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        url = f"http://{LOOPBACK}:{self.ports.chroma}/api/v2/heartbeat"
        self.processes["chroma"].wait_until(
            lambda: http_ok(url),
            timeout=timeout,
            what="answering its heartbeat",
            cancelled=self._cancelled.is_set,
        )

    def wait_ready(
        self, service: str, *, name: str | None = None, timeout: float = START_TIMEOUT_SECONDS
    ) -> None:
        url = f"{self.health_url(service)}/ready"
        self.processes[name or service].wait_until(
            lambda: http_ok(url), timeout=timeout, what="ready", cancelled=self._cancelled.is_set
        )

    def start(
        self,
        services: Iterable[str] = SERVICES,
        *,
        with_worker: bool = True,
        with_nginx: bool = False,
        query_replicas: int = 1,
    ) -> NativeStack:
        """Start everything and wait until each part answers; on failure stop what started.
        With nginx, clients use ``edge_url`` and the gateway reaches the query replicas
        through nginx's internal listener."""
        services = list(services)
        self.with_nginx = with_nginx
        try:
            # Redis answers within milliseconds; Chroma takes seconds, and the services start
            # without it (not ready until it answers), so they all start together.
            self.start_redis()
            self.wait_redis()
            self.start_chroma()
            for service in services:
                self.start_service(service)
            if "query" in services and query_replicas > 1:
                self.start_query_replica()
            if with_worker:
                self.start_worker()
            if with_nginx:
                self.start_nginx()
            self.wait_chroma()
            for service in services:
                self.wait_ready(service)
            if "query" in services and query_replicas > 1:
                self.wait_query_replica()
            if with_worker:
                self.wait_worker()
            if with_nginx:
                self.wait_nginx()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def edge_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.edge}"

    def query_replica_ports(self) -> list[int]:
        ports = [self.ports.query]
        if "query-2" in self.processes:
            ports.append(self.ports.query_2)
        return ports

    def start_query_replica(self) -> ManagedProcess:
        """A second query process on its own ports (nginx balances between the two)."""
        return self.start_service(
            "query",
            {"PORT": str(self.ports.query_2), "HEALTH_PORT": str(self.ports.query_2_health)},
            name="query-2",
        )

    def wait_query_replica(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        url = f"http://{LOOPBACK}:{self.ports.query_2_health}/ready"
        self.processes["query-2"].wait_until(
            lambda: http_ok(url), timeout=timeout, what="ready", cancelled=self._cancelled.is_set
        )

    def nginx_config(self, *, gateways: Iterable[int] | None = None) -> Path:
        """Render the nginx config for this stack; returns the main config file."""
        gateway_ports = list(gateways or [self.ports.gateway])
        return write_native_config(
            self.workdir / "nginx",
            self.log_dir,
            edge_listen=f"{LOOPBACK}:{self.ports.edge}",
            query_lb_listen=f"{LOOPBACK}:{self.ports.query_lb}",
            gateways=[f"{LOOPBACK}:{port}" for port in gateway_ports],
            queries=[f"{LOOPBACK}:{port}" for port in self.query_replica_ports()],
            max_body_size=self.extra_env.get("MAX_REQUEST_BYTES"),
            client_body_timeout=self.extra_env.get("NGINX_CLIENT_BODY_TIMEOUT"),
        )

    def start_nginx(self, *, gateways: Iterable[int] | None = None) -> ManagedProcess:
        config = self.nginx_config(gateways=gateways)
        return self._add(
            "nginx",
            [executable("nginx"), "-p", str(config.parent), "-c", str(config), "-g", "daemon off;"],
        )

    def wait_nginx(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        self.processes["nginx"].wait_until(
            lambda: http_ok(f"{self.edge_url}/health") or http_ok(f"{self.edge_url}/ready"),
            timeout=timeout,
            what="answering",
            cancelled=self._cancelled.is_set,
        )

    def unexpected_exits(self) -> list[tuple[str, int]]:
        return [
            (name, code)
            for name, process in self.processes.items()
            if (code := process.poll()) is not None
        ]

    def stop(self) -> dict[str, int | None]:
        """Stop the services (and nginx) together, then Chroma and Redis: each service shuts
        down against a Redis and Chroma that still answer."""
        backing = [name for name in ("chroma", "redis") if name in self.processes]
        front = [name for name in reversed(list(self.processes)) if name not in backing]
        codes: dict[str, int | None] = {}
        # A second Ctrl-C or SIGTERM while waiting must not leave the rest running (it once
        # left Chroma and Redis behind, still busy): what is left is killed at once, then the
        # interruption goes on.
        interrupted: BaseException | None = None
        for group in (front, backing):
            for name in group:
                if interrupted is None:
                    self.processes[name].terminate()
            for name in group:
                try:
                    codes[name] = self.processes[name].stop(0 if interrupted else 20.0)
                except BaseException as exc:
                    interrupted = interrupted or exc
                    codes[name] = self.processes[name].stop(0)
        if interrupted is not None:
            raise interrupted
        return codes

    def __enter__(self) -> NativeStack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
