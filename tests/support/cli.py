"""Running the `rag` command line through its real entry point: with pipes (not a terminal)
or on a pseudo-terminal, to see what a person at a terminal sees."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

RAG = str(Path(sys.executable).with_name("rag"))


def rag(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`rag ARGS` with stdout and stderr captured (so neither is a terminal)."""
    return subprocess.run(
        [RAG, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def rag_on_terminal(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> tuple[int, str]:
    """`rag ARGS` on a pseudo-terminal 100 columns wide: its exit code and everything it
    drew, control sequences included."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [RAG, *args],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env={**os.environ, "TERM": "xterm", "COLUMNS": "100", **(env or {})},
    )
    os.close(terminal)
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        elif process.poll() is not None:
            break
    os.close(controller)
    return process.wait(timeout=30), seen.decode(errors="replace")
