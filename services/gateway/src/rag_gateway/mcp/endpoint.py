"""/mcp: the MCP server over the Streamable HTTP transport, behind the gateway's own auth.

Each HTTP request is admitted as a /v1 request is (rag_gateway.policy.admit: a valid API key or
JWT, 401 otherwise; one request off the caller's rate limit; an administrator's X-RAG-Tenant),
and the tools it calls then act as that caller (rag_gateway.mcp.calls). The server is stateless
(no MCP session to keep): any gateway replica answers any request, as nginx spreads them. An
answer comes back as server-sent events, progress notifications first.

The official SDK (`mcp`) serves the protocol; it is imported, and its server started, at the
first request to /mcp, on a thread (it takes about 2 s of CPU), so a gateway that never serves
MCP neither waits for it at start nor holds it. MCP_ENABLED=false turns /mcp off (404)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, cast

from litestar import Request, asgi
from litestar.types import Receive, Scope, Send
from rag_config import GatewaySettings
from rag_core.errors import DependencyUnavailable, NotFound
from rag_telemetry import get_logger

from rag_gateway.forwarding import MethodNotAllowed
from rag_gateway.mcp import metrics as _metrics  # noqa: F401  # registered at start
from rag_gateway.policy import admit
from rag_gateway.proxy import Forwarder
from rag_gateway.streams import StreamLeases

if TYPE_CHECKING:
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

# Where the admitted caller travels with the request, from the gateway to the tools.
PRINCIPAL = "rag_gateway.principal"
log = get_logger("rag.gateway")


def _failure(task: asyncio.Task[None]) -> str:
    error = None if task.cancelled() else task.exception()
    return type(error).__name__ if error is not None else "it stopped"


class McpEndpoint:
    """The MCP server of one gateway process, started at its first request."""

    def __init__(
        self, settings: GatewaySettings, forwarder: Forwarder, stream_leases: StreamLeases
    ) -> None:
        self.settings = settings
        self.forwarder = forwarder
        self.stream_leases = stream_leases
        self._manager: StreamableHTTPSessionManager | None = None
        self._starting = asyncio.Lock()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def manager(self) -> StreamableHTTPSessionManager:
        """The running server: started at the first request, and again if it stopped."""
        async with self._starting:
            if self._task is not None and self._task.done():
                log.error("mcp_server_stopped", error=_failure(self._task))
                self._manager, self._task = None, None
            if self._manager is None:
                manager = await asyncio.to_thread(self._build)
                ready = asyncio.Event()
                task = asyncio.create_task(self._run(manager, ready), name="mcp-server")
                waiting = asyncio.create_task(ready.wait())
                await asyncio.wait([task, waiting], return_when=asyncio.FIRST_COMPLETED)
                waiting.cancel()
                if task.done():
                    raise DependencyUnavailable(
                        f"the MCP server did not start ({_failure(task)})",
                        headers={"Retry-After": "2"},
                    )
                self._manager, self._task = manager, task
        return self._manager

    def _build(self) -> StreamableHTTPSessionManager:
        from mcp.server.streamable_http_manager import (  # noqa: PLC0415  # see the module
            StreamableHTTPSessionManager,
        )
        from mcp.server.transport_security import TransportSecuritySettings  # noqa: PLC0415

        from rag_gateway.mcp.calls import Api  # noqa: PLC0415  # they import the SDK
        from rag_gateway.mcp.tools import build_server  # noqa: PLC0415

        def api_of(ctx: Any) -> Api:
            principal = ctx.request_context.request.scope[PRINCIPAL]
            return Api(
                self.forwarder,
                self.stream_leases,
                principal,
                max_result_bytes=self.settings.mcp_max_result_bytes,
            )

        server = build_server(api_of, max_document_chunks=self.settings.mcp_max_document_chunks)
        return StreamableHTTPSessionManager(
            app=server._lowlevel_server,  # what its own streamable_http_app passes
            stateless=True,
            json_response=False,  # answers as server-sent events, progress first
            # Every request carries a credential, which a page in a browser cannot add to a
            # request of another origin: the Host and Origin checks (DNS rebinding) would only
            # refuse the names this gateway is reached by.
            security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
            max_request_body_size=self.settings.max_inspected_body_bytes,
        )

    async def _run(self, manager: StreamableHTTPSessionManager, ready: asyncio.Event) -> None:
        async with manager.run():
            ready.set()
            await self._stop.wait()

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@asgi("/mcp", copy_scope=True, include_in_schema=False)
async def mcp_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    """An MCP request: admitted as any /v1 request, then served by the MCP server."""
    request: Request[Any, Any, Any] = Request(scope, receive, send)
    endpoint: McpEndpoint | None = request.app.state.mcp
    if endpoint is None:
        raise NotFound("/mcp is turned off here (MCP_ENABLED=false)")
    if request.method != "POST":
        # Stateless: no session to end (DELETE) and no stream of the server's own (GET),
        # which would stay open, counted by no limit.
        raise MethodNotAllowed(
            "this MCP server is stateless: send each message with POST",
            headers={"Allow": "POST"},
        )
    admission = await admit(request, None)  # refusals become problem details, as on /v1
    manager = await endpoint.manager()
    cast(dict[str, Any], scope)[PRINCIPAL] = admission.principal
    await manager.handle_request(scope, receive, send)  # type: ignore[arg-type]  # Starlette's ASGI types
