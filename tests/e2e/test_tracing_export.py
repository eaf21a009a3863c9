"""With OTEL_EXPORTER_OTLP_ENDPOINT set, a service exports its spans over OTLP/HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from rag_devstack import NativeStack, StackPorts

from tests.conftest import Backing

pytestmark = pytest.mark.e2e
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


class _Collector(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    _Collector.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Collector.received
    server.shutdown()


def test_spans_reach_the_otlp_endpoint_with_the_callers_trace_id(
    tmp_path: Path, backing: Backing, collector: tuple[str, list[tuple[str, bytes]]]
) -> None:
    endpoint, received = collector
    ports = StackPorts.free()
    ports.redis, ports.chroma = backing.redis_port, backing.chroma_port
    with NativeStack(tmp_path, ports) as stack:
        process = stack.start_service("query", {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
        stack.wait_ready("query")
        response = httpx.get(
            f"{stack.api_url('query')}/schema/openapi.json",
            headers={"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"},
        )
        assert response.status_code == 200
        assert process.stop() == 0  # shutdown flushes the batch of spans

    assert received, "no OTLP export arrived"
    spans = []
    for path, body in received:
        assert path == "/v1/traces"
        export = ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            assert attributes["service.name"] == "rag-query"
            spans += [s for scope in resource_spans.scope_spans for s in scope.spans]
    ours = [span for span in spans if span.trace_id.hex() == TRACE_ID]
    assert [span.name for span in ours] == ["GET /schema/openapi.json"]
    assert ours[0].parent_span_id.hex() == "00f067aa0ba902b7"
