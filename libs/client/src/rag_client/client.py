"""Sync and async clients for the public API (through the gateway).

Every call is described once, as a ``Call``; ``Client`` and ``AsyncClient`` only differ in how
they send it. Responses of 429 and 503 are retried with backoff, honouring ``Retry-After``;
other errors raise ``APIError`` with the server's problem details."""

from __future__ import annotations

import asyncio
import email.utils
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from rag_client.errors import APIError, ConnectionFailed

DEFAULT_URL = "http://127.0.0.1:8080"
RETRIED_STATUSES = frozenset({429, 503})
MAX_BACKOFF_SECONDS = 30.0

Progress = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Settings:
    """Where the API is and how to call it. ``from_env`` reads ``RAG_URL``, ``RAG_API_KEY``,
    ``RAG_TIMEOUT`` and ``RAG_RETRIES``; explicit arguments win."""

    url: str = DEFAULT_URL
    api_key: str | None = None
    timeout: float = 60.0
    retries: int = 3

    @classmethod
    def from_env(
        cls,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | None = None,
        retries: int | None = None,
    ) -> Settings:
        return cls(
            url=(url or os.environ.get("RAG_URL") or DEFAULT_URL).rstrip("/"),
            api_key=api_key or os.environ.get("RAG_API_KEY") or None,
            timeout=timeout if timeout is not None else float(os.environ.get("RAG_TIMEOUT", "60")),
            retries=retries if retries is not None else int(os.environ.get("RAG_RETRIES", "3")),
        )

    def headers(self) -> dict[str, str]:
        headers = {"User-Agent": "rag-client/0.1"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    json: Any = None
    params: Mapping[str, Any] | None = None
    data: Mapping[str, str] | None = None
    files: Mapping[str, tuple[str, bytes, str]] | None = None
    accepted: frozenset[int] = field(default_factory=frozenset)

    def send_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.json is not None:
            kwargs["json"] = self.json
        if self.params:
            kwargs["params"] = {k: v for k, v in self.params.items() if v is not None}
        if self.data is not None:
            kwargs["data"] = dict(self.data)
        if self.files is not None:
            kwargs["files"] = dict(self.files)
        return kwargs


def retry_delay(response: httpx.Response | None, attempt: int) -> float:
    """``Retry-After`` (seconds or an HTTP date) when the server sent it, else exponential
    backoff from 0.5 s; never more than MAX_BACKOFF_SECONDS."""
    header = response.headers.get("Retry-After") if response is not None else None
    if header:
        header = header.strip()
        if header.isdigit():
            return min(float(header), MAX_BACKOFF_SECONDS)
        try:
            when = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            return min(max(when.timestamp() - time.time(), 0.0), MAX_BACKOFF_SECONDS)
    backoff: float = 0.5 * 2**attempt
    return min(backoff, MAX_BACKOFF_SECONDS)


def problem_of(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        if isinstance(body.get("error"), dict):  # the OpenAI-compatible routes' shape
            error = body["error"]
            return {"title": error.get("type") or "error", "detail": error.get("message") or ""}
        return body
    return {
        "title": response.reason_phrase or f"HTTP {response.status_code}",
        "detail": response.text[:500],
    }


def result_of(call: Call, response: httpx.Response) -> Any:
    if response.status_code >= 400 and response.status_code not in call.accepted:
        raise APIError(response.status_code, problem_of(response))
    if response.status_code == 204 or not response.content:
        return None
    return response.json()


# Calls, described once.


def evaluate_call(
    collection: str,
    cases: Sequence[Mapping[str, Any]],
    *,
    top_k: int = 10,
    mode: str | None = None,
    answers: bool = False,
    generator: str | None = None,
    judge: bool = False,
    background: bool | None = None,
) -> Call:
    body: dict[str, Any] = {
        "collection": collection,
        "cases": [dict(c) for c in cases],
        "top_k": top_k,
        "answers": answers,
        "judge": judge,
    }
    for name, value in (("mode", mode), ("generator", generator), ("background", background)):
        if value is not None:
            body[name] = value
    return Call("POST", "/v1/evaluate", json=body)


def evaluate_beir_call(
    collection: str,
    queries: Path,
    qrels: Path,
    *,
    top_k: int = 10,
    mode: str | None = None,
    answers: bool = False,
    generator: str | None = None,
    judge: bool = False,
    background: bool | None = None,
) -> Call:
    data = {"collection": collection, "top_k": str(top_k)}
    for name, value in (("mode", mode), ("generator", generator)):
        if value is not None:
            data[name] = value
    for name, flag in (("answers", answers), ("judge", judge)):
        if flag:
            data[name] = "true"
    if background is not None:
        data["background"] = "true" if background else "false"
    files = {
        "queries": (queries.name, queries.read_bytes(), "application/jsonl"),
        "qrels": (qrels.name, qrels.read_bytes(), "text/tab-separated-values"),
    }
    return Call("POST", "/v1/evaluate/beir", data=data, files=files)


def evaluation_call(evaluation_id: str) -> Call:
    return Call("GET", f"/v1/evaluations/{evaluation_id}")


def finished(record: Mapping[str, Any]) -> bool:
    return record.get("state") in ("succeeded", "failed")


class Client:
    """The public API, synchronously. ``Client()`` reads RAG_URL and RAG_API_KEY."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        settings: Settings | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings = settings or Settings.from_env(url, api_key)
        self._http = httpx.Client(
            base_url=self.settings.url,
            headers=self.settings.headers(),
            timeout=self.settings.timeout,
            transport=transport,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def call(self, call: Call) -> Any:
        for attempt in range(self.settings.retries + 1):
            try:
                response = self._http.request(call.method, call.path, **call.send_kwargs())
            except httpx.TransportError as exc:
                raise ConnectionFailed(f"{self.settings.url}: {exc}") from exc
            if response.status_code in RETRIED_STATUSES and attempt < self.settings.retries:
                time.sleep(retry_delay(response, attempt))
                continue
            return result_of(call, response)
        raise AssertionError("unreachable")  # pragma: no cover

    def evaluate(self, collection: str, cases: Sequence[Mapping[str, Any]], **options: Any) -> Any:
        """Evaluate retrieval (and answers) on ``cases``; the result, or the evaluation's
        record (``state`` running, ``status_url``) when it runs in the background."""
        return self.call(evaluate_call(collection, cases, **options))

    def evaluate_beir(self, collection: str, queries: Path, qrels: Path, **options: Any) -> Any:
        return self.call(evaluate_beir_call(collection, queries, qrels, **options))

    def evaluation(self, evaluation_id: str) -> Any:
        return self.call(evaluation_call(evaluation_id))

    def wait_evaluation(
        self,
        evaluation_id: str,
        *,
        poll_seconds: float = 1.0,
        max_seconds: float | None = None,
        on_progress: Progress | None = None,
    ) -> Any:
        """Poll a background evaluation until it ends; its final record."""
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        while True:
            record = self.evaluation(evaluation_id)
            if on_progress is not None:
                on_progress(record)
            if finished(record):
                return record
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(
                    f"evaluation {evaluation_id} still running after {max_seconds} s"
                )
            time.sleep(poll_seconds)


class AsyncClient:
    """The public API, for asyncio. ``AsyncClient()`` reads RAG_URL and RAG_API_KEY."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        settings: Settings | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings or Settings.from_env(url, api_key)
        self._http = httpx.AsyncClient(
            base_url=self.settings.url,
            headers=self.settings.headers(),
            timeout=self.settings.timeout,
            transport=transport,
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def call(self, call: Call) -> Any:
        for attempt in range(self.settings.retries + 1):
            try:
                response = await self._http.request(call.method, call.path, **call.send_kwargs())
            except httpx.TransportError as exc:
                raise ConnectionFailed(f"{self.settings.url}: {exc}") from exc
            if response.status_code in RETRIED_STATUSES and attempt < self.settings.retries:
                await asyncio.sleep(retry_delay(response, attempt))
                continue
            return result_of(call, response)
        raise AssertionError("unreachable")  # pragma: no cover

    async def evaluate(
        self, collection: str, cases: Sequence[Mapping[str, Any]], **options: Any
    ) -> Any:
        return await self.call(evaluate_call(collection, cases, **options))

    async def evaluate_beir(
        self, collection: str, queries: Path, qrels: Path, **options: Any
    ) -> Any:
        return await self.call(evaluate_beir_call(collection, queries, qrels, **options))

    async def evaluation(self, evaluation_id: str) -> Any:
        return await self.call(evaluation_call(evaluation_id))

    async def wait_evaluation(
        self,
        evaluation_id: str,
        *,
        poll_seconds: float = 1.0,
        max_seconds: float | None = None,
        on_progress: Callable[[dict[str, Any]], Awaitable[None] | None] | None = None,
    ) -> Any:
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        while True:
            record = await self.evaluation(evaluation_id)
            if on_progress is not None:
                maybe = on_progress(record)
                if maybe is not None:
                    await maybe
            if finished(record):
                return record
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(
                    f"evaluation {evaluation_id} still running after {max_seconds} s"
                )
            await asyncio.sleep(poll_seconds)
