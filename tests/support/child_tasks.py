"""Functions the parser pool's tests run in its child processes (importable by name)."""

from __future__ import annotations

import os
import time


def echo(value: str) -> str:
    return value


def slow_echo(value: str, seconds: float) -> str:
    time.sleep(seconds)
    return value


def hang() -> None:
    time.sleep(3600)


def allocate(megabytes: int) -> int:
    block = bytearray(megabytes * 1024 * 1024)
    return len(block)


def die() -> None:
    os._exit(3)
