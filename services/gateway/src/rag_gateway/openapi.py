"""One OpenAPI document for the whole public API: the routes ingest and query describe (as
the gateway exposes them), the gateway's own admin routes, and how to authenticate. Served at
/schema/openapi.json, with a browsable page at /schema."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from typing import Any

from litestar import Litestar, Request, get
from litestar.di import NamedDependency
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.response import Response
from rag_core.catalog import DEFAULT_NAMESPACE
from rag_core.errors import RagError
from rag_core.service import package_version

from rag_gateway.proxy import Forwarder
from rag_gateway.routing import NoRoute, classify, is_openai_path

SECURITY = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (rag_...) or an HS256 JWT.",
    }
}


PROBLEM = {
    "type": "object",
    "description": "RFC 9457 problem details; `errors` names each field at fault.",
    "required": ["status", "title"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": ["string", "null"]},
                    "message": {"type": ["string", "null"]},
                    "source": {"type": ["string", "null"]},
                },
            },
        },
    },
}
OPENAI_ERROR = {
    "type": "object",
    "description": "An error in the shape OpenAI's clients expect.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
# What any route can answer through the gateway, besides what its service documents.
COMMON_ERRORS = {
    "400": "The request cannot be read: among others, a path with a dot segment ('.', '..', "
    "also percent-encoded) or an encoded '/'",
    "401": "No valid credential",
    "403": "The credential lacks the scope or the collection (or, on /v1/admin/keys, asks for "
    "a key more powerful than itself, or another tenant's)",
    "408": "An upload's body did not arrive in time (UPLOAD_BODY_TIMEOUT_SECONDS)",
    "413": "The body is over a size limit",
    "429": "Over the rate limit, the daily ingest quota, the open-stream limits or the "
    "uploads-in-progress limits (see Retry-After)",
    "502": "The service behind the gateway could not be reached",
    "503": "A dependency is unavailable, the gateway's connections are all in use, or the "
    "service is shutting down (see Retry-After)",
    "504": "The service behind the gateway did not answer in time",
}


def _errors_as_problems(path: str, operation: dict[str, Any]) -> None:
    """Document every error as it is sent: problem+json (OpenAI's shape on its routes), with
    the statuses the gateway itself adds."""
    openai = is_openai_path(path)
    media, schema = (
        ("application/json", {"$ref": "#/components/schemas/OpenAIError"})
        if openai
        else ("application/problem+json", {"$ref": "#/components/schemas/ProblemDetails"})
    )
    responses = operation.setdefault("responses", {})
    for code, description in COMMON_ERRORS.items():
        responses.setdefault(code, {"description": description})
    for code, response in responses.items():
        if code == "default" or int(code) >= 400:
            response["content"] = {media: {"schema": schema}}
    responses["default"] = {
        "description": "Any other error",
        "content": {media: {"schema": schema}},
    }


def _public(path: str, method: str) -> bool:
    if path.startswith("/v1/admin/") or path == "/v1/system":
        return True  # the gateway's own routes
    concrete = path.replace("{", "x").replace("}", "")
    try:
        classify(method.upper(), concrete)
    except NoRoute:
        return False
    return True


class PublicSchema:
    def __init__(self, forwarder: Forwarder) -> None:
        self.forwarder = forwarder
        self._document: dict[str, Any] | None = None
        self._lock = asyncio.Lock()

    async def document(self, app: Litestar) -> dict[str, Any]:
        async with self._lock:
            if self._document is not None:
                return self._document
            document, complete = await self._build(app)
            if complete:  # kept once both services have described themselves
                self._document = document
            return document

    async def _build(self, app: Litestar) -> tuple[dict[str, Any], bool]:
        merged: dict[str, Any] = {
            "openapi": "3.1.0",
            "info": {
                "title": "RAG Engine API",
                "version": package_version("rag-gateway"),
                "description": "Everything behind the gateway: collections, documents, jobs, "
                "search, answers, the OpenAI-compatible chat API, and API keys. Every route "
                "needs `Authorization: Bearer <API key or JWT>`.",
            },
            "paths": {},
            "components": {"schemas": {}, "securitySchemes": SECURITY},
            "security": [{"bearer": []}],
        }
        headers = self.forwarder.upstream_headers({}, DEFAULT_NAMESPACE, None)
        sources = [app.openapi_schema.to_schema()]
        for upstream in ("ingest", "query"):
            try:
                status, body = await self.forwarder.json(
                    upstream, "GET", "/schema/openapi.json", headers
                )
            except RagError:
                continue
            if status == 200:
                sources.append(body)
        for source in sources:
            for path, operations in source.get("paths", {}).items():
                public = {m: op for m, op in operations.items() if _public(path, m)}
                if public:
                    merged["paths"].setdefault(path, {}).update(public)
            merged["components"]["schemas"].update(source.get("components", {}).get("schemas", {}))
        merged["components"]["schemas"].update(ProblemDetails=PROBLEM, OpenAIError=OPENAI_ERROR)
        for path, operations in merged["paths"].items():
            for method, operation in operations.items():
                if method in ("get", "put", "post", "delete", "patch"):
                    _errors_as_problems(path, operation)
        return merged, len(sources) == 3


@get("/schema/openapi.json", include_in_schema=False)
async def openapi_document(
    request: Request[Any, Any, Any], schema: NamedDependency[PublicSchema]
) -> dict[str, Any]:
    return await schema.document(request.app)


# Swagger UI, from the CDN at one version, each file held to its hash (Subresource Integrity:
# SHA-384 of swagger-ui-dist 5.18.2 as the npm registry ships it, which the CDN serves as it
# is). The page shares the playground's origin, and so its tab's sessionStorage, where the
# playground keeps the API key: a changed file on the CDN would have read it. Refused now.
SWAGGER_UI_VERSION = "5.18.2"
SWAGGER_UI_BASE = f"https://cdn.jsdelivr.net/npm/swagger-ui-dist@{SWAGGER_UI_VERSION}"
SWAGGER_UI_INTEGRITY = {
    "swagger-ui-bundle.js": (
        "sha384-NXtFPpN61oWCuN4D42K6Zd5Rt2+uxeIT36R7kpXBuY9tLnZorzrJ4ykpqwJfgjpZ"
    ),
    "swagger-ui-standalone-preset.js": (
        "sha384-qr68CD0cvHa88PmVu7e1a58Ego4qvKtcvcLdS2a8Mo5zILI01gyIV9jVwJk7X2NU"
    ),
    "swagger-ui.css": ("sha384-rcbEi6xgdPk0iWkAQzT2F3FeBJXdG+ydrawGlfHAFIZG7wU6aKbQaRewysYpmrlW"),
}
_INLINE_SCRIPT = re.compile(rb"<script type='text/javascript'>(.*?)</script>", re.S)


def swagger_page(html: bytes, base: str = SWAGGER_UI_BASE) -> tuple[bytes, str]:
    """Litestar's Swagger UI page with each CDN file held to its hash, and the
    Content-Security-Policy that lets only those files and the page's own script (by its
    hash: it holds the document) run, and lets the page reach only this origin."""
    for name, integrity in SWAGGER_UI_INTEGRITY.items():
        url = f'"{base}/{name}"'.encode()
        if html.count(url) != 1:
            raise RuntimeError(f"the Swagger UI page no longer loads {name} as expected")
        html = html.replace(url, url + f' integrity="{integrity}"'.encode())
    html = html.replace(b" crossorigin>", b' crossorigin="anonymous">')
    html = html.replace(b'rel="stylesheet">', b'rel="stylesheet" crossorigin="anonymous">')
    inline = _INLINE_SCRIPT.search(html)
    if inline is None:
        raise RuntimeError("the Swagger UI page no longer has its inline script")
    digest = base64.b64encode(hashlib.sha256(inline.group(1)).digest()).decode()
    policy = "; ".join(
        [
            "default-src 'none'",
            f"script-src 'sha256-{digest}' {base}/",
            f"style-src 'unsafe-inline' {base}/",  # Swagger UI styles inline too
            "img-src 'self' data:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )
    return html, policy


@get("/schema", include_in_schema=False)
async def openapi_page(
    request: Request[Any, Any, Any], schema: NamedDependency[PublicSchema]
) -> Response[bytes]:
    document = await schema.document(request.app)
    plugin = SwaggerRenderPlugin(
        version=SWAGGER_UI_VERSION,
        favicon="<link rel='icon' href='/playground/favicon.svg'>",  # not a mutable CDN path
    )
    html, policy = swagger_page(plugin.render(request, document))
    return Response(html, media_type="text/html", headers={"Content-Security-Policy": policy})
