"""Every public /v1 route the gateway forwards: the route table (rag_gateway.routing) names its
service and its policy, rag_gateway.policy admits the request under it, and this forwards
exactly the path authorised to ingest or query and streams the answer back. A long-lived
stream counts against the open-stream limits while it is open; an upload holds its place under
the uploads-in-progress limits until the service has its body, and gives the bytes it counted
against the daily ingest quota back when it is refused (a 4xx or 5xx answer, or none). On
OpenAI's paths errors are answered in OpenAI's shape."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from litestar import Request, Response, route
from litestar.di import NamedDependency, Provide
from litestar.enums import HttpMethod
from litestar.response import Stream
from rag_core.errors import NotFound, PayloadTooLarge, RagError, rag_error_to_problem
from rag_core.quota import INGEST_QUOTA_HEADER
from rag_telemetry import current_request_id

from rag_gateway.paths import AmbiguousPath, checked_path
from rag_gateway.policy import Admission, provide_admission
from rag_gateway.proxy import Forwarder, GatewayTimeout, Whole, buffered, stream_back
from rag_gateway.routing import NoRoute, Route, classify, is_openai_path
from rag_gateway.streams import StreamLeases
from rag_gateway.uploads import body_within


class MethodNotAllowed(RagError):
    status_code = 405
    problem = "method-not-allowed"
    title = "Method not allowed"


def openai_error(exc: RagError) -> Response[Any]:
    status = 400 if exc.status_code == 422 else int(exc.status_code)
    kind = "invalid_request_error" if status < 500 else "server_error"
    code = exc.problem
    if status == 401:
        code = "invalid_api_key"  # as OpenAI answers any refused credential
    elif status == 403:
        kind = "permission_error"
    elif status == 429:
        kind = "rate_limit_error"
    body = {"error": {"message": exc.detail, "type": kind, "param": None, "code": code}}
    return Response(body, status_code=status, headers=exc.headers)


def answer_error(request: Request[Any, Any, Any], exc: RagError) -> Response[Any]:
    """A refusal or failure of a forwarded route (its admission included): in OpenAI's shape on
    OpenAI's paths, the only one its clients read; problem details elsewhere, and for a path
    refused before anything else is read (rag_gateway.paths), as on every route."""
    if is_openai_path(request.scope["path"]) and not isinstance(exc, AmbiguousPath):
        return openai_error(exc)
    return rag_error_to_problem(exc).to_response(request)


def provide_target(request: Request[Any, Any, Any]) -> Route:
    """The dependency ``target``: the route table's entry for the request (405 naming the
    methods the path has, 404 when the path is not part of the API: before any credential)."""
    method, path = request.method.upper(), request.scope["path"]
    try:
        return classify(method, path)
    except NoRoute as missing:
        if missing.allowed:
            raise MethodNotAllowed(
                f"{method} is not allowed here", headers={"Allow": ", ".join(missing.allowed)}
            ) from None
        raise NotFound(f"{path} is not part of the API") from None


@route(
    "/v1/{rest:path}",
    http_method=[HttpMethod.GET, HttpMethod.POST, HttpMethod.PUT, HttpMethod.DELETE],
    include_in_schema=False,
    dependencies={
        "target": Provide(provide_target, sync_to_thread=False),
        "admission": Provide(provide_admission),
    },
    exception_handlers={RagError: answer_error},
)
async def forward(
    request: Request[Any, Any, Any],
    target: NamedDependency[Route],
    admission: NamedDependency[Admission],
    forwarder: NamedDependency[Forwarder],
    stream_leases: NamedDependency[StreamLeases],
) -> Response[Any] | Stream:
    """The admitted request to its service, and the service's answer back to the caller."""
    principal, upload, lease = admission.principal, admission.upload, None
    try:
        if upload is not None:
            upload.serving()  # renewed while the body arrives
        raw_path = checked_path(request.scope)  # what was authorised is what is sent
        method = request.method.upper()
        headers = forwarder.upstream_headers(
            request.headers, principal.tenant, current_request_id()
        )
        if admission.ingest_grant is not None:
            # What the worker fetches for a URL ingest counts against the same daily quota.
            headers[INGEST_QUOTA_HEADER] = admission.ingest_grant.to_header()
        content = await _body(request, target, admission)
        await admission.check_owner(forwarder, headers)
        query = request.scope.get("query_string", b"").decode("latin-1")
        if admission.lists_own_jobs:
            listing = await admission.own_jobs(forwarder, headers, query)
            if isinstance(listing, Whole):
                return listing.response()
            return Response(listing, status_code=200)
        long_lived = target.streams == "always" or (
            target.streams == "when_asked" and _asks_to_stream(content)
        )
        lease = await stream_leases.open(principal) if long_lived else None
        upstream = await forwarder.exchange(
            target.upstream,
            method,
            raw_path + (f"?{query}" if query else ""),
            headers,
            content,
            pool="streams" if long_lived else "uploads" if upload is not None else "ordinary",
            reads_only=target.reads_only,
        )
    except BaseException as exc:
        for held in (lease, upload):
            if held is not None:
                held.close()
        if not isinstance(exc, GatewayTimeout):
            # Nothing was stored: the quota is not spent. A service that took the body and
            # then did not answer in time may have stored it, so that one stays counted.
            await admission.refund_ingest()
        raise
    if upload is not None:
        await upload.release()  # the service has read the body (or refused it)
    status = upstream.status if isinstance(upstream, Whole) else upstream.status_code
    if status >= 400:
        await admission.refund_ingest()  # refused (or failed): a refused upload costs nothing
    if admission.filters_answer:
        whole = upstream if isinstance(upstream, Whole) else await buffered(upstream)
        if whole.status != 200:
            return whole.response()
        return Response(
            admission.visible(msgspec.json.decode(whole.body)),
            status_code=200,  # else Litestar's default for a route that also takes POST: 201
            headers=whole.headers,
        )
    if isinstance(upstream, Whole):
        if lease is not None:
            await lease.release()
        return upstream.response()
    return stream_back(upstream, lease)


async def _body(request: Request[Any, Any, Any], target: Route, admission: Admission) -> Any:
    if request.method.upper() not in ("POST", "PUT"):
        return None
    if admission.reads_body:
        body = await _inspected_body(request)
        admission.check_body(body)
        return body
    if target.streams == "when_asked" or target.reads_only:
        # Read whole: does it ask for a stream? A search's, to send it again if need be.
        return await _inspected_body(request)
    if target.policy.upload:
        return body_within(request.stream(), request.app.state.settings.upload_body_timeout_seconds)
    return request.stream()


async def _inspected_body(request: Request[Any, Any, Any]) -> bytes:
    """The whole body, for the gateway to read: at most MAX_INSPECTED_BODY_BYTES."""
    limit: int = request.app.state.settings.max_inspected_body_bytes
    too_large = PayloadTooLarge(
        f"the body is over {limit} bytes, the most the gateway reads on this route "
        "(MAX_INSPECTED_BODY_BYTES)",
        extra={"limit": "MAX_INSPECTED_BODY_BYTES", "bytes": limit},
    )
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _asks_to_stream(body: Any) -> bool:
    """Whether a JSON body asks for its answer as a stream (`"stream": true`)."""
    if not isinstance(body, bytes):
        return False
    try:
        data = json.loads(body or b"{}")
    except (ValueError, RecursionError):
        return False  # not a stream: the upstream explains what is wrong with it
    return isinstance(data, dict) and data.get("stream") is True
