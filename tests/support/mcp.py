"""An MCP request as a client without an SDK sends it: one JSON-RPC POST to /mcp."""

from __future__ import annotations

from typing import Any

ACCEPT = "application/json, text/event-stream"  # what the Streamable HTTP transport asks for


def initialize(token: str | None) -> dict[str, Any]:
    """httpx keyword arguments of an `initialize` request, with ``token`` as its bearer."""
    return {
        "json": {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "rag-engine-tests", "version": "1"},
            },
        },
        "headers": {"Accept": ACCEPT} | ({"Authorization": f"Bearer {token}"} if token else {}),
    }
