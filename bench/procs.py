"""What a process of the stack uses, read from /proc: resident memory (now and at its peak) and
CPU time, each with the process's living descendants (nginx's workers, the worker's parser
processes)."""

from __future__ import annotations

import os
from pathlib import Path

from rag_devstack.processes import descendants


def _status_mb(pid: int, field: str) -> float:
    total = 0.0
    for member in {pid} | descendants(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith(f"{field}:"):
                total += int(line.split()[1]) / 1024
    return total


def rss_mb(pid: int) -> float:
    """Resident memory now (VmRSS)."""
    return _status_mb(pid, "VmRSS")


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM)."""
    return _status_mb(pid, "VmHWM")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for member in {pid} | descendants(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def disk_mb(path: Path) -> float:
    """Bytes on disk under ``path`` (allocated blocks, as du counts them)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue
    return total / 1024 / 1024
