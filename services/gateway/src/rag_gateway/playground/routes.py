"""GET / and /playground/{name}: the playground page and its assets.

Public, like /health: the files hold no data, and every call the page makes to /v1 carries the
API key its user pastes. The page loads nothing from elsewhere, so the Content-Security-Policy
allows only this origin (no inline script or style either)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

from litestar import Request, Response, get
from litestar.params import FromPath
from litestar.status_codes import HTTP_304_NOT_MODIFIED
from rag_core.errors import NotFound

# Litestar adds "; charset=utf-8" to text/* types itself.
MEDIA_TYPES = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "app.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",  # the script handles every form; a plain submit would leak the key
        "frame-ancestors 'none'",
    ]
)


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


@cache
def load_asset(name: str) -> Asset:
    """A packaged file, read once per process (a few kilobytes each)."""
    media_type = MEDIA_TYPES.get(name)
    if media_type is None:
        raise NotFound(f"/playground/{name} is not part of the playground")
    body = (files("rag_gateway.playground") / "static" / name).read_bytes()
    return Asset(body, media_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


def serve_asset(name: str, request: Request[Any, Any, Any]) -> Response[bytes]:
    asset = load_asset(name)
    headers = {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "Cache-Control": "no-cache",  # revalidated each time: a new release shows at once
        "ETag": asset.etag,
    }
    if request.headers.get("if-none-match") == asset.etag:
        return Response(b"", status_code=HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


@get("/", include_in_schema=False)
async def playground_page(request: Request[Any, Any, Any]) -> Response[bytes]:
    return serve_asset("index.html", request)


@get("/playground/{name:str}", include_in_schema=False)
async def playground_asset(name: FromPath[str], request: Request[Any, Any, Any]) -> Response[bytes]:
    return serve_asset(name, request)
