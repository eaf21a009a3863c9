"""Sync and async clients for the public API (through the gateway).

Every call is described once, in ``rag_client.calls``; ``Client`` and ``AsyncClient`` only
differ in how they send it. Responses of 429 and 503 are retried with backoff, honouring
``Retry-After``; other errors raise ``APIError`` with the server's problem details. Streams
(answers, job progress) are server-sent events, read as they arrive."""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar, overload

import httpx

from rag_client import calls
from rag_client.calls import Call
from rag_client.errors import APIError, ConnectionFailed
from rag_client.models import (
    Answer,
    AnswerEvent,
    DoneEvent,
    ErrorEvent,
    Job,
    JobEvent,
    Source,
    SourcesEvent,
    TokenEvent,
    convert,
)

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8080"
RETRIED_STATUSES = frozenset({429, 503})
MAX_BACKOFF_SECONDS = 30.0

Progress = Callable[[dict[str, Any]], None]
JobProgress = Callable[[Job], None]


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
        timeout = timeout if timeout is not None else float(os.environ.get("RAG_TIMEOUT", "60"))
        retries = retries if retries is not None else int(os.environ.get("RAG_RETRIES", "3"))
        if timeout <= 0:
            raise ValueError(f"RAG_TIMEOUT must be above 0, not {timeout}")
        if retries < 0:
            raise ValueError(f"RAG_RETRIES must be 0 or more, not {retries}")
        return cls(
            url=(url or os.environ.get("RAG_URL") or DEFAULT_URL).rstrip("/"),
            api_key=api_key or os.environ.get("RAG_API_KEY") or None,
            timeout=timeout,
            retries=retries,
        )

    def headers(self) -> dict[str, str]:
        headers = {"User-Agent": "rag-client/0.1"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers


def retry_after(response: httpx.Response | None) -> float | None:
    """Seconds the server's ``Retry-After`` asks for (seconds or an HTTP date), if it sent one."""
    header = (response.headers.get("Retry-After") or "").strip() if response is not None else ""
    if header.isdigit():
        return float(header)
    try:
        when = email.utils.parsedate_to_datetime(header) if header else None
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0) if when is not None else None


def retry_delay(response: httpx.Response | None, attempt: int) -> float:
    """``Retry-After`` when the server sent it, else exponential backoff from 0.5 s; never more
    than MAX_BACKOFF_SECONDS."""
    asked = retry_after(response)
    delay = asked if asked is not None else 0.5 * 2**attempt
    return min(delay, MAX_BACKOFF_SECONDS)


def waits_too_long(response: httpx.Response) -> bool:
    """A ``Retry-After`` past MAX_BACKOFF_SECONDS (a daily quota, say): not worth waiting for;
    the caller gets the error at once."""
    asked = retry_after(response)
    return asked is not None and asked > MAX_BACKOFF_SECONDS


def retried(response: httpx.Response, attempt: int, retries: int) -> bool:
    return (
        response.status_code in RETRIED_STATUSES
        and attempt < retries
        and not waits_too_long(response)
    )


class LineSplitter:
    """Text of an event stream in, complete lines out. Only CR, LF and CRLF end a line:
    ``str.splitlines`` (what httpx's ``iter_lines`` uses) also splits on U+2028, U+0085 and
    others, which JSON carries raw inside ``data``."""

    def __init__(self) -> None:
        self.rest = ""
        self.after_cr = False  # the last chunk ended with CR: an LF next belongs to it

    def feed(self, text: str) -> list[str]:
        if self.after_cr and text.startswith("\n"):
            text = text[1:]
        buffer = self.rest + text
        self.after_cr = buffer.endswith("\r")
        lines = re.split(r"\r\n|\r|\n", buffer)
        self.rest = lines.pop()
        return lines


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


def result_of(call: Call[T], response: httpx.Response) -> T:
    if response.status_code >= 400 and response.status_code not in call.accepted:
        raise APIError(response.status_code, problem_of(response))
    if response.status_code == 204 or not response.content:
        return call.decode(None)
    try:
        body = response.json()
    except ValueError:
        raise APIError(
            response.status_code,
            {"title": "Not JSON", "detail": f"the server answered {response.text[:200]!r}"},
        ) from None
    return call.decode(body)


def finished(record: Mapping[str, Any]) -> bool:
    return record.get("state") in ("succeeded", "failed")


# Server-sent events -------------------------------------------------------------------------


@dataclass
class SSEDecoder:
    """Lines of a text/event-stream in, events (name, data, id) out (the WHATWG rules:
    ``data`` lines joined by newlines, comments skipped, a blank line ends an event)."""

    event: str = ""
    data: list[str] | None = None
    last_id: str | None = None

    def feed(self, line: str) -> tuple[str, str, str | None] | None:
        if not line:
            if self.data is None:
                self.event = ""
                return None
            found = (self.event or "message", "\n".join(self.data), self.last_id)
            self.event, self.data = "", None
            return found
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self.event = value
        elif name == "data":
            self.data = [*(self.data or []), value]
        elif name == "id":
            self.last_id = value
        return None


def _json_of(data: str) -> dict[str, Any]:
    try:
        loaded = json.loads(data) if data else {}
    except ValueError:
        return {"text": data}
    return loaded if isinstance(loaded, dict) else {"value": loaded}


class AnswerEvents:
    """Turns a streamed answer's events into typed ones; the final ``DoneEvent`` carries the
    whole ``Answer``, sources included."""

    def __init__(self) -> None:
        self.sources: list[Source] = []

    def event(self, name: str, data: str) -> AnswerEvent | None:
        body = _json_of(data)
        if name == "sources":
            self.sources = convert(body.get("sources", []), list[Source])
            return SourcesEvent(sources=self.sources)
        if name == "token":
            return TokenEvent(text=str(body.get("text", "")))
        if name == "done":
            answer = convert(body, Answer)
            answer.sources = self.sources
            return DoneEvent(answer=answer)
        if name == "error":
            return ErrorEvent(message=str(body.get("message", "")), retry=bool(body.get("retry")))
        return None


def _job_event(name: str, data: str, event_id: str | None) -> JobEvent:
    return JobEvent(event=name, id=event_id, data=_json_of(data))


# Methods, from the calls --------------------------------------------------------------------


class sync_call(Generic[P, T]):
    """A ``Client`` method that sends what ``build`` describes."""

    def __init__(self, build: Callable[P, Call[T]]) -> None:
        self.build = build
        self.__doc__ = build.__doc__

    @overload
    def __get__(self, client: None, owner: type[Any]) -> sync_call[P, T]: ...
    @overload
    def __get__(self, client: Client, owner: type[Any]) -> Callable[P, T]: ...
    def __get__(self, client: Client | None, owner: type[Any]) -> Any:
        if client is None:
            return self
        build = self.build

        @functools.wraps(build)
        def method(*args: P.args, **kwargs: P.kwargs) -> T:
            return client.call(build(*args, **kwargs))

        return method


class async_call(Generic[P, T]):
    """An ``AsyncClient`` method that sends what ``build`` describes."""

    def __init__(self, build: Callable[P, Call[T]]) -> None:
        self.build = build
        self.__doc__ = build.__doc__

    @overload
    def __get__(self, client: None, owner: type[Any]) -> async_call[P, T]: ...
    @overload
    def __get__(self, client: AsyncClient, owner: type[Any]) -> Callable[P, Awaitable[T]]: ...
    def __get__(self, client: AsyncClient | None, owner: type[Any]) -> Any:
        if client is None:
            return self
        build = self.build

        @functools.wraps(build)
        async def method(*args: P.args, **kwargs: P.kwargs) -> T:
            return await client.call(build(*args, **kwargs))

        return method


def _deadline(max_seconds: float | None) -> float | None:
    return None if max_seconds is None else time.monotonic() + max_seconds


def _check_deadline(deadline: float | None, what: str, max_seconds: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise TimeoutError(f"{what} still running after {max_seconds} s")


UNFINISHED_POLLED_PER_ROUND = 8


class JobWaiter:
    """The bookkeeping of waiting for several jobs, for both clients."""

    def __init__(
        self, job_ids: Sequence[str], on_progress: JobProgress | None, max_seconds: float | None
    ) -> None:
        self.job_ids = list(job_ids)
        self.on_progress = on_progress
        self.max_seconds = max_seconds
        self.deadline = _deadline(max_seconds)
        self.final: dict[str, Job] = {}
        self.seen: dict[str, tuple[str, str, float]] = {}
        self.unfinished_this_round = 0

    def pending(self) -> list[str]:
        return [job_id for job_id in dict.fromkeys(self.job_ids) if job_id not in self.final]

    def update(self, job: Job) -> bool:
        """Record what ``job`` says; whether this round should poll the next pending job.

        Jobs run roughly in the order they were sent: once a few of the pending ones are
        still running, the ones after them most likely are too. A round stops there, so
        waiting for thousands of jobs costs a request per job plus a few per round, not a
        request per pending job per round."""
        mark = (job.state, job.stage, job.progress)
        if self.on_progress is not None and self.seen.get(job.id) != mark:
            self.on_progress(job)
        self.seen[job.id] = mark
        if job.finished:
            self.final[job.id] = job
            return True
        self.unfinished_this_round += 1
        return self.unfinished_this_round < UNFINISHED_POLLED_PER_ROUND

    def next_round(self) -> list[str]:
        self.unfinished_this_round = 0
        return self.pending()

    def done(self) -> bool:
        if not self.pending():
            return True
        _check_deadline(self.deadline, f"{len(self.pending())} jobs", self.max_seconds)
        return False

    def results(self) -> list[Job]:
        return [self.final[job_id] for job_id in self.job_ids]


class Client:
    """The public API, synchronously. ``Client()`` reads RAG_URL and RAG_API_KEY; use it as a
    context manager, or call ``close()``."""

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

    def call(self, call: Call[T]) -> T:
        """Send one call; 429 and 503 are retried (not a connection failure: a POST may have
        arrived)."""
        for attempt in range(self.settings.retries + 1):
            try:
                response = self._http.request(call.method, call.path, **call.send_kwargs())
            except httpx.TransportError as exc:
                raise ConnectionFailed(f"{self.settings.url}: {exc}") from exc
            if retried(response, attempt, self.settings.retries):
                time.sleep(retry_delay(response, attempt))
                continue
            return result_of(call, response)
        raise AssertionError("unreachable")  # pragma: no cover

    def _events(
        self, call: Call[Any], last_event_id: str | None = None
    ) -> Iterator[tuple[str, str, str | None]]:
        """The events of a text/event-stream answer, as they arrive."""
        kwargs = call.send_kwargs()
        if last_event_id:
            kwargs["headers"] = {**kwargs.get("headers", {}), "Last-Event-ID": last_event_id}
        for attempt in range(self.settings.retries + 1):
            try:
                with self._http.stream(call.method, call.path, **kwargs) as response:
                    if retried(response, attempt, self.settings.retries):
                        delay = retry_delay(response, attempt)
                    elif response.status_code >= 400:
                        response.read()
                        raise APIError(response.status_code, problem_of(response))
                    else:
                        decoder, lines = SSEDecoder(), LineSplitter()
                        for text in response.iter_text():
                            for line in lines.feed(text):
                                found = decoder.feed(line)
                                if found is not None:
                                    yield found
                        return
            except httpx.TransportError as exc:
                raise ConnectionFailed(f"{self.settings.url}: {exc}") from exc
            time.sleep(delay)

    # Collections, documents, jobs, search, answers, evaluation, keys, the system.
    list_collections = sync_call(calls.list_collections)
    create_collection = sync_call(calls.create_collection)
    get_collection = sync_call(calls.get_collection)
    delete_collection = sync_call(calls.delete_collection)
    reembed_collection = sync_call(calls.reembed_collection)
    cancel_reembedding = sync_call(calls.cancel_reembedding)
    add_documents = sync_call(calls.add_documents)
    upload_files = sync_call(calls.upload_files)
    ingest_url = sync_call(calls.ingest_url)
    list_documents = sync_call(calls.list_documents)
    get_document = sync_call(calls.get_document)
    replace_document = sync_call(calls.replace_document)
    delete_document = sync_call(calls.delete_document)
    get_job = sync_call(calls.get_job)
    list_jobs = sync_call(calls.list_jobs)
    retry_job = sync_call(calls.retry_job)
    search = sync_call(calls.search)
    query = sync_call(calls.query)
    get_session = sync_call(calls.get_session)
    delete_session = sync_call(calls.delete_session)
    evaluate = sync_call(calls.evaluate)
    evaluate_beir = sync_call(calls.evaluate_beir)
    evaluation = sync_call(calls.evaluation)
    create_key = sync_call(calls.create_key)
    list_keys = sync_call(calls.list_keys)
    revoke_key = sync_call(calls.revoke_key)
    get_system_info = sync_call(calls.get_system_info)

    def query_stream(self, collection: str, question: str, **options: Any) -> Iterator[AnswerEvent]:
        """The answer as it is written: ``SourcesEvent``, ``TokenEvent``s, then ``DoneEvent``
        (the whole ``Answer``) or ``ErrorEvent``. Same options as ``query``."""
        events = AnswerEvents()
        for name, data, _ in self._events(calls.query_stream(collection, question, **options)):
            event = events.event(name, data)
            if event is not None:
                yield event

    def job_events(self, job_id: str) -> Iterator[JobEvent]:
        """A job's events until it ends (replayed from its start); a dropped connection
        resumes after the last event seen."""
        last: str | None = None
        for attempt in range(self.settings.retries + 1):
            try:
                for name, data, event_id in self._events(calls.job_events(job_id), last):
                    last = event_id or last
                    yield _job_event(name, data, event_id)
                return
            except ConnectionFailed:
                if attempt == self.settings.retries:
                    raise
                time.sleep(retry_delay(None, attempt))

    def wait_job(
        self,
        job_id: str,
        *,
        poll_seconds: float = 0.5,
        max_seconds: float | None = None,
        on_progress: JobProgress | None = None,
    ) -> Job:
        """Poll a job until it ends (succeeded, failed or dead); its final record."""
        return self._poll(
            lambda: self.get_job(job_id),
            lambda job: job.finished,
            f"job {job_id}",
            poll_seconds=poll_seconds,
            max_seconds=max_seconds,
            on_progress=on_progress,
        )

    def wait_jobs(
        self,
        job_ids: Sequence[str],
        *,
        poll_seconds: float = 0.5,
        max_seconds: float | None = None,
        on_progress: JobProgress | None = None,
    ) -> list[Job]:
        """Poll jobs until every one has ended; their final records, in the order given.
        ``on_progress`` hears of each job whenever its state, stage or progress changes."""
        waiter = JobWaiter(job_ids, on_progress, max_seconds)
        while not waiter.done():
            for job_id in waiter.next_round():
                if not waiter.update(self.get_job(job_id)):
                    break
            if not waiter.done():
                time.sleep(poll_seconds)
        return waiter.results()

    def wait_evaluation(
        self,
        evaluation_id: str,
        *,
        poll_seconds: float = 1.0,
        max_seconds: float | None = None,
        on_progress: Progress | None = None,
    ) -> Any:
        """Poll a background evaluation until it ends; its final record."""
        return self._poll(
            lambda: self.evaluation(evaluation_id),
            finished,
            f"evaluation {evaluation_id}",
            poll_seconds=poll_seconds,
            max_seconds=max_seconds,
            on_progress=on_progress,
        )

    @staticmethod
    def _poll(
        fetch: Callable[[], T],
        done: Callable[[T], bool],
        what: str,
        *,
        poll_seconds: float,
        max_seconds: float | None,
        on_progress: Callable[[T], None] | None,
    ) -> T:
        deadline = _deadline(max_seconds)
        while True:
            record = fetch()
            if on_progress is not None:
                on_progress(record)
            if done(record):
                return record
            _check_deadline(deadline, what, max_seconds)
            time.sleep(poll_seconds)


RAGEngine = Client
"""``RAGEngine().get_system_info()``: the deployment guide's name for the client."""


class AsyncClient:
    """The public API, for asyncio: the same methods as ``Client``, awaited (streams are
    async iterators). ``AsyncClient()`` reads RAG_URL and RAG_API_KEY."""

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

    async def call(self, call: Call[T]) -> T:
        for attempt in range(self.settings.retries + 1):
            try:
                response = await self._http.request(call.method, call.path, **call.send_kwargs())
            except httpx.TransportError as exc:
                raise ConnectionFailed(f"{self.settings.url}: {exc}") from exc
            if retried(response, attempt, self.settings.retries):
                await asyncio.sleep(retry_delay(response, attempt))
                continue
            return result_of(call, response)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _events(
        self, call: Call[Any], last_event_id: str | None = None
    ) -> AsyncIterator[tuple[str, str, str | None]]:
        kwargs = call.send_kwargs()
        if last_event_id:
            kwargs["headers"] = {**kwargs.get("headers", {}), "Last-Event-ID": last_event_id}
        for attempt in range(self.settings.retries + 1):
            try:
                async with self._http.stream(call.method, call.path, **kwargs) as response:
                    if retried(response, attempt, self.settings.retries):
                        delay = retry_delay(response, attempt)
                    elif response.status_code >= 400:
                        await response.aread()
                        raise APIError(response.status_code, problem_of(response))
                    else:
                        decoder, lines = SSEDecoder(), LineSplitter()
                        async for text in response.aiter_text():
                            for line in lines.feed(text):
                                found = decoder.feed(line)
                                if found is not None:
                                    yield found
                        return
            except httpx.TransportError as exc:
                raise ConnectionFailed(f"{self.settings.url}: {exc}") from exc
            await asyncio.sleep(delay)

    list_collections = async_call(calls.list_collections)
    create_collection = async_call(calls.create_collection)
    get_collection = async_call(calls.get_collection)
    delete_collection = async_call(calls.delete_collection)
    reembed_collection = async_call(calls.reembed_collection)
    cancel_reembedding = async_call(calls.cancel_reembedding)
    add_documents = async_call(calls.add_documents)
    upload_files = async_call(calls.upload_files)
    ingest_url = async_call(calls.ingest_url)
    list_documents = async_call(calls.list_documents)
    get_document = async_call(calls.get_document)
    replace_document = async_call(calls.replace_document)
    delete_document = async_call(calls.delete_document)
    get_job = async_call(calls.get_job)
    list_jobs = async_call(calls.list_jobs)
    retry_job = async_call(calls.retry_job)
    search = async_call(calls.search)
    query = async_call(calls.query)
    get_session = async_call(calls.get_session)
    delete_session = async_call(calls.delete_session)
    evaluate = async_call(calls.evaluate)
    evaluate_beir = async_call(calls.evaluate_beir)
    evaluation = async_call(calls.evaluation)
    create_key = async_call(calls.create_key)
    list_keys = async_call(calls.list_keys)
    revoke_key = async_call(calls.revoke_key)
    get_system_info = async_call(calls.get_system_info)

    async def query_stream(
        self, collection: str, question: str, **options: Any
    ) -> AsyncIterator[AnswerEvent]:
        events = AnswerEvents()
        async for name, data, _ in self._events(
            calls.query_stream(collection, question, **options)
        ):
            event = events.event(name, data)
            if event is not None:
                yield event

    async def job_events(self, job_id: str) -> AsyncIterator[JobEvent]:
        last: str | None = None
        for attempt in range(self.settings.retries + 1):
            try:
                async for name, data, event_id in self._events(calls.job_events(job_id), last):
                    last = event_id or last
                    yield _job_event(name, data, event_id)
                return
            except ConnectionFailed:
                if attempt == self.settings.retries:
                    raise
                await asyncio.sleep(retry_delay(None, attempt))

    async def wait_job(
        self,
        job_id: str,
        *,
        poll_seconds: float = 0.5,
        max_seconds: float | None = None,
        on_progress: JobProgress | None = None,
    ) -> Job:
        return await self._poll(
            lambda: self.get_job(job_id),
            lambda job: job.finished,
            f"job {job_id}",
            poll_seconds=poll_seconds,
            max_seconds=max_seconds,
            on_progress=on_progress,
        )

    async def wait_jobs(
        self,
        job_ids: Sequence[str],
        *,
        poll_seconds: float = 0.5,
        max_seconds: float | None = None,
        on_progress: JobProgress | None = None,
    ) -> list[Job]:
        waiter = JobWaiter(job_ids, on_progress, max_seconds)
        while not waiter.done():
            for job_id in waiter.next_round():
                if not waiter.update(await self.get_job(job_id)):
                    break
            if not waiter.done():
                await asyncio.sleep(poll_seconds)
        return waiter.results()

    async def wait_evaluation(
        self,
        evaluation_id: str,
        *,
        poll_seconds: float = 1.0,
        max_seconds: float | None = None,
        on_progress: Callable[[dict[str, Any]], Awaitable[None] | None] | None = None,
    ) -> Any:
        return await self._poll(
            lambda: self.evaluation(evaluation_id),
            finished,
            f"evaluation {evaluation_id}",
            poll_seconds=poll_seconds,
            max_seconds=max_seconds,
            on_progress=on_progress,
        )

    @staticmethod
    async def _poll(
        fetch: Callable[[], Awaitable[T]],
        done: Callable[[T], bool],
        what: str,
        *,
        poll_seconds: float,
        max_seconds: float | None,
        on_progress: Callable[[T], Awaitable[None] | None] | None,
    ) -> T:
        """``fetch`` until ``done``; ``on_progress`` may be a plain function or a coroutine one."""
        deadline = _deadline(max_seconds)
        while True:
            record = await fetch()
            if on_progress is not None:
                maybe = on_progress(record)
                if maybe is not None:
                    await maybe
            if done(record):
                return record
            _check_deadline(deadline, what, max_seconds)
            await asyncio.sleep(poll_seconds)
