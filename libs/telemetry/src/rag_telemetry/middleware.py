"""Per-request telemetry: request id, trace span, log context, metrics, one summary log line."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Collection
from typing import Any

import structlog
from litestar import Litestar
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

from rag_telemetry.logs import bind_log_context, get_logger, reset_log_context
from rag_telemetry.metrics import (
    HTTP_IN_FLIGHT,
    HTTP_REQUEST_DURATION,
    HTTP_REQUESTS,
    UNMATCHED_ROUTE,
)

REQUEST_ID_HEADER = "x-request-id"
# Accept a caller's id only if it is short and plain, so it cannot inject into logs or headers.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}\Z")
# Probes and scrapes: no metrics, no log line, no span.
OPS_PATHS = frozenset({"/health", "/ready", "/metrics"})

log = get_logger("rag.http")


def incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            return candidate if _VALID_REQUEST_ID.match(candidate) else None
    return None


def current_request_id() -> str | None:
    """The id of the request being served (or of the request that queued the job being run),
    as its log lines carry it: to hand on to work done elsewhere, like ``current_traceparent``."""
    value = structlog.contextvars.get_contextvars().get("request_id")
    return str(value) if value else None


class RequestTelemetryMiddleware:
    """Binds ``request_id`` to the log context, echoes it, records metrics, logs one line."""

    def __init__(self, app: ASGIApp, *, ops_paths: Collection[str] = OPS_PATHS) -> None:
        self.app = app
        self.ops_paths = ops_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        tokens = bind_log_context(request_id=request_id)
        status = 500
        response_bytes = 0
        started = time.perf_counter()

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, response_bytes
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableScopeHeaders(message)[REQUEST_ID_HEADER] = request_id
                # The span ends with the last body chunk, so it is named now that routing is done.
                _name_span(scope)
            elif message["type"] == "http.response.body":
                response_bytes += len(message.get("body", b""))
            await send(message)

        is_ops = scope.get("path", "") in self.ops_paths
        if not is_ops:
            HTTP_IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            if not is_ops:
                HTTP_IN_FLIGHT.dec()
                self._record(scope, status, response_bytes, time.perf_counter() - started)
            reset_log_context(tokens)

    def _record(self, scope: Scope, status: int, response_bytes: int, seconds: float) -> None:
        method = scope.get("method", "")
        route = scope.get("path_template") or UNMATCHED_ROUTE
        labels = (route, method, str(status))
        HTTP_REQUESTS.labels(*labels).inc()
        HTTP_REQUEST_DURATION.labels(*labels).observe(seconds)
        log.info(
            "request",
            method=method,
            route=route,
            path=scope.get("path", ""),
            status=status,
            duration_ms=round(seconds * 1000, 2),
            response_bytes=response_bytes,
        )


def _name_span(scope: Scope) -> None:
    span = trace.get_current_span()
    if span.is_recording():
        route = scope.get("path_template") or UNMATCHED_ROUTE
        span.update_name(f"{scope.get('method', 'HTTP')} {route}")
        span.set_attribute("http.route", route)


def _span_details(scope: Scope) -> tuple[str, dict[str, Any]]:
    # Named by method only at first: raw paths would explode span-name cardinality.
    # RequestTelemetryMiddleware renames the span with the route template once it is known.
    return str(scope.get("method", "HTTP")), {}


def instrument_app(app: Litestar, *, ops_paths: Collection[str] = OPS_PATHS) -> Litestar:
    """Wrap the app's ASGI handler: trace span outside, request telemetry inside it.

    It wraps Litestar's whole handler (router and exception handling included), so 404s and
    errors are counted and logged as well, and every line of the request carries the span ids.
    """
    inner = RequestTelemetryMiddleware(app.asgi_handler, ops_paths=ops_paths)
    app.asgi_handler = OpenTelemetryMiddleware(  # type: ignore[assignment]
        inner,
        # Matched (re.search) against the full URL, so anchor on the host part.
        excluded_urls=",".join(rf"^[a-z]+://[^/]+{re.escape(path)}(\?|$)" for path in ops_paths)
        or None,
        default_span_details=_span_details,
        exclude_spans=["receive", "send"],
    )
    return app
