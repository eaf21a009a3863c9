"""Capture the JSON log lines a piece of code writes."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rag_telemetry import configure_logging


class CapturedLogs:
    def __init__(self, service: str = "test", secrets: tuple[str, ...] = ()) -> None:
        self.stream = io.StringIO()
        configure_logging(
            service,
            level="DEBUG",
            log_format="json",
            secrets=secrets,
            stream=self.stream,
            cache_loggers=False,
        )

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines() if line.strip()]

    def text(self) -> str:
        return self.stream.getvalue()


def leaked_secrets(log_dir: Path, secrets: Mapping[str, str]) -> list[str]:
    """``file:line: name`` for every line of every log in ``log_dir`` that holds one of
    ``secrets`` (name -> value)."""
    found = []
    for path in sorted(log_dir.rglob("*.log")):
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            for name, value in secrets.items():
                if value and value in line:
                    found.append(f"{path.name}:{number}: {name}")
    return found
