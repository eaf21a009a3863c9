"""The SDK's reading of server-sent events (answers and job progress), its typed results, and
how it encodes what it sends (paths, uploads), against a mock transport."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest
from rag_client import APIError, AsyncClient, Client, DoneEvent, ErrorEvent, Settings, SourcesEvent
from rag_client.client import SSEDecoder
from rag_client.models import TokenEvent

from tests.unit.client.test_client import scripted

SETTINGS = Settings(url="http://127.0.0.1:9", api_key="k", retries=2)
SOURCE = {"number": 1, "chunk_id": "c1", "document_id": "d1", "quote": "Capybaras swim."}


def sse(*events: tuple[str, dict]) -> bytes:
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events).encode()


def test_the_decoder_follows_the_event_stream_rules() -> None:
    decoder = SSEDecoder()
    lines = [": keep-alive", "", "event: progress", "id: 7", 'data: {"a":', "data: 1}", "", ""]
    found = [event for line in lines if (event := decoder.feed(line)) is not None]
    assert found == [("progress", '{"a":\n1}', "7")]
    assert [decoder.feed(x) for x in ("data: plain", "")][-1] == ("message", "plain", "7")


def test_a_streamed_answer_arrives_as_typed_events() -> None:
    body = sse(
        ("sources", {"sources": [SOURCE]}),
        ("token", {"text": "Capybaras "}),
        ("token", {"text": "swim [1]."}),
        ("done", {"answer": "Capybaras swim [1].", "cited": [1], "generator": "extractive"}),
    )
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    with Client(settings=SETTINGS, transport=httpx.MockTransport(handle)) as client:
        events = list(client.query_stream("my docs/2024", "Do capybaras swim?", top_k=3))
    assert seen[0].url.raw_path == b"/v1/collections/my%20docs%2F2024/query"
    assert json.loads(seen[0].content) == {
        "query": "Do capybaras swim?",
        "top_k": 3,
        "stream": True,
    }
    assert isinstance(events[0], SourcesEvent)
    assert [e.text for e in events if isinstance(e, TokenEvent)] == ["Capybaras ", "swim [1]."]
    done = events[-1]
    assert isinstance(done, DoneEvent)
    assert done.answer.citations[0].quote == "Capybaras swim."  # the sources sent first


def test_an_error_event_and_a_refused_stream() -> None:
    calls = iter(
        [
            httpx.Response(503, headers={"Retry-After": "0"}, json={"title": "busy"}),
            httpx.Response(200, content=sse(("error", {"message": "LLM down", "retry": True}))),
            httpx.Response(404, json={"title": "Not found", "detail": "collection 'x'"}),
        ]
    )
    transport = httpx.MockTransport(lambda _: next(calls))
    with Client(settings=SETTINGS, transport=transport) as client:
        events = list(client.query_stream("x", "q"))  # the 503 is retried
        assert events == [ErrorEvent(message="LLM down", retry=True)]
        with pytest.raises(Exception, match="collection 'x'") as caught:
            list(client.query_stream("x", "q"))
    assert getattr(caught.value, "status", None) == 404


def test_job_events_resume_after_a_dropped_connection() -> None:
    """The stream breaks after event 5: the client reconnects with Last-Event-ID 5 and gets
    the rest once."""
    seen: list[str | None] = []
    first = b'id: 5\nevent: progress\ndata: {"state": "running"}\n\n'
    rest = b'id: 6\nevent: state\ndata: {"state": "succeeded"}\n\n'

    def broken() -> Iterator[bytes]:
        yield first
        raise httpx.ReadError("connection reset")

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("last-event-id"))
        body = broken() if len(seen) == 1 else iter([rest])
        return httpx.Response(200, content=body)

    with Client(settings=SETTINGS, transport=httpx.MockTransport(handle)) as client:
        events = list(client.job_events("j1"))
    assert seen == [None, "5"]
    assert [(e.id, e.state) for e in events] == [("5", "running"), ("6", "succeeded")]


def test_lines_end_only_at_cr_and_lf() -> None:
    """U+2028, U+0085 and friends are text inside JSON, not line ends; CRLF split across
    chunks is one line end."""
    quote = "Capybaras\u2028swim\u0085well\u2029."
    data = (
        f'data: {{"sources": [{{"number": 1, "chunk_id": "c", "document_id": "d", '
        f'"quote": "{quote}"}}]}}'
    )
    # The CR of "event: sources" ends one chunk and its LF starts the next.
    chunks = [
        b"event: sources\r",
        f"\n{data}\r\n\r\nevent: done\ndata: ".encode(),
        b'{"answer": "ok"}\n\n',
    ]

    def handle(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=iter(chunks))

    with Client(settings=SETTINGS, transport=httpx.MockTransport(handle)) as client:
        events = list(client.query_stream("c", "q"))
    assert isinstance(events[0], SourcesEvent)
    assert events[0].sources[0].quote == quote
    assert isinstance(events[1], DoneEvent)
    assert len(events) == 2


def test_a_retry_after_past_the_longest_backoff_is_not_waited_for() -> None:
    """A daily quota says "in 20 hours": the caller hears it at once, not after retries."""
    transport, seen = scripted(
        httpx.Response(429, headers={"Retry-After": "72000"}, json={"title": "quota"}),
    )
    with (
        Client(settings=SETTINGS, transport=transport) as client,
        pytest.raises(APIError) as caught,
    ):
        client.list_collections()
    assert caught.value.status == 429
    assert len(seen) == 1


def test_settings_refuse_negative_retries_and_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_RETRIES", "-1")
    with pytest.raises(ValueError, match="RAG_RETRIES"):
        Settings.from_env()
    monkeypatch.setenv("RAG_RETRIES", "1")
    monkeypatch.setenv("RAG_TIMEOUT", "0")
    with pytest.raises(ValueError, match="RAG_TIMEOUT"):
        Settings.from_env()


def test_uploads_are_multipart_with_one_file_field_each(tmp_path) -> None:
    requests: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(
            202,
            json={"collection": "c", "jobs": [{"job_id": "j1", "state": "queued"}]},
        )

    note = tmp_path / "note.md"
    note.write_text("# Hello")
    with Client(settings=SETTINGS, transport=httpx.MockTransport(handle)) as client:
        accepted = client.upload_files(
            "c", [note, ("raw.txt", b"raw")], metadata={"team": "a"}, idempotency_key="k1"
        )
    assert accepted.job_ids == ["j1"]
    body = requests[0].read().decode()
    assert requests[0].headers["Idempotency-Key"] == "k1"
    assert body.count('name="file"') == 2
    assert 'filename="note.md"' in body
    assert "text/markdown" in body
    assert '{"team": "a"}' in body


def test_the_async_client_reads_the_same_stream() -> None:
    body = sse(("sources", {"sources": [SOURCE]}), ("done", {"answer": "Yes [1]."}))

    async def run() -> list[object]:
        transport = httpx.MockTransport(lambda _: httpx.Response(200, content=body))
        async with AsyncClient(settings=SETTINGS, transport=transport) as client:
            return [event async for event in client.query_stream("c", "q")]

    events = asyncio.run(run())
    assert isinstance(events[-1], DoneEvent)
    assert events[-1].answer.sources[0].document_id == "d1"


def test_a_malformed_answer_is_a_clear_error() -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(200, json={"nope": 1}))
    with (
        Client(settings=SETTINGS, transport=transport) as client,
        pytest.raises(ValueError, match="unexpected answer from the server"),
    ):
        client.get_collection("c")
