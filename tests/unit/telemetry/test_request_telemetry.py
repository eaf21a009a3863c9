"""Per request: one request id and one trace on every log line, echoed id, metrics by route."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

import pytest
import structlog
from litestar import Litestar, get
from litestar.params import FromPath
from litestar.testing import AsyncTestClient
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rag_core.health import Readiness, create_ops_app
from rag_telemetry import configure_tracing, instrument_app

from tests.support.logs import CapturedLogs
from tests.support.metrics import samples, value

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"


@get("/items/{item_id:int}", sync_to_thread=False)
def read_item(item_id: FromPath[int]) -> dict[str, int]:
    structlog.stdlib.get_logger("rag.test").info("looking_up_item", item_id=item_id)
    logging.getLogger("some.library").info("library line for %s", item_id)
    return {"item_id": item_id}


@get("/boom", sync_to_thread=False)
def boom() -> None:
    raise RuntimeError("kaboom")


@pytest.fixture
def logs() -> CapturedLogs:
    configure_tracing("test", version="0", otlp_endpoint=None)
    return CapturedLogs(service="test")


@pytest.fixture
async def client(logs: CapturedLogs) -> AsyncIterator[AsyncTestClient[Litestar]]:
    app = instrument_app(Litestar(route_handlers=[read_item, boom], logging_config=None))
    async with AsyncTestClient(app) as test_client:
        yield test_client


async def test_every_line_of_a_request_has_its_request_id_and_trace_id(
    client: AsyncTestClient[Litestar], logs: CapturedLogs
) -> None:
    response = await client.get("/items/7", headers={"X-Request-ID": "req-abc.123"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-abc.123"
    lines = [line for line in logs.lines() if line.get("request_id") == "req-abc.123"]
    events = [line["event"] for line in lines]
    assert events == ["looking_up_item", "library line for 7", "request"]
    assert len({line["trace_id"] for line in lines}) == 1
    assert re.fullmatch(r"[0-9a-f]{32}", lines[0]["trace_id"])
    assert all(re.fullmatch(r"[0-9a-f]{16}", line["span_id"]) for line in lines)
    summary = lines[-1]
    assert summary["route"] == "/items/{item_id}"
    assert summary["status"] == 200
    assert isinstance(summary["duration_ms"], float | int)
    assert 0 <= summary["duration_ms"] < 60_000  # a number of milliseconds, not seconds or ns


async def test_w3c_traceparent_continues_the_callers_trace(
    client: AsyncTestClient[Litestar], logs: CapturedLogs
) -> None:
    await client.get("/items/1", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_SPAN}-01"})
    traced = [line for line in logs.lines() if line.get("trace_id")]
    assert traced
    assert {line["trace_id"] for line in traced} == {TRACE_ID}


async def test_missing_or_unsafe_request_ids_are_replaced(
    client: AsyncTestClient[Litestar],
) -> None:
    generated = (await client.get("/items/1")).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    for unsafe in ("has space", "x" * 129, 'quote"inject'):
        echoed = (await client.get("/items/1", headers={"X-Request-ID": unsafe})).headers
        assert echoed["x-request-id"] != unsafe
        assert re.fullmatch(r"[0-9a-f]{32}", echoed["x-request-id"])
    assert (await client.get("/items/2")).headers["x-request-id"] != generated


async def test_metrics_count_requests_by_route_template(
    client: AsyncTestClient[Litestar],
) -> None:
    ops = AsyncTestClient(create_ops_app(Readiness()))
    async with ops:
        before = (await ops.get("/metrics")).text
        for item in range(5):
            await client.get(f"/items/{item}")
        await client.get("/nowhere/at/all")
        await client.get("/boom")
        await client.get("/health")  # probe paths are never counted
        response = await ops.get("/metrics")
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    after = response.text
    samples(after)  # raises if the exposition is not valid

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    route = {"route": "/items/{item_id}", "method": "GET", "status": "200"}
    assert delta("http_requests_total", **route) == 5
    assert delta("http_request_duration_seconds_count", **route) == 5
    assert delta("http_requests_total", route="<unmatched>", status="404") == 1
    assert delta("http_requests_total", route="/boom", status="500") == 1
    # Raw paths never become label values.
    assert not any("/items/3" in str(labels) for _, labels, _ in samples(after))


async def test_spans_are_named_by_route_template_and_probes_are_not_traced(
    client: AsyncTestClient[Litestar],
) -> None:
    provider = configure_tracing("test", version="0", otlp_endpoint=None)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    await client.get("/items/9")
    await client.get("/not/here")
    await client.get("/health")
    names = [span.name for span in exporter.get_finished_spans()]
    assert names == ["GET /items/{item_id}", "GET <unmatched>"]
    attributes = exporter.get_finished_spans()[0].attributes or {}
    assert attributes["http.route"] == "/items/{item_id}"


def test_a_request_id_ending_in_a_newline_is_not_taken() -> None:
    """ "$" matched before a final newline: "abc\n" was taken as the request's id, to be
    written into log lines and echoed in a header."""
    from rag_telemetry.middleware import incoming_request_id

    def scope(value: bytes) -> dict:
        return {"headers": [(b"x-request-id", value)]}

    assert incoming_request_id(scope(b"req-abc.123")) == "req-abc.123"  # type: ignore[arg-type]
    assert incoming_request_id(scope(b"req-abc.123\n")) is None  # type: ignore[arg-type]
