"""Forwarding to ingest and query: three pools of connections, one for ordinary requests
(MAX_CONNECTIONS), one for long-lived streams (MAX_STREAM_CONNECTIONS) and one for uploads
(MAX_UPLOAD_CONNECTIONS), whose bodies arrive as slowly as their clients send them: however
many streams are open and uploads trickle in, the other requests still find a connection.
Bodies stream both ways (SSE passes through as it is produced), the caller's tenant and the
internal token added, request id and trace context carried on. Idempotent requests without a
body are retried when the upstream could not be reached. A short answer is read whole before
the caller hears anything, so a service that dies half-way is a retry (reads) or a 502, never a
cut body; failures become problem responses (502, 503, 504).

The HTTP client is aiohttp, not httpx: forwarding a search through httpx took about a third of
the gateway's CPU (its connection pool and anyio layers, py-spy, 2026-12-01), the largest part
of what nginx and the gateway add to a request. Bodies pass through as they are, in both
directions (no decompression, no normalised path)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
import msgspec
from litestar import Response
from litestar.response import Stream
from multidict import CIMultiDictProxy
from rag_config import GatewaySettings
from rag_core.errors import RagError
from rag_core.pooling import KeepAliveConnector
from rag_core.quota import INGEST_QUOTA_HEADER
from rag_core.tenancy import INTERNAL_TOKEN_HEADER, TENANT_HEADER
from rag_telemetry import REQUEST_ID_HEADER, current_traceparent, get_logger
from yarl import URL

from rag_gateway.paths import forwardable
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
NOT_FORWARDED = HOP_BY_HOP | PRIVATE
# Headers the client would add of its own accord: only the caller's are sent.
NOT_ADDED = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
RETRIED_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
CONNECT_SECONDS = 5.0
# An idle connection is dropped before the service would close it (uvicorn: 5 s), so a request
# is never sent on a connection the service is closing at that moment.
IDLE_SECONDS = 4.0
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


@dataclass
class Connections:
    """One pool: at most ``limit`` requests in flight on it (each holds one connection until
    its answer is read or dropped), a request waiting up to ``wait`` seconds for its turn, and
    ``keep`` idle connections kept for reuse (POOL_SIZE)."""

    limit: int
    keep: int
    wait: float
    read_timeout: float
    slots: asyncio.Semaphore = field(init=False)
    _session: aiohttp.ClientSession | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.slots = asyncio.Semaphore(self.limit)

    @property
    def session(self) -> aiohttp.ClientSession:
        # Made at the first request: aiohttp binds a session to the running event loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=KeepAliveConnector(
                    keep=self.keep,
                    limit=self.limit,
                    limit_per_host=0,
                    keepalive_timeout=IDLE_SECONDS,
                ),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=CONNECT_SECONDS, sock_read=self.read_timeout
                ),
                auto_decompress=False,
                skip_auto_headers=NOT_ADDED,
                trust_env=False,
                raise_for_status=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


@dataclass
class Reply:
    """An upstream's answer: its status and headers arrived, its body still to be read. It
    holds a connection of its pool until it is read to the end or closed."""

    status_code: int
    headers: CIMultiDictProxy[str]
    _response: aiohttp.ClientResponse
    _slots: asyncio.Semaphore
    _done: bool = False

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives."""
        async for chunk in self._response.content.iter_any():
            yield chunk

    async def read(self) -> bytes:
        """The whole body; the connection goes back to its pool."""
        try:
            return await self._response.read()
        finally:
            self.close()

    def close(self) -> None:
        """Done with the answer: its connection goes back to the pool when the body was read
        to its end, else it is closed."""
        if not self._done:
            self._done = True
            self._response.release()
            self._slots.release()


class Forwarder:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.bases: dict[Upstream, str] = {
            "ingest": settings.ingest_url.rstrip("/"),
            "query": settings.query_url.rstrip("/"),
        }
        self.token = settings.internal_token.get_secret_value() if settings.internal_token else None
        read = settings.upstream_timeout_seconds
        self.pools: dict[Pool, Connections] = {
            "ordinary": Connections(settings.max_connections, settings.pool_size, read, read),
            "streams": Connections(
                settings.max_stream_connections,
                min(settings.pool_size, settings.max_stream_connections),
                STREAM_POOL_WAIT_SECONDS,
                read,
            ),
            "uploads": Connections(
                settings.max_upload_connections,
                min(settings.pool_size, settings.max_upload_connections),
                STREAM_POOL_WAIT_SECONDS,
                read,
            ),
        }

    async def close(self) -> None:
        for pool in self.pools.values():
            await pool.close()

    def upstream_headers(
        self, incoming: Mapping[str, str], tenant: str, request_id: str | None
    ) -> dict[str, str]:
        headers = {k: v for k, v in incoming.items() if k.lower() not in NOT_FORWARDED}
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
    ) -> Reply:
        """The upstream's answer, headers read and body still streaming, sent through the
        connections of ``pool``; the path is sent as given (or not at all)."""
        # Sent as given (yarl, encoded=True); what a server on the way could rewrite is refused.
        forwardable(path_and_query.partition("?")[0])
        url = URL(self.bases[upstream] + path_and_query, encoded=True)
        headers = _framed(headers, content)
        attempts = 1 + (self.settings.upstream_retries if method in RETRIED_METHODS else 0)
        connections = self.pools[pool]
        for attempt in range(attempts):
            try:
                async with asyncio.timeout(connections.wait):
                    await connections.slots.acquire()
            except TimeoutError:
                raise GatewayBusy(
                    f"every connection of this gateway to the {upstream} service is in use "
                    f"({POOL_LIMITS[pool]}); try again",
                    headers={"Retry-After": "2"},
                ) from None
            try:
                response = await connections.session.request(
                    method, url, headers=headers, data=content, allow_redirects=False
                )
            except BaseException as exc:
                connections.slots.release()
                if isinstance(exc, TimeoutError):
                    raise _timed_out(upstream) from None
                if not isinstance(exc, aiohttp.ClientError):
                    raise
                _raise_body_failure(exc)
                if attempt + 1 < attempts:
                    log.warning("upstream_retry", upstream=upstream, error=type(exc).__name__)
                    await asyncio.sleep(0.1 * (attempt + 1))
                    continue
                raise BadGateway(
                    f"the {upstream} service is unreachable ({type(exc).__name__})",
                    headers={"Retry-After": "2"},
                ) from None
            return Reply(response.status, response.headers, response, connections.slots)
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
    ) -> Reply | Whole:
        """``send``, with an answer of known length up to UPSTREAM_BUFFER_BYTES read whole before
        the caller hears anything. A service that dies half-way through it (a replica killed
        after its headers) is asked again when the request only reads, else the caller gets a
        502, never a cut body under the service's status. Longer answers, and answers without a
        length (streams), come back still streaming."""
        resend = reads_only and (content is None or isinstance(content, bytes))
        attempts = 1 + (self.settings.upstream_retries if resend else 0)
        failure = ""
        for attempt in range(attempts):
            reply = await self.send(upstream, method, path_and_query, headers, content, pool=pool)
            length = reply.headers.get("content-length", "")
            if not length.isdigit() or int(length) > self.settings.upstream_buffer_bytes:
                return reply
            try:
                return await buffered(reply)
            except TimeoutError:
                raise _timed_out(upstream) from None
            except aiohttp.ClientError as exc:
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
        reply = await self.send(upstream, method, path, headers, None)
        body = await reply.read()
        return reply.status_code, msgspec.json.decode(body) if body else None


def _framed(
    headers: dict[str, str], content: bytes | AsyncIterator[bytes] | None
) -> dict[str, str]:
    """``headers`` with the length of the body actually sent: none without a body (the
    caller's Content-Length, on a request the gateway asks on its own, would make the service
    read the next request as this one's body), the exact length of a body read whole, and the
    caller's for a body passed on as it arrives (else it goes chunked)."""
    if content is not None and not isinstance(content, bytes):
        return headers
    framed = {k: v for k, v in headers.items() if k.lower() != "content-length"}
    if content is not None:
        framed["Content-Length"] = str(len(content))
    return framed


def _raise_body_failure(exc: BaseException) -> None:
    """The client reports a failure of the request's body as its own (the body is sent beside
    reading the answer): a refusal the body raised (too slow, say) is the caller's answer."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, RagError):
            raise cause from None
        cause = cause.__cause__ or cause.__context__


def _timed_out(upstream: Upstream) -> GatewayTimeout:
    return GatewayTimeout(f"the {upstream} service did not answer within UPSTREAM_TIMEOUT_SECONDS")


def response_headers(upstream: Reply) -> dict[str, str]:
    # The gateway answers with its own request id (the same value, set by its middleware).
    dropped = HOP_BY_HOP | {REQUEST_ID_HEADER.lower()}
    return {k: v for k, v in upstream.headers.items() if k.lower() not in dropped}


def stream_back(upstream: Reply, lease: Lease | None = None) -> Stream:
    """The upstream response as it arrives: SSE events reach the caller one by one. A stream's
    ``lease`` is given back when it ends, or when its client goes away."""

    async def body() -> AsyncIterator[bytes]:
        if lease is not None:
            lease.serving()
        try:
            async for chunk in upstream.chunks():
                yield chunk
            if lease is not None:
                await lease.release()  # before the caller hears the end: it may open another
        finally:
            if lease is not None:
                lease.close()  # cancelled (the client went away) or failed: without awaiting
            upstream.close()

    return Stream(body(), status_code=upstream.status_code, headers=response_headers(upstream))


@dataclass(frozen=True)
class Whole:
    """An answer read to its end (its body as it came, encoding and all)."""

    status: int
    headers: dict[str, str]
    body: bytes

    def response(self) -> Response[bytes]:
        return Response(self.body, status_code=self.status, headers=self.headers)


async def buffered(upstream: Reply) -> Whole:
    body = await upstream.read()
    headers = {k: v for k, v in response_headers(upstream).items() if k.lower() != "content-length"}
    return Whole(upstream.status_code, headers, body)
