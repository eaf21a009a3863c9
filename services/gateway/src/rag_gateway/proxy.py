"""Forwarding to ingest and query: three pooled HTTP clients, one for ordinary requests
(MAX_CONNECTIONS), one for long-lived streams (MAX_STREAM_CONNECTIONS) and one for uploads
(MAX_UPLOAD_CONNECTIONS), whose bodies arrive as slowly as their clients send them: however
many streams are open and uploads trickle in, the other requests still find a connection.
Bodies stream both ways (SSE passes through as it is produced), the caller's tenant and the
internal token added, request id and trace context carried on. Idempotent requests without a
body are retried when the upstream could not be reached. A short answer is read whole before
the caller hears anything, so a service that dies half-way is a retry (reads) or a 502, never a
cut body; failures become problem responses (502, 503, 504)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import httpx
import msgspec
from litestar import Response
from litestar.response import Stream
from rag_config import GatewaySettings
from rag_core.errors import RagError
from rag_core.quota import INGEST_QUOTA_HEADER
from rag_core.tenancy import INTERNAL_TOKEN_HEADER, TENANT_HEADER
from rag_telemetry import REQUEST_ID_HEADER, current_traceparent, get_logger

from rag_gateway.paths import AmbiguousPath, same_path
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
    {
        "authorization",
        "x-api-key",
        TENANT_HEADER,
        INTERNAL_TOKEN_HEADER,
        INGEST_QUOTA_HEADER,
        "traceparent",
    }
)
RETRIED_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
# How long a stream or an upload waits for a free connection of its pool before the caller is
# told to retry (ordinary requests wait up to UPSTREAM_TIMEOUT_SECONDS).
STREAM_POOL_WAIT_SECONDS = 5.0
Pool = Literal["ordinary", "streams", "uploads"]
POOL_LIMITS: dict[Pool, str] = {
    "ordinary": "MAX_CONNECTIONS",
    "streams": "MAX_STREAM_CONNECTIONS",
    "uploads": "MAX_UPLOAD_CONNECTIONS",
}

if TYPE_CHECKING:
    from rag_gateway.streams import Lease


class BadGateway(RagError):
    status_code = 502
    problem = "bad-gateway"
    title = "Bad gateway"


class GatewayTimeout(RagError):
    status_code = 504
    problem = "gateway-timeout"
    title = "Gateway timeout"


class GatewayBusy(RagError):
    status_code = 503
    problem = "gateway-busy"
    title = "Gateway busy"


class Forwarder:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.bases: dict[Upstream, str] = {
            "ingest": settings.ingest_url.rstrip("/"),
            "query": settings.query_url.rstrip("/"),
        }
        self.token = settings.internal_token.get_secret_value() if settings.internal_token else None
        timeout = httpx.Timeout(settings.upstream_timeout_seconds, connect=5.0)
        waits = httpx.Timeout(
            settings.upstream_timeout_seconds, connect=5.0, pool=STREAM_POOL_WAIT_SECONDS
        )
        self.pools: dict[Pool, httpx.AsyncClient] = {
            "ordinary": _client(timeout, settings.max_connections, settings.pool_size),
            "streams": _client(
                waits,
                settings.max_stream_connections,
                min(settings.pool_size, settings.max_stream_connections),
            ),
            "uploads": _client(
                waits,
                settings.max_upload_connections,
                min(settings.pool_size, settings.max_upload_connections),
            ),
        }

    async def close(self) -> None:
        for http in self.pools.values():
            await http.aclose()

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
        *,
        pool: Pool = "ordinary",
    ) -> httpx.Response:
        """The upstream's response, headers read and body still streaming, sent through the
        connections of ``pool``; the path is sent as given (or not at all)."""
        url = self.bases[upstream] + path_and_query
        attempts = 1 + (self.settings.upstream_retries if method in RETRIED_METHODS else 0)
        http = self.pools[pool]
        for attempt in range(attempts):
            request = http.build_request(method, url, headers=headers, content=content)
            if not same_path(request.url.raw_path.decode("ascii").partition("?")[0], url_path(url)):
                # The client would rewrite the path into another (it removes dot segments).
                raise AmbiguousPath("the path would not reach the service as it was authorised")
            try:
                return await http.send(request, stream=True)
            except httpx.PoolTimeout:
                raise GatewayBusy(
                    f"every connection of this gateway to the {upstream} service is in use "
                    f"({POOL_LIMITS[pool]}); try again",
                    headers={"Retry-After": "2"},
                ) from None
            except httpx.TimeoutException:
                raise _timed_out(upstream) from None
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

    async def exchange(
        self,
        upstream: Upstream,
        method: str,
        path_and_query: str,
        headers: dict[str, str],
        content: bytes | AsyncIterator[bytes] | None,
        *,
        pool: Pool = "ordinary",
        reads_only: bool = False,
    ) -> httpx.Response | Whole:
        """``send``, with an answer of known length up to UPSTREAM_BUFFER_BYTES read whole before
        the caller hears anything. A service that dies half-way through it (a replica killed
        after its headers) is asked again when the request only reads, else the caller gets a
        502, never a cut body under the service's status. Longer answers, and answers without a
        length (streams), come back still streaming."""
        resend = reads_only and (content is None or isinstance(content, bytes))
        attempts = 1 + (self.settings.upstream_retries if resend else 0)
        failure = ""
        for attempt in range(attempts):
            response = await self.send(
                upstream, method, path_and_query, headers, content, pool=pool
            )
            length = response.headers.get("content-length", "")
            if not length.isdigit() or int(length) > self.settings.upstream_buffer_bytes:
                return response
            try:
                return await buffered(response)
            except httpx.TimeoutException:
                raise _timed_out(upstream) from None
            except httpx.TransportError as exc:
                failure = type(exc).__name__
                log.warning("upstream_cut", upstream=upstream, error=failure, attempt=attempt + 1)
        raise BadGateway(
            f"the {upstream} service failed while answering ({failure})"
            + ("" if resend else "; the request may have taken effect"),
            headers={"Retry-After": "2"},
        )

    async def json(
        self, upstream: Upstream, method: str, path: str, headers: dict[str, str]
    ) -> tuple[int, Any]:
        response = await self.send(upstream, method, path, headers, None)
        try:
            body = await response.aread()
        finally:
            await response.aclose()
        return response.status_code, msgspec.json.decode(body) if body else None


def _timed_out(upstream: Upstream) -> GatewayTimeout:
    return GatewayTimeout(f"the {upstream} service did not answer within UPSTREAM_TIMEOUT_SECONDS")


def url_path(url: str) -> str:
    """The path of ``url`` as written (no parsing that could normalise it)."""
    rest = url.split("://", 1)[-1]
    start = rest.find("/")
    return rest[start:].partition("?")[0] if start >= 0 else "/"


def response_headers(upstream: httpx.Response) -> dict[str, str]:
    # The gateway answers with its own request id (the same value, set by its middleware).
    dropped = HOP_BY_HOP | {REQUEST_ID_HEADER.lower()}
    return {k: v for k, v in upstream.headers.items() if k.lower() not in dropped}


def _client(timeout: httpx.Timeout, connections: int, keepalive: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=timeout,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=keepalive),
        follow_redirects=False,
        trust_env=False,
    )


def stream_back(upstream: httpx.Response, lease: Lease | None = None) -> Stream:
    """The upstream response as it arrives: SSE events reach the caller one by one. A stream's
    ``lease`` is given back when it ends, or when its client goes away."""

    async def body() -> AsyncIterator[bytes]:
        if lease is not None:
            lease.serving()
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
            if lease is not None:
                await lease.release()  # before the caller hears the end: it may open another
        finally:
            if lease is not None:
                lease.close()  # cancelled (the client went away) or failed: without awaiting
            await upstream.aclose()

    return Stream(body(), status_code=upstream.status_code, headers=response_headers(upstream))


@dataclass(frozen=True)
class Whole:
    """An answer read to its end (its body decoded)."""

    status: int
    headers: dict[str, str]
    body: bytes

    def response(self) -> Response[bytes]:
        return Response(self.body, status_code=self.status, headers=self.headers)


async def buffered(upstream: httpx.Response) -> Whole:
    try:
        body = await upstream.aread()
    finally:
        await upstream.aclose()
    headers = {
        k: v
        for k, v in response_headers(upstream).items()
        if k.lower() not in ("content-length", "content-encoding")
    }
    return Whole(upstream.status_code, headers, body)
