"""A small client of the query API for tests: search, answer, and read SSE streams."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from rag_devstack.processes import tls_context


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: Any


def read_sse(lines: Iterator[str]) -> Iterator[SseEvent]:
    """Events of a text/event-stream, as a real client reads them line by line."""
    event, data = "message", []
    for line in lines:
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            data.append(line.split(":", 1)[1].strip())
        elif not line and data:
            text = "\n".join(data)
            yield SseEvent(event, text if text == "[DONE]" else json.loads(text))
            event, data = "message", []


@dataclass
class QueryClient:
    base_url: str

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.base_url, timeout=60, verify=tls_context())

    def search(self, collection: str, query: str, **options: Any) -> httpx.Response:
        return self.http.post(
            f"/v1/collections/{collection}/search", json={"query": query, **options}
        )

    def hits(self, collection: str, query: str, **options: Any) -> list[dict[str, Any]]:
        response = self.search(collection, query, **options)
        assert response.status_code == 200, response.text
        results: list[dict[str, Any]] = response.json()["results"]
        return results

    def ask(self, collection: str, query: str, **options: Any) -> httpx.Response:
        return self.http.post(
            f"/v1/collections/{collection}/query", json={"query": query, **options}
        )

    def answer(self, collection: str, query: str, **options: Any) -> dict[str, Any]:
        response = self.ask(collection, query, **options)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def stream(self, collection: str, query: str, **options: Any) -> list[SseEvent]:
        with self.http.stream(
            "POST",
            f"/v1/collections/{collection}/query",
            json={"query": query, "stream": True, **options},
        ) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("text/event-stream")
            return list(read_sse(response.iter_lines()))

    def wait_for(
        self,
        collection: str,
        query: str,
        document_id: str,
        timeout: float = 15,
        *,
        present: bool = True,
    ) -> float:
        """Seconds until a lexical search finds ``document_id`` (``present=False``: no longer
        finds it)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            response = self.search(collection, query, mode="lexical", top_k=20)
            if response.status_code == 200 and present == (
                document_id in {hit["document_id"] for hit in response.json()["results"]}
            ):
                return time.monotonic() - started
            time.sleep(0.05)
        what = "not found" if present else "still found"
        raise AssertionError(f"{document_id} {what} by {self.base_url} after {timeout} s")
