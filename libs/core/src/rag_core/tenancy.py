"""Who a request is for, and proof it came through the gateway.

The gateway authenticates callers and forwards each request with the caller's tenant
(``X-RAG-Tenant``) and the internal service token (``X-RAG-Internal-Token``). Ingest and query
serve each request in its tenant's namespace (its own collections, documents, jobs and keys);
when INTERNAL_TOKEN is set they refuse, with 401, any request that does not carry it, so the
tenant header cannot be forged by going around the gateway.
"""

from __future__ import annotations

import hmac
import json
import re
from typing import Any

from litestar import Request
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    Scope,
    Send,
)

from rag_core.catalog import DEFAULT_NAMESPACE
from rag_core.errors import InvalidInput, problem_type

TENANT_HEADER = "x-rag-tenant"
INTERNAL_TOKEN_HEADER = "x-rag-internal-token"  # noqa: S105 - a header name
# \Z, not $: `$` also matches before a final newline, and "t2\n" is no tenant.
TENANT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}\Z")
TENANT_RULE = (
    "1-32 characters: lower-case letters, digits, '-' and '_', starting with a letter or digit"
)


def check_tenant(tenant: str, field: str = "tenant") -> str:
    if not TENANT_PATTERN.fullmatch(tenant):
        raise InvalidInput.for_field(
            field, TENANT_RULE, detail=f"{field} {tenant!r} is not allowed: {TENANT_RULE}"
        )
    return tenant


# \Z, not $: `$` also matches before a final newline ("handbook\n" would twin "handbook").
COLLECTION_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{1,61})[a-z0-9]\Z")
COLLECTION_RULE = (
    "3-63 characters: lower-case letters, digits, '-' and '_', "
    "starting and ending with a letter or digit"
)


def check_collection_name(name: str, field: str = "name") -> str:
    if not COLLECTION_PATTERN.fullmatch(name):
        raise InvalidInput.for_field(
            field,
            COLLECTION_RULE,
            detail=f"collection name {name!r} is not allowed: {COLLECTION_RULE}",
        )
    return name


def tenant_of(request: Request[Any, Any, Any]) -> str:
    """The namespace a request is served in (the default one without the header)."""
    value = request.headers.get(TENANT_HEADER)
    return check_tenant(value, TENANT_HEADER) if value else DEFAULT_NAMESPACE


class InternalTokenMiddleware(ASGIMiddleware):
    """401 for every request without the internal token, except health and readiness."""

    scopes = (ScopeType.HTTP,)
    exclude_path_pattern = ("^/health$", "^/ready$")

    def __init__(self, token: str) -> None:
        self.token = token.encode()

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        given = dict(scope["headers"]).get(INTERNAL_TOKEN_HEADER.encode(), b"")
        if hmac.compare_digest(given, self.token):
            await next_app(scope, receive, send)
            return
        body = json.dumps(
            {
                "type": problem_type("unauthorized"),
                "title": "Unauthorized",
                "status": 401,
                "detail": "this service only answers the gateway; send requests to the gateway",
            }
        ).encode()
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
        await send(start)
        end: HTTPResponseBodyEvent = {
            "type": "http.response.body",
            "body": body,
            "more_body": False,
        }
        await send(end)
