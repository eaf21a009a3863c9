"""MCP metrics, registered when the gateway starts (the SDK itself loads at the first request)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

TOOL_CALLS = Counter(
    "rag_gateway_mcp_tool_calls_total",
    "MCP tool calls, by tool and outcome (ok; error: refused or failed, the agent told why).",
    ["tool", "outcome"],
)
TOOL_SECONDS = Histogram(
    "rag_gateway_mcp_tool_seconds",
    "Time to serve one MCP tool call, by tool.",
    ["tool"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
