"""The path the gateway authorises is the path it forwards. Routing and authorisation read the
decoded path; the services get the raw one, and an HTTP client or server on the way may
rewrite it: httpx, the gateway's first HTTP client, removed dot segments
(`/v1/collections/c/documents/..` reached ingest as `/v1/collections/c`, and deleted the
collection). So a path whose raw and decoded forms could name different things is refused
(400) before anything else is read, credentials included:

- a dot segment, `.` or `..`, raw or percent-encoded in any case (`%2e`, `%2E%2e`, `.%2E`);
- an encoded `/` (`%2F`) in a segment, which is one segment raw and two once decoded;
- a raw path that does not decode to the path the router saw.

No identifier of the API (collection names, document, job, session, evaluation and key ids)
can be `.` or `..` or hold a `/`, so nothing a client may legitimately ask for is refused."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from litestar import Request
from rag_core.errors import RagError, field_errors

DOT_SEGMENTS = frozenset({".", ".."})


class AmbiguousPath(RagError):
    status_code = 400
    problem = "ambiguous-path"
    title = "Ambiguous path"

    def __init__(self, message: str) -> None:
        super().__init__(message, extra=field_errors("path", message))


def forwardable(raw: str) -> None:
    """AmbiguousPath unless ``raw`` (a path about to be forwarded) has no dot segment and no
    encoded '/': no server on the way can resolve it into another (checked again where it is
    sent, whichever route it came by)."""
    checked_path({"raw_path": raw.encode(), "path": unquote(raw)})


def checked_path(scope: Any) -> str:
    """The raw path of the request, to forward as it is; AmbiguousPath unless it names exactly
    what the decoded path (``scope["path"]``) names."""
    try:
        raw = bytes(scope.get("raw_path") or scope["path"].encode()).decode("ascii")
    except UnicodeDecodeError:
        raise AmbiguousPath("the path must be ASCII: percent-encode other characters") from None
    for segment in raw.split("/"):
        decoded = unquote(segment)
        if decoded in DOT_SEGMENTS:
            raise AmbiguousPath(
                f"the path has a dot segment ({segment!r}): '.' and '..' (also percent-encoded) "
                "are not identifiers here, and are refused rather than resolved"
            )
        if "/" in decoded:
            raise AmbiguousPath(
                f"the path has an encoded '/' in the segment {segment!r}: identifiers here "
                "never hold '/'"
            )
    if unquote(raw) != scope["path"]:
        raise AmbiguousPath("the path does not decode to the path that was routed")
    return raw


async def refuse_ambiguous_paths(request: Request[Any, Any, Any]) -> None:
    """Before every route of the gateway, ahead of authentication."""
    checked_path(request.scope)
