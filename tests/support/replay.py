"""A local HTTP server that answers with recorded responses and remembers every request."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"


@dataclass
class Replay:
    """Answer the next requests with (status, recorded file) in order, the last one forever;
    ``.sse`` files go out as ``text/event-stream``."""

    answers: list[tuple[int, str]]
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    # Seconds to wait before answering: a provider that hangs.
    hang_seconds: float = 0.0
    # Cleared: every request waits until it is set again (a provider that hangs until told).
    gate: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.gate.set()

    def next_answer(self) -> tuple[int, str, bytes]:
        status, name = self.answers[0] if len(self.answers) == 1 else self.answers.pop(0)
        return status, name, (RECORDED / name).read_bytes()

    def wait_requests(self, count: int, timeout: float = 30) -> None:
        """Until ``count`` requests have arrived (they are in flight while it hangs)."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            assert time.monotonic() < deadline, f"{len(self.requests)} of {count} requests came"
            time.sleep(0.02)

    def script(self, *answers: tuple[int, str], hang_seconds: float = 0.0) -> None:
        """Answer the next requests with these (a server shared by several tests)."""
        self.answers = list(answers)
        self.requests.clear()
        self.hang_seconds = hang_seconds


@contextmanager
def replay_server(*answers: tuple[int, str]) -> Iterator[Replay]:
    replay = Replay(list(answers))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            replay.requests.append(
                {
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "json": json.loads(body) if body else None,
                }
            )
            status, name, payload = replay.next_answer()
            replay.gate.wait()
            if replay.hang_seconds:
                time.sleep(replay.hang_seconds)
            self.send_response(status)
            kind = "text/event-stream" if name.endswith(".sse") else "application/json"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    replay.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield replay
    finally:
        server.shutdown()
