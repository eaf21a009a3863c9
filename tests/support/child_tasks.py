"""Functions the parser pool's tests run in its child processes (importable by name)."""

from __future__ import annotations

import os
import time


def echo(value: str) -> str:
    return value


def slow_echo(value: str, seconds: float) -> str:
    time.sleep(seconds)
    return value


def wait_for_file(path: str, value: str) -> str:
    """Return ``value`` once ``path`` exists (the test decides when the work may end)."""
    while not os.path.exists(path):
        time.sleep(0.02)
    return value


def hang() -> None:
    time.sleep(3600)


def allocate(megabytes: int) -> int:
    block = bytearray(megabytes * 1024 * 1024)
    return len(block)


def die() -> None:
    os._exit(3)
