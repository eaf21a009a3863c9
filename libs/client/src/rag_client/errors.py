"""Errors the SDK raises: every failed API call carries the server's problem details."""

from __future__ import annotations

from typing import Any


class RAGError(Exception):
    """Base of every error the SDK raises."""


class ConnectionFailed(RAGError):
    """The server could not be reached (or did not answer in time)."""


class APIError(RAGError):
    """An error response, with its RFC 9457 problem details (``problem``)."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        self.title = str(problem.get("title") or f"HTTP {status}")
        self.detail = str(problem.get("detail") or "")
        self.errors: list[dict[str, Any]] = list(problem.get("errors") or [])
        super().__init__(f"{status} {self.title}" + (f": {self.detail}" if self.detail else ""))
