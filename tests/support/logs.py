"""Capture the JSON log lines a piece of code writes."""

from __future__ import annotations

import io
import json
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
