"""How an MCP tool's call of the API treats what comes back (the whole path, with real clients
through nginx, is e2e/gateway/test_mcp.py): an answer over MCP_MAX_RESULT_BYTES is refused
without being held whole, a streamed answer's place under the stream limits is given back as
soon as the tool has what it needs, and no tool can call a route whose limits an MCP request
was not admitted under."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from mcp.server.mcpserver.exceptions import ToolError
from multidict import CIMultiDict, CIMultiDictProxy
from rag_gateway.auth.principal import Principal
from rag_gateway.mcp.calls import Api, path
from rag_gateway.proxy import Reply


@dataclass
class FakeResponse:
    """What aiohttp hands the forwarder: a body arriving in chunks."""

    body: list[bytes | Exception]  # an exception: the connection fails there
    read: int = 0
    released: bool = False

    @property
    def content(self) -> FakeResponse:
        return self

    async def iter_any(self) -> AsyncIterator[bytes]:
        for chunk in self.body:
            self.read += 1
            if isinstance(chunk, Exception):
                raise chunk
            yield chunk

    def release(self) -> None:
        self.released = True


def reply_of(body: list[bytes | Exception], status: int = 200) -> tuple[Reply, FakeResponse]:
    """A real Reply (the forwarder's) over a fake connection."""
    response = FakeResponse(body)
    slots = asyncio.Semaphore(1)
    return Reply(status, CIMultiDictProxy(CIMultiDict()), response, slots), response  # type: ignore[arg-type]


@dataclass
class FakeLease:
    released: bool = False
    closed: bool = False

    def serving(self) -> None:
        pass

    async def release(self) -> None:
        self.released = True

    def close(self) -> None:
        self.closed = True


class FakeLeases:
    def __init__(self) -> None:
        self.lease = FakeLease()

    async def open(self, principal: Principal) -> FakeLease:
        return self.lease


class FakeForwarder:
    def __init__(self, reply: Reply) -> None:
        self.reply = reply

    def upstream_headers(self, incoming: Any, tenant: str, request_id: str | None) -> dict:
        return dict(incoming)

    async def exchange(self, *args: Any, **kwargs: Any) -> Reply:
        return self.reply


def api(reply: Reply, leases: FakeLeases | None = None, limit: int = 1000) -> Api:
    reader = Principal("key:t", "acme", frozenset({"query:read", "ingest:read"}))
    return Api(
        FakeForwarder(reply),  # type: ignore[arg-type]
        leases or FakeLeases(),  # type: ignore[arg-type]
        reader,
        max_result_bytes=limit,
    )


def test_an_answer_over_the_limit_is_refused_before_it_is_read_whole() -> None:
    reply, response = reply_of([b"x" * 400] * 100)  # 40,000 bytes, of which 1,000 may be read
    with pytest.raises(ToolError, match=r"413 Too large.*MCP_MAX_RESULT_BYTES"):
        asyncio.run(api(reply).call("GET", path("collections", "c1x", "documents", "d")))
    assert response.read == 3  # it stopped reading as soon as the limit was passed
    assert response.released


def test_a_streamed_answer_gives_its_place_back_when_the_tool_is_done() -> None:
    events = [b'event: sources\ndata: {"sources": []}\n\n', b"event: done\ndata: {}\n\n"]
    events += [b'event: token\ndata: {"text": "more"}\n\n'] * 50
    (reply, response), leases = reply_of(events), FakeLeases()

    async def take_two() -> list[str]:
        stream = api(reply, leases).events(path("collections", "c1x", "query"), {"query": "q"})
        seen = []
        async with contextlib.aclosing(stream):
            async for name, _ in stream:
                seen.append(name)
                if name == "done":
                    break
        return seen

    assert asyncio.run(take_two()) == ["sources", "done"]
    assert leases.lease.released  # awaited, not left to the garbage collector
    assert response.released
    assert response.read < len(events)


def test_a_line_longer_than_any_event_is_refused() -> None:
    reply, _ = reply_of([b"data: " + b"x" * 65536] * 40)  # 2.6 MB without a newline

    async def read_all() -> None:
        async for _ in api(reply).events(path("collections", "c1x", "query"), {"query": "q"}):
            pass

    with pytest.raises(ToolError, match="a line of the answer is over"):
        asyncio.run(read_all())


@pytest.mark.parametrize(
    ("method", "route"),
    [
        ("POST", path("collections", "c1x", "documents", "upload")),
        ("POST", path("collections", "c1x", "documents")),
        ("POST", path("evaluate", "beir")),
    ],
)
def test_no_tool_may_call_a_route_with_limits_mcp_was_not_admitted_under(
    method: str, route: str
) -> None:
    reply, response = reply_of([b"{}"])
    with pytest.raises(ToolError, match="405 Method not allowed"):
        asyncio.run(api(reply).call(method, route, {"documents": []}))
    assert response.read == 0


def test_an_answer_cut_off_on_its_way_is_a_502_the_agent_can_read() -> None:
    cut = aiohttp.ClientPayloadError("Response payload is not completed")
    reply, response = reply_of([b'{"chunks": [', cut])
    with pytest.raises(ToolError, match=r"^502 Bad gateway: the answer was cut off"):
        asyncio.run(api(reply).call("GET", path("collections", "c1x", "documents", "d")))
    assert response.released
    stream, _ = reply_of([b'event: sources\ndata: {"sources": []}\n\n', cut])
    leases = FakeLeases()

    async def read_all() -> list[str]:
        seen = []
        events = api(stream, leases).events(path("collections", "c1x", "query"), {"query": "q"})
        async for name, _ in events:
            seen.append(name)
        return seen

    with pytest.raises(ToolError, match="cut off"):
        asyncio.run(read_all())
    assert leases.lease.closed
