"""What an MCP tool does is a request of the public API, made as its caller: the route table
(rag_gateway.routing) names the service, the scope and the collection, and the caller's
principal is held to them exactly as on /v1 (rag_gateway.policy's Admission): the scope (403),
the collection in the path or in the body (404, as for one that does not exist), the owner of
a job, what a listing may show. The caller's credential, rate limit and tenant were settled
when its MCP request was admitted. A refusal or a failure becomes a ToolError whose message
the agent reads: the status, the title and the detail of the problem."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any
from urllib.parse import quote, unquote, urlencode

import aiohttp
import msgspec
from mcp.server.mcpserver.exceptions import ToolError
from rag_core.errors import RagError
from rag_core.tenancy import check_collection_name
from rag_telemetry import current_request_id

from rag_gateway.auth.principal import Principal
from rag_gateway.paths import forwardable
from rag_gateway.policy import Admission
from rag_gateway.proxy import Forwarder, Reply, Whole, buffered
from rag_gateway.routing import NoRoute, classify
from rag_gateway.streams import StreamLeases

# The longest line of a streamed answer (its events are a token, or its sources: kilobytes).
SSE_LINE_BYTES = 1024 * 1024
# The longest path a tool sends: a collection name (63) and a document id (256 characters, up
# to 12 bytes each percent-encoded) fit; nginx's internal listener answered a longer one with
# its HTML 414, which reached the tool as a 502.
MAX_PATH_CHARS = 4096


def path(*segments: str, query: dict[str, Any] | None = None) -> str:
    """``/v1/<segment>/...``, each segment percent-encoded whole (a name holding '/' stays one
    segment, and is then refused as the API refuses it)."""
    raw = "/v1/" + "/".join(quote(segment, safe="") for segment in segments)
    wanted = {k: v for k, v in (query or {}).items() if v is not None}
    return raw + (f"?{urlencode(wanted)}" if wanted else "")


def refusal(status: int, problem: Any) -> ToolError:
    """A ToolError from a problem (RFC 9457) or an OpenAI-shaped error body."""
    if isinstance(problem, dict) and isinstance(problem.get("error"), dict):
        problem = {"detail": problem["error"].get("message")}
    if not isinstance(problem, dict):
        problem = {}
    title = problem.get("title") or "Error"
    detail = problem.get("detail") or ""
    fields = [
        f"{error.get('field')}: {error.get('message')}"
        for error in problem.get("errors") or []
        if isinstance(error, dict) and error.get("field")
    ]
    fields = [field for field in fields if field not in detail]  # said once
    text = f"{status} {title}: {detail}".rstrip(": ")
    return ToolError(text + (f" ({'; '.join(fields)})" if fields else ""))


def cut_off(exc: Exception) -> ToolError:
    """A ToolError for an answer that failed on its way: cut, late, or not JSON."""
    if isinstance(exc, TimeoutError):
        return ToolError("504 Gateway timeout: the service did not answer in time")
    if isinstance(exc, msgspec.DecodeError):
        return ToolError("502 Bad gateway: the service did not answer in JSON")
    return ToolError(f"502 Bad gateway: the answer was cut off ({type(exc).__name__})")


def refused(exc: RagError) -> ToolError:
    return refusal(int(exc.status_code), {"title": exc.title, "detail": exc.detail})


class Api:
    """The public API, called as one principal."""

    def __init__(
        self,
        forwarder: Forwarder,
        stream_leases: StreamLeases,
        principal: Principal,
        *,
        max_result_bytes: int,
    ) -> None:
        self.forwarder = forwarder
        self.stream_leases = stream_leases
        self.principal = principal
        self.max_result_bytes = max_result_bytes

    def _admitted(self, method: str, raw_path: str, body: bytes | None) -> Admission:
        forwardable(raw_path.partition("?")[0])
        try:
            route = classify(method, unquote(raw_path.partition("?")[0]))
        except NoRoute:
            raise ToolError(f"404 Not found: {raw_path} is not part of the API") from None
        policy = route.policy
        if policy.upload or policy.ingest_quota or policy.closed_to_limited_keys is not None:
            # Admitted here without those limits: no tool may call such a route.
            raise ToolError(f"405 Method not allowed: {method} {raw_path} is not for tools")
        self.principal.require(route.scope)
        if route.collection is not None:
            # A name no collection can have is said so (a 12,000-character one was a 502).
            check_collection_name(route.collection, "collection")
            self.principal.require_collection(route.collection)
        if len(raw_path) > MAX_PATH_CHARS:
            raise ToolError(
                f"414 URI too long: over {MAX_PATH_CHARS} characters (a collection's name has "
                "at most 63, a document id 256)"
            )
        admission = Admission(self.principal, route)
        if body is not None:
            admission.check_body(body)
        return admission

    def _headers(self, body: bytes | None) -> dict[str, str]:
        incoming = {"Content-Type": "application/json"} if body is not None else {}
        return self.forwarder.upstream_headers(
            incoming, self.principal.tenant, current_request_id()
        )

    async def call(self, method: str, raw_path: str, body: Any = None) -> Any:
        """The decoded JSON answer of ``method raw_path`` (with ``body`` as JSON), as the
        caller may see it; a ToolError for any refusal or failure."""
        content = None if body is None else msgspec.json.encode(body)
        try:
            admission = self._admitted(method, raw_path, content)
            route = admission.route
            assert route is not None
            headers = self._headers(content)
            await admission.check_owner(self.forwarder, headers)
            reply = await self.forwarder.exchange(
                route.upstream, method, raw_path, headers, content, reads_only=route.reads_only
            )
            status, raw = await self._bounded(reply)
            answer = msgspec.json.decode(raw) if raw else None
            if status >= 400:
                raise refusal(status, answer)
            return admission.visible(answer) if admission.filters_answer else answer
        except RagError as exc:
            raise refused(exc) from None
        except (msgspec.DecodeError, aiohttp.ClientError, TimeoutError) as exc:
            raise cut_off(exc) from None

    async def _bounded(self, reply: Reply | Whole) -> tuple[int, bytes]:
        """The status and body of an answer, read whole up to MCP_MAX_RESULT_BYTES."""
        if isinstance(reply, Whole):
            return reply.status, reply.body
        limit = self.max_result_bytes
        body = bytearray()
        try:
            async for chunk in reply.chunks():
                body += chunk
                if len(body) > limit:
                    raise ToolError(
                        f"413 Too large: the answer is over {limit} bytes, the most a tool "
                        "returns (MCP_MAX_RESULT_BYTES); ask for less (a passage: chunk_id)"
                    )
        finally:
            reply.close()
        return reply.status_code, bytes(body)

    async def events(
        self, raw_path: str, body: dict[str, Any]
    ) -> AsyncGenerator[tuple[str, Any], None]:
        """The server-sent events (name, decoded data) of a streamed answer, as they arrive;
        the stream counts against the caller's open-stream limits while it is open."""
        content = msgspec.json.encode(body)
        try:
            admission = self._admitted("POST", raw_path, content)
            assert admission.route is not None
            lease = await self.stream_leases.open(self.principal)
        except RagError as exc:
            raise refused(exc) from None
        try:
            reply = await self.forwarder.exchange(
                admission.route.upstream,
                "POST",
                raw_path,
                self._headers(content),
                content,
                pool="streams",
            )
            if isinstance(reply, Reply) and reply.status_code < 400:
                lease.serving()
                try:
                    async for event in _server_sent(reply):
                        yield event
                except GeneratorExit:  # the caller has what it needed (aclose)
                    reply.close()
                    await lease.release()
                    raise
                finally:
                    reply.close()
                await lease.release()
                return
            whole = reply if isinstance(reply, Whole) else await buffered(reply)
            if whole.status < 400:
                raise ToolError("502 Bad gateway: the service did not answer with a stream")
            raise refusal(whole.status, msgspec.json.decode(whole.body or b"null"))
        except RagError as exc:
            raise refused(exc) from None
        except (msgspec.DecodeError, aiohttp.ClientError, TimeoutError) as exc:
            raise cut_off(exc) from None
        finally:
            lease.close()


async def _server_sent(reply: Reply) -> AsyncIterator[tuple[str, Any]]:
    """(event, JSON data) of each event of a text/event-stream; events without data skipped;
    a line over SSE_LINE_BYTES is an error."""
    pending = b""
    name, data = "message", list[str]()
    async for chunk in reply.chunks():
        *lines, pending = (pending + chunk).split(b"\n")
        if len(pending) > SSE_LINE_BYTES:
            raise ToolError(f"502 Bad gateway: a line of the answer is over {SSE_LINE_BYTES} bytes")
        for raw in lines:
            line = raw.rstrip(b"\r").decode()
            if not line:
                if data:
                    yield name, msgspec.json.decode("\n".join(data))
                name, data = "message", list[str]()
            elif line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
