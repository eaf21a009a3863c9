"""What each parser process runs before any document: its memory limit, then a warm-up.

Apart from the pool on purpose: a spawned child imports the module of every function it is
given, and the pool's module imports the worker's telemetry (structlog, OpenTelemetry,
Litestar): well over a second of CPU in each parser process, for nothing it uses.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import resource
import signal

PR_SET_PDEATHSIG = 1  # prctl(2)


def limit_memory(max_bytes: int) -> None:
    """Runs first in each child: allocations beyond the limit raise MemoryError there. The
    child leads a process group of its own, which what it starts (tesseract) joins: the pool
    kills the group, never leaving a program running on for a parse nobody waits for."""
    os.setpgrp()
    die_with_parent()
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"
    if max_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))


def die_with_parent() -> None:
    """Be killed when the worker that started this process dies. Leading a group of its own,
    a parser process is out of reach of what stops its worker's group; a SIGKILLed worker's
    parser processes lived on, idle, for good (Linux; elsewhere nothing is done)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return
    except (OSError, AttributeError):
        return
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:
        os._exit(1)  # the worker died before the line above took effect


def warm_up() -> None:
    """Load what preparing a document needs (the tokenizer)."""
    from rag_ingest.preparing import warm_up  # noqa: PLC0415 - it imports this package

    warm_up()
