"""Forwarding to ingest and query: one pooled HTTP client, bodies streamed both ways (SSE
passes through as it is produced), the caller's tenant and the internal token added, request
id and trace context carried on. Idempotent requests without a body are retried when the
upstream could not be reached; failures become problem responses (502, 504)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import msgspec
from litestar import Request, Response
from litestar.response import Stream
from rag_config import GatewaySettings
from rag_core.errors import RagError
from rag_core.tenancy import INTERNAL_TOKEN_HEADER, TENANT_HEADER
from rag_telemetry import REQUEST_ID_HEADER, current_traceparent, get_logger

from rag_gateway.routing import Upstream

log = get_logger("rag.gateway")
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)
# Never forwarded upstream: the caller's credentials, and what only the gateway may say.
PRIVATE = frozenset(
    {"authorization", "x-api-key", TENANT_HEADER, INTERNAL_TOKEN_HEADER, "traceparent"}
)
RETRIED_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


class BadGateway(RagError):
    status_code = 502
    problem = "bad-gateway"
    title = "Bad gateway"


class GatewayTimeout(RagError):
    status_code = 504
    problem = "gateway-timeout"
    title = "Gateway timeout"


class Forwarder:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.bases: dict[Upstream, str] = {
            "ingest": settings.ingest_url.rstrip("/"),
            "query": settings.query_url.rstrip("/"),
        }
        self.token = settings.internal_token.get_secret_value() if settings.internal_token else None
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.upstream_timeout_seconds, connect=5.0),
            limits=httpx.Limits(
                max_connections=settings.max_connections,
                max_keepalive_connections=settings.pool_size,
            ),
            follow_redirects=False,
            trust_env=False,
        )

    async def close(self) -> None:
        await self.http.aclose()

    def upstream_headers(
        self, incoming: Mapping[str, str], tenant: str, request_id: str | None
    ) -> dict[str, str]:
        headers = {k: v for k, v in incoming.items() if k.lower() not in HOP_BY_HOP | PRIVATE}
        headers[TENANT_HEADER] = tenant
        if self.token:
            headers[INTERNAL_TOKEN_HEADER] = self.token
        if request_id:
            headers[REQUEST_ID_HEADER] = request_id
        traceparent = current_traceparent()
        if traceparent:
            headers["traceparent"] = traceparent
        return headers

    async def send(
        self,
        upstream: Upstream,
        method: str,
        path_and_query: str,
        headers: dict[str, str],
        content: bytes | AsyncIterator[bytes] | None,
    ) -> httpx.Response:
        """The upstream's response, headers read and body still streaming."""
        url = self.bases[upstream] + path_and_query
        attempts = 1 + (self.settings.upstream_retries if method in RETRIED_METHODS else 0)
        for attempt in range(attempts):
            request = self.http.build_request(method, url, headers=headers, content=content)
            try:
                return await self.http.send(request, stream=True)
            except httpx.TimeoutException:
                raise GatewayTimeout(
                    f"the {upstream} service did not answer within UPSTREAM_TIMEOUT_SECONDS"
                ) from None
            except httpx.TransportError as exc:
                if attempt + 1 < attempts:
                    log.warning("upstream_retry", upstream=upstream, error=type(exc).__name__)
                    await asyncio.sleep(0.1 * (attempt + 1))
                    continue
                raise BadGateway(
                    f"the {upstream} service is unreachable ({type(exc).__name__})",
                    headers={"Retry-After": "2"},
                ) from None
        raise AssertionError("unreachable")

    async def json(
        self, upstream: Upstream, method: str, path: str, headers: dict[str, str]
    ) -> tuple[int, Any]:
        response = await self.send(upstream, method, path, headers, None)
        try:
            body = await response.aread()
        finally:
            await response.aclose()
        return response.status_code, msgspec.json.decode(body) if body else None


def response_headers(upstream: httpx.Response) -> dict[str, str]:
    # The gateway answers with its own request id (the same value, set by its middleware).
    dropped = HOP_BY_HOP | {REQUEST_ID_HEADER.lower()}
    return {k: v for k, v in upstream.headers.items() if k.lower() not in dropped}


def stream_back(upstream: httpx.Response) -> Stream:
    """The upstream response as it arrives: SSE events reach the caller one by one."""

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        finally:
            await upstream.aclose()

    return Stream(body(), status_code=upstream.status_code, headers=response_headers(upstream))


async def buffered(upstream: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    try:
        body = await upstream.aread()
    finally:
        await upstream.aclose()
    headers = {
        k: v
        for k, v in response_headers(upstream).items()
        if k.lower() not in ("content-length", "content-encoding")
    }
    return upstream.status_code, headers, body


def json_response(status: int, headers: dict[str, str], body: Any) -> Response[Any]:
    return Response(body, status_code=status, headers=headers)


def request_id(request: Request[Any, Any, Any]) -> str | None:
    value = request.scope.get("state", {}).get("request_id")
    return str(value) if value else None
