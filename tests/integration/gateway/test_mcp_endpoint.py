"""/mcp in-process, on a real Redis, with no service behind the gateway: what the gateway
itself decides (credentials, MCP_ENABLED, the transport's answers) and how a service that
cannot be reached reads to an agent."""

from __future__ import annotations

import json
from typing import Any

from tests.integration.gateway.conftest import ADMIN_KEY, GatewayFactory
from tests.support.mcp import ACCEPT


def _rpc(method: str, params: dict[str, Any], key: str | None = ADMIN_KEY) -> dict[str, Any]:
    headers = {"Accept": ACCEPT, "Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return {
        "json": {"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
        "headers": headers,
    }


INITIALIZE = {
    "protocolVersion": "2025-06-18",
    "capabilities": {},
    "clientInfo": {"name": "test", "version": "1"},
}


def _result(text: str) -> dict[str, Any]:
    """The JSON-RPC message of a one-event SSE answer."""
    data = [line[5:] for line in text.splitlines() if line.startswith("data:")]
    assert len(data) == 1, text
    message: dict[str, Any] = json.loads(data[0])
    return message


def test_mcp_answers_after_the_gateways_own_checks(gateway: GatewayFactory) -> None:
    with gateway() as client:
        refused = client.post("/mcp", **_rpc("initialize", INITIALIZE, key=None))
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"

        started = client.post("/mcp", **_rpc("initialize", INITIALIZE))
        assert started.status_code == 200, started.text
        info = _result(started.text)["result"]
        assert info["serverInfo"]["name"] == "rag-engine"
        assert "tools" in info["capabilities"]

        # No service behind this gateway: the agent reads why, as a tool error.
        called = client.post(
            "/mcp",
            **_rpc(
                "tools/call", {"name": "search", "arguments": {"collection": "c1x", "query": "x"}}
            ),
        )
        result = _result(called.text)["result"]
        assert result["isError"] is True
        assert "502 Bad gateway: the query service is unreachable" in result["content"][0]["text"]


def test_mcp_enabled_false_turns_it_off(gateway: GatewayFactory) -> None:
    with gateway(mcp_enabled=False) as client:
        off = client.post("/mcp", **_rpc("initialize", INITIALIZE))
        assert off.status_code == 404
        assert "MCP_ENABLED=false" in off.json()["detail"]


def test_only_post_is_served_the_server_keeps_no_stream_open(gateway: GatewayFactory) -> None:
    """Stateless: a GET would open a stream of the server's own that no limit counts."""
    with gateway() as client:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}", "Accept": "text/event-stream"}
        for method in ("GET", "DELETE", "PUT"):
            refused = client.request(method, "/mcp", headers=headers, timeout=10)
            assert refused.status_code == 405, (method, refused.text)
            assert refused.headers["allow"] == "POST"
            assert refused.headers["content-type"] == "application/problem+json"
