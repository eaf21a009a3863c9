"""Every public /v1 route: refuse a path that could reach something else than it seems to
(rag_gateway.paths), authenticate, authorise (scope, tenant, collections), count against the
caller's limits (a long-lived stream also against the open-stream limits, an upload against
the uploads-in-progress limits), then forward exactly the path authorised to ingest or query
and stream the answer back."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import msgspec
from litestar import Request, Response, route
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.enums import HttpMethod
from litestar.response import Stream
from rag_core.errors import NotFound, PayloadTooLarge, RagError
from rag_core.quota import INGEST_QUOTA_HEADER
from rag_core.tenancy import TENANT_HEADER, check_tenant

from rag_gateway.auth.authenticate import Authenticator
from rag_gateway.auth.principal import Forbidden, Principal
from rag_gateway.limits import Limits
from rag_gateway.paths import checked_path
from rag_gateway.proxy import Forwarder, Whole, buffered, request_id, stream_back
from rag_gateway.routing import NoRoute, Route, Upstream, classify, is_openai_path
from rag_gateway.streams import StreamLeases
from rag_gateway.uploads import body_within

# Requests whose bodies may be large and slow: counted per tenant and key, on a pool of their
# own, with a deadline for the whole body (rag_gateway.uploads).
UPLOADS = frozenset({"documents_write", "evaluate_files"})


class LengthRequired(RagError):
    status_code = 411
    problem = "length-required"
    title = "Length required"


class MethodNotAllowed(RagError):
    status_code = 405
    problem = "method-not-allowed"
    title = "Method not allowed"


async def authenticate(
    request: ASGIConnection[Any, Any, Any, Any], authenticator: Authenticator
) -> Principal:
    principal = await authenticator.authenticate(
        request.headers.get("authorization"), request.headers.get("x-api-key")
    )
    acting_as = request.headers.get(TENANT_HEADER)
    if acting_as and "admin" in principal.scopes:
        # An administrator may act in any tenant; for anyone else the header is ignored. Only
        # the tenant changes: the key's collections, rate and quota still hold.
        principal = replace(principal, tenant=check_tenant(acting_as, TENANT_HEADER))
    return principal


def openai_error(exc: RagError) -> Response[Any]:
    status = 400 if exc.status_code == 422 else int(exc.status_code)
    kind = "invalid_request_error" if status < 500 else "server_error"
    if status == 401:
        kind = "authentication_error"
    elif status == 403:
        kind = "permission_error"
    elif status == 429:
        kind = "rate_limit_error"
    body = {"error": {"message": exc.detail, "type": kind, "param": None, "code": exc.problem}}
    return Response(body, status_code=status, headers=exc.headers)


@route(
    "/v1/{rest:path}",
    http_method=[HttpMethod.GET, HttpMethod.POST, HttpMethod.PUT, HttpMethod.DELETE],
    include_in_schema=False,
)
async def forward(
    request: Request[Any, Any, Any],
    authenticator: NamedDependency[Authenticator],
    limits: NamedDependency[Limits],
    forwarder: NamedDependency[Forwarder],
    stream_leases: NamedDependency[StreamLeases],
    upload_leases: NamedDependency[StreamLeases],
) -> Response[Any] | Stream:
    path = request.scope["path"]
    try:
        raw_path = checked_path(request.scope)  # what is authorised below is what is sent
        return await _forward(
            request,
            path,
            raw_path,
            authenticator,
            limits,
            forwarder,
            stream_leases,
            upload_leases,
        )
    except RagError as exc:
        if is_openai_path(path):
            return openai_error(exc)
        raise


async def _forward(
    request: Request[Any, Any, Any],
    path: str,
    raw_path: str,
    authenticator: Authenticator,
    limits: Limits,
    forwarder: Forwarder,
    stream_leases: StreamLeases,
    upload_leases: StreamLeases,
) -> Response[Any] | Stream:
    method = request.method.upper()
    try:
        target = classify(method, path)
    except NoRoute as missing:
        if missing.allowed:
            raise MethodNotAllowed(
                f"{method} is not allowed here", headers={"Allow": ", ".join(missing.allowed)}
            ) from None
        raise NotFound(f"{path} is not part of the API") from None
    principal = await authenticate(request, authenticator)
    principal.require(target.scope)
    await limits.request(principal)
    if target.collection is not None:
        principal.require_collection(target.collection)
    headers = forwarder.upstream_headers(request.headers, principal.tenant, request_id(request))
    if target.kind == "documents_write":
        # What the worker fetches for a URL ingest counts against the same daily quota.
        headers[INGEST_QUOTA_HEADER] = limits.ingest_grant(principal).to_header()
    # An upload holds its place under the upload limits until the service has its body; taken
    # before the quota is spent (a refused upload uses none of it), renewed while it arrives.
    upload = await upload_leases.open(principal) if target.kind in UPLOADS else None
    lease = None
    try:
        if upload is not None:
            upload.serving()
        content = await _body(request, target, principal, limits)
        if target.kind in ("job", "session") and principal.collections is not None:
            await _check_owner(forwarder, target, principal, headers)
        query = request.scope.get("query_string", b"").decode("latin-1")
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
    except BaseException:
        for held in (lease, upload):
            if held is not None:
                held.close()
        raise
    if upload is not None:
        await upload.release()  # the service has read the body (or refused it)
    if principal.collections is not None and target.kind in (
        "collections",
        "jobs",
        "models",
        "evaluation",
    ):
        whole = upstream if isinstance(upstream, Whole) else await buffered(upstream)
        if whole.status != 200:
            return whole.response()
        return Response(
            _only_allowed(target, msgspec.json.decode(whole.body), principal),
            status_code=200,  # else Litestar's default for a route that also takes POST: 201
            headers=whole.headers,
        )
    if isinstance(upstream, Whole):
        if lease is not None:
            await lease.release()
        return upstream.response()
    return stream_back(upstream, lease)


async def _body(
    request: Request[Any, Any, Any], target: Route, principal: Principal, limits: Limits
) -> Any:
    if request.method.upper() not in ("POST", "PUT"):
        return None
    if target.kind == "documents_write":
        length = request.headers.get("content-length")
        if length is None or not length.isdigit():
            raise LengthRequired(
                "send documents with a Content-Length (it counts against the daily quota)"
            )
        await limits.ingest_bytes(principal, int(length))
    if principal.collections is not None and target.kind == "evaluate_files":
        raise Forbidden("a key limited to some collections cannot upload evaluation files")
    if principal.collections is not None and target.kind in (
        "create_collection",
        "chat",
        "evaluate",
    ):
        body = await _inspected_body(request)
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return body  # the upstream explains what is wrong with it
        if isinstance(data, dict):
            name = data.get(
                {"create_collection": "name", "chat": "model"}.get(target.kind, "collection")
            )
            if isinstance(name, str):
                principal.require_collection(name.partition(":")[0])
        return body
    if target.streams == "when_asked" or target.reads_only:
        # Read whole: does it ask for a stream? A search's, to send it again if need be.
        return await _inspected_body(request)
    if target.kind in UPLOADS:
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


async def _check_owner(
    forwarder: Forwarder, target: Route, principal: Principal, headers: dict[str, str]
) -> None:
    """A key limited to some collections sees only their jobs and chat sessions (one bound
    to no collection, from before sessions were bound, counts as none of them)."""
    upstream: Upstream = "ingest" if target.kind == "job" else "query"
    if target.kind == "job":
        what, path = f"job {target.job_id!r}", f"/v1/jobs/{target.job_id}"
    else:
        what, path = f"session {target.session_id!r}", f"/v1/sessions/{target.session_id}"
    status, found = await forwarder.json(upstream, "GET", path, headers)
    if status != 200 or not principal.may_use(str(found.get("collection"))):
        raise NotFound(f"{what} does not exist (or has expired)")


def _only_allowed(target: Route, body: Any, principal: Principal) -> Any:
    if target.kind == "collections":
        body["collections"] = [c for c in body["collections"] if principal.may_use(c["name"])]
    elif target.kind == "jobs":
        body["jobs"] = [j for j in body["jobs"] if principal.may_use(j["collection"])]
    elif target.kind == "models":
        body["data"] = [m for m in body["data"] if principal.may_use(m["id"].partition(":")[0])]
    elif target.kind == "evaluation":
        principal.require_collection(str(body.get("collection")))
    return body
