"""What an agent pays for MCP (issue 20): the latency of a search and of an answer asked as an
MCP tool call through nginx and the gateway, next to the same request on /v1, one at a time,
on 300 SciFact abstracts. MCP rows: one JSON-RPC POST per call (the server is stateless), its
answer read as server-sent events, as the official SDK reads it. Writes the "mcp" section of
docs/benchmarks.md.

    make bench-mcp        (about 3 minutes)
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import httpx
from ingest_throughput import DOC, edge_stack, load_corpus, measured_on, replace_section
from rag_client import Client

DOCUMENTS = 300
CALLS = 150
WARM_UP = 10
ACCEPT = "application/json, text/event-stream"


def timed(call: Callable[[str], None], questions: list[str]) -> dict[str, float]:
    for question in questions[:WARM_UP]:
        call(question)
    samples = []
    for question in questions[WARM_UP : WARM_UP + CALLS]:
        started = time.perf_counter()
        call(question)
        samples.append((time.perf_counter() - started) * 1000)
    cuts = statistics.quantiles(sorted(samples), n=100, method="inclusive")
    return {"p50": cuts[49], "p95": cuts[94], "mean": statistics.fmean(samples)}


def mcp_call(http: httpx.Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }
    reply = http.post("/mcp", json=body, headers={"Accept": ACCEPT})
    reply.raise_for_status()
    data = [line[5:] for line in reply.text.splitlines() if line.startswith("data:")]
    result: dict[str, Any] = json.loads(data[-1])["result"]
    assert not result["isError"], result
    return result


def main() -> None:
    documents = load_corpus(DOCUMENTS)
    questions = [f"{d['title']}" for d in documents][: WARM_UP + CALLS]
    with edge_stack("bench-mcp", ["ingest:write", "query:read"]) as (stack, key):
        with Client(stack.edge_url, key) as sdk:
            sdk.create_collection("scifact")
            accepted = sdk.add_documents("scifact", documents)
            sdk.wait_jobs(accepted.job_ids, max_seconds=600)
        auth = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=stack.edge_url, headers=auth, timeout=60) as http:

            def v1_search(question: str) -> None:
                body = {"query": question, "top_k": 5}
                http.post("/v1/collections/scifact/search", json=body).raise_for_status()

            def mcp_search(question: str) -> None:
                arguments = {"collection": "scifact", "query": question, "top_k": 5}
                mcp_call(http, "search", arguments)

            def v1_answer(question: str) -> None:
                body = {"query": question, "top_k": 5, "cache": False}
                http.post("/v1/collections/scifact/query", json=body).raise_for_status()

            def mcp_answer(question: str) -> None:
                arguments = {"collection": "scifact", "question": question, "top_k": 5}
                mcp_call(http, "answer", arguments)

            mcp_call(http, "list_collections", {})  # the SDK loads at the first call
            rows = [
                ("search, /v1", timed(v1_search, questions)),
                ("search, MCP tool", timed(mcp_search, questions)),
                ("answer (extractive), /v1", timed(v1_answer, questions)),
                ("answer (extractive, streamed), MCP tool", timed(mcp_answer, questions)),
            ]
    lines = [
        "<!-- mcp:begin -->",
        f"{measured_on()}; "
        f"`make bench-mcp`: {DOCUMENTS} SciFact abstracts, native stack behind nginx (one "
        f"gateway, two query replicas), {CALLS} calls one at a time after {WARM_UP} to warm up; "
        "MCP calls are one JSON-RPC POST each, read as server-sent events. Each question is "
        "asked once (a title of the corpus), so no answer comes from the answer cache; the MCP "
        "answer streams, the /v1 one does not.",
        "",
        "| request | p50 ms | p95 ms | mean ms |",
        "|---|---|---|---|",
    ]
    for label, r in rows:
        lines.append(f"| {label} | {r['p50']:.1f} | {r['p95']:.1f} | {r['mean']:.1f} |")
    lines += [
        "",
        f"MCP adds {rows[1][1]['p50'] - rows[0][1]['p50']:.1f} ms to a search at the median "
        f"(JSON-RPC, the SDK's dispatch, the tool's own call of the API).",
        "<!-- mcp:end -->",
    ]
    section = "\n".join(lines)
    DOC.write_text(replace_section(DOC.read_text(), "mcp", section))
    print(section)


if __name__ == "__main__":
    main()
