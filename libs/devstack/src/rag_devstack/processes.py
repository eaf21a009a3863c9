"""Start, watch and stop local server processes (Redis, Chroma, our services, nginx...)."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

import httpx

LOOPBACK = "127.0.0.1"


class ProcessFailed(RuntimeError):
    """A managed process exited or did not become ready; the message carries its log tail."""


class StartCancelled(RuntimeError):
    """Waiting for a process was cancelled (Ctrl-C during start-up)."""


def free_port(host: str = LOOPBACK) -> int:
    """A port nothing listens on right now (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def redis_answers(port: int, host: str = LOOPBACK) -> bool:
    """True when a Redis server answers PING on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context for every short-lived client (``verify=tls_context()``). httpx builds a
    new one for each client, loading the CA bundle: about 30 ms of CPU. Probes run every 50 ms
    while a stack starts, so a start spent most of a core on them."""
    return httpx.create_ssl_context()


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout, verify=tls_context()).status_code == 200
    except httpx.HTTPError:
        return False


class ManagedProcess:
    """One child process in its own session (so its whole group can be stopped), logging to a
    file. ``stop`` sends SIGTERM, waits, then SIGKILLs whatever is left of the group."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._terminated = False

    @property
    def pid(self) -> int:
        if self._process is None:
            raise ProcessFailed(f"{self.name} was never started")
        return self._process.pid

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._terminated = False
        self._process = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        return self

    def poll(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_until(
        self,
        ready: Callable[[], bool],
        *,
        timeout: float,
        what: str,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cancelled():
                raise StartCancelled(f"stopped while waiting for {self.name}")
            code = self.poll()
            if code is not None:
                raise ProcessFailed(
                    f"{self.name} exited with code {code} before {what}; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if ready():
                return
            time.sleep(0.05)
        raise ProcessFailed(
            f"{self.name} not {what} after {timeout:g}s; log {self.log_path}:\n{self.log_tail()}"
        )

    def signal(self, signum: int) -> None:
        if self.is_running():
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        """Ask the process group to stop (SIGTERM) without waiting; ``stop`` then waits. Sent
        once: a second SIGTERM makes a server skip its graceful shutdown."""
        process = self._process
        if process is None or self._terminated or process.poll() is not None:
            return
        self._terminated = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)

    def stop(self, timeout: float = 20.0) -> int | None:
        """Stop the process and everything it started; returns its exit code."""
        if self._process is None:
            return None
        process = self._process
        if process.poll() is None:
            self.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout)
        # Anything left in the group (the process, or children it failed to stop) is killed.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        code = process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return code


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces or parentheses; fields resume after the last ')'.
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pids: set[int], timeout: float = 10.0) -> set[int]:
    """Wait until none of ``pids`` is alive; returns those still alive at the deadline."""
    deadline = time.monotonic() + timeout
    alive = {pid for pid in pids if pid_alive(pid)}
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = {pid for pid in alive if pid_alive(pid)}
    return alive
