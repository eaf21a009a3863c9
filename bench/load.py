"""Latency and throughput under concurrent load, with wrk (a real load generator, from Debian):
search (dense, hybrid) and extractive answers at several concurrency levels, through nginx and
the gateway and directly against a query replica, next to the raw limit (embed the query and
one Chroma query, in-process, the same number of requests in flight)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from rag_config import QuerySettings
from rag_core.chroma import ChromaClient
from rag_core.embedding.local import LocalEmbedder
from stats import summarize

if TYPE_CHECKING:
    from peer import PeerRetriever

PEER_LABEL = "peer: LlamaIndex retriever (dense), in-process, threads"

LEVELS = (1, 4, 16, 64)
SECONDS = 5
KINDS = (
    ("search dense", "search", {"mode": "dense", "top_k": 10}),
    ("search hybrid", "search", {"mode": "hybrid", "top_k": 10}),
    ("answer extractive", "query", {"top_k": 5, "cache": False}),
)


def _lua(path: str, bodies: list[str], headers: dict[str, str]) -> str:
    quoted = ",\n".join(json.dumps(body) for body in bodies)
    header_lines = "\n".join(
        f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()
    )
    return f"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
{header_lines}
local bodies = {{
{quoted}
}}
local i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format(nil, "{path}", nil, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %f %f %f %f\\n", summary.requests,
    e.connect + e.read + e.write + e.status + e.timeout, summary.duration,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.mean))
end
"""


def settle(base: str, path: str, body: str, headers: dict[str, str]) -> None:
    """Wait out the work the previous level left queued: a service keeps computing the
    answers of requests whose clients (wrk, at the end of a level) have gone, and the next
    level must not pay for them. Two requests one after the other: the first is answered once
    that backlog is through (the embedder's queue is first in, first out)."""
    with httpx.Client(base_url=base, timeout=300, headers=headers) as http:
        for _ in range(2):
            http.post(path, content=body, headers={"Content-Type": "application/json"})


def wrk(
    base: str, path: str, bodies: list[str], headers: dict[str, str], connections: int
) -> dict[str, float]:
    settle(base, path, bodies[0], headers)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_lua(path, bodies, headers))
    result = subprocess.run(
        [
            "wrk",
            f"--threads={min(connections, 2)}",
            f"--connections={connections}",
            f"--duration={SECONDS}s",
            "--timeout=30s",
            f"--script={script.name}",
            base,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    Path(script.name).unlink()
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT"))
    requests, errors, duration_us, p50, p95, p99, mean = line.split()[1:]
    return {
        "requests": int(requests),
        "errors": int(errors),
        "rps": int(requests) / (int(duration_us) / 1e6),
        "p50": float(p50) / 1000,
        "p95": float(p95) / 1000,
        "p99": float(p99) / 1000,
        "mean": float(mean) / 1000,
    }


def raw(
    queries: list[str], cache: Path, chroma_port: int, chroma_name: str, connections: int
) -> dict[str, float]:
    """The same number of requests in flight, each an embedding and a Chroma query."""
    settings = QuerySettings(_env_file=None, chroma_host="127.0.0.1", chroma_port=chroma_port)
    embedder = LocalEmbedder(cache / "models", variant="int8")

    async def run() -> tuple[list[float], float]:
        chroma = ChromaClient(settings, settings)
        found = await chroma.get_collection(chroma_name)
        assert found is not None
        samples: list[float] = []
        stop = time.perf_counter() + SECONDS

        async def client(offset: int) -> None:
            i = offset
            while time.perf_counter() < stop:
                started = time.perf_counter()
                vector = await embedder.embed_query(queries[i % len(queries)])
                await chroma.query(found.id, vector, n_results=10)
                samples.append((time.perf_counter() - started) * 1000)
                i += connections

        started = time.perf_counter()
        await asyncio.gather(*(client(n) for n in range(connections)))
        elapsed = time.perf_counter() - started
        await chroma.close()
        return samples, elapsed

    try:
        samples, elapsed = asyncio.run(run())
    finally:
        embedder.close()
    return summarize(samples, elapsed)


def sweep(
    direct: str,
    edge: str | None,
    key: str | None,
    collection: str,
    queries: list[str],
    cache: Path,
    chroma_port: int,
    chroma_name: str,
) -> dict[str, Any]:
    results: dict[str, dict[int, dict[str, float]]] = {}
    for label, route, options in KINDS:
        bodies = [json.dumps({"query": q, **options}) for q in queries]
        path = f"/v1/collections/{collection}/{route}"
        targets: list[tuple[str, str, dict[str, str]]] = [
            ("direct to one query replica", direct, {})
        ]
        if edge is not None and key is not None:
            targets.append(("through nginx + gateway", edge, {"Authorization": f"Bearer {key}"}))
        for where, base, headers in targets:
            name = f"{label}, {where}"
            results[name] = {}
            for level in LEVELS:
                results[name][level] = wrk(base, path, bodies, headers, level)
                got = results[name][level]
                print(
                    f"  {name} at {level}: {got['p50']:.1f} ms p50, {got['rps']:.1f}/s", flush=True
                )
    results["raw: embed query + Chroma query, in-process"] = {
        level: raw(queries, cache, chroma_port, chroma_name, level) for level in LEVELS
    }
    return {"levels": list(LEVELS), "seconds": SECONDS, "results": results}


def add_peer(sweep_result: dict[str, Any], queries: list[str], peer: PeerRetriever) -> None:
    """The LlamaIndex retriever at the same levels, into ``sweep_result``."""
    sweep_result["results"][PEER_LABEL] = {
        level: peer.under_load(queries, level, SECONDS) for level in LEVELS
    }


def plot(sweep_result: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    levels = sweep_result["levels"]
    figure, (latency, throughput) = plt.subplots(1, 2, figsize=(13, 5.2))
    for name, by_level in sweep_result["results"].items():
        style = (
            "--"
            if name.startswith("raw")
            else "-."
            if name.startswith("peer")
            else "-"
            if "gateway" in name
            else ":"
        )
        latency.plot(levels, [by_level[n]["p50"] for n in levels], style, marker="o", label=name)
        throughput.plot(levels, [by_level[n]["rps"] for n in levels], style, marker="o", label=name)
    for axis, title, unit in (
        (latency, "p50 latency", "ms"),
        (throughput, "throughput", "requests/s"),
    ):
        axis.set_xscale("log", base=2)
        axis.set_xticks(levels, [str(n) for n in levels])
        axis.set_xlabel("requests in flight (wrk connections)")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.grid(alpha=0.3)
    latency.set_yscale("log")
    handles, labels = latency.get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=2, fontsize=8)
    figure.suptitle("Query load on BEIR SciFact (2 cores; everything on one machine)")
    figure.tight_layout(rect=(0, 0.17, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def section(sweep_result: dict[str, Any], header: str, image: str) -> str:
    levels = sweep_result["levels"]
    lines = [
        "<!-- load:begin -->",
        "## Query latency and throughput under load",
        "",
        header,
        "",
        f"wrk, {sweep_result['seconds']} s per level, the 300 SciFact test queries in turn; "
        "p50 / p95 latency in ms and requests per second (errors in brackets when any).",
        "",
        "| request | " + " | ".join(f"{n} in flight" for n in levels) + " |",
        "|---|" + "---:|" * len(levels),
    ]
    for name, by_level in sweep_result["results"].items():
        cells = []
        for n in levels:
            r = by_level[n]
            errors = f" ({r['errors']} errors)" if r["errors"] else ""
            cells.append(f"{r['p50']:.0f} / {r['p95']:.0f} ms, {r['rps']:.0f}/s{errors}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"![latency and throughput against concurrency]({image})", "<!-- load:end -->"]
    return "\n".join(lines)
