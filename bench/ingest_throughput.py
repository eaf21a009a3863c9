"""Ingest throughput on BEIR SciFact: end to end (API -> queue -> worker -> Chroma) next to the
raw embedder on the very same chunks, in the same run; plus peak memory. Writes the "Ingest"
section of docs/benchmarks.md.

    python bench/ingest_throughput.py [--limit N] [--workers N] [--concurrency N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from load import plot, sweep
from load import section as load_section
from query_bench import load_test_queries, run_query_bench
from query_bench import section as query_section
from rag_config import IngestSettings
from rag_core.embedding.local import LocalEmbedder
from rag_devstack import NativeStack, StackPorts, free_port
from rag_ingest.chunking import chunk_sections
from rag_ingest.parsing import parse_document

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "eval" / "scifact" / "corpus.jsonl"
DOC = ROOT / "docs" / "benchmarks.md"
BATCH = 500
BENCH_ADMIN_KEY = "bench-admin-key-for-this-run-only-0123456789"


def load_corpus(limit: int | None) -> list[dict[str, str]]:
    docs = []
    with CORPUS.open() as handle:
        for line in handle:
            row = json.loads(line)
            docs.append(
                {"id": f"scifact-{row['_id']}", "text": f"{row['title']}\n\n{row['text']}".strip()}
            )
            if limit and len(docs) >= limit:
                break
    return docs


def raw_embedder(
    docs: list[dict[str, str]], cache: Path, settings: IngestSettings
) -> dict[str, Any]:
    """The hardware limit: the same model, batch size and chunks, with nothing else around."""
    embedder = LocalEmbedder(cache, variant="int8", batch_size=settings.embed_batch_size)
    chunks = []
    for doc in docs:
        parsed = parse_document(doc["text"].encode(), content_type="text/plain; charset=utf-8")
        chunks += [
            c.text
            for c in chunk_sections(
                parsed.sections,
                embedder.token_spans,
                size=settings.chunk_size_tokens,
                overlap=settings.chunk_overlap_tokens,
            )
        ]
    embedder.embed_sync(chunks[:64])  # warm-up
    started, cpu_started = time.perf_counter(), time.process_time()
    embedder.embed_sync(chunks)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    embedder.close()
    return {
        "chunks": len(chunks),
        "seconds": seconds,
        "cpu_seconds": cpu,
        "chunks_per_s": len(chunks) / seconds,
    }


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its living descendants (the worker's parser
    processes)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    total, family = 0.0, {pid}
    changed = True
    while changed:
        changed = False
        for child, (parent, _) in stats.items():
            if parent in family and child not in family:
                family.add(child)
                changed = True
    for member in family:
        total += stats.get(member, (0, 0.0))[1]
    return total


def end_to_end(
    docs: list[dict[str, str]], cache: Path, workers: int, concurrency: int, *, query: bool
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp:
        stack = NativeStack(
            Path(tmp),
            StackPorts.free(),
            env={
                "DATA_DIR": str(cache),
                "LOG_LEVEL": "WARNING",
                "WORKER_CONCURRENCY": str(concurrency),
                "ADMIN_API_KEY": BENCH_ADMIN_KEY,
                "RATE_LIMIT_PER_MINUTE": "1000000",
            },
        )
        with stack:
            if query:
                stack.start(services=["ingest", "query", "gateway"], with_nginx=True)
            else:
                stack.start(services=["ingest"])
            extra = []
            for n in range(1, workers):
                port = free_port()
                stack.start_worker(name=f"worker-{n}", health_port=port)
                stack.wait_worker(name=f"worker-{n}", health_port=port)
                extra.append(f"worker-{n}")
            http = httpx.Client(base_url=stack.api_url("ingest"), timeout=120)
            assert http.post("/v1/collections", json={"name": "scifact"}).status_code == 201
            started = time.perf_counter()
            for start in range(0, len(docs), BATCH):
                response = http.post(
                    "/v1/collections/scifact/documents",
                    json={"documents": docs[start : start + BATCH]},
                )
                response.raise_for_status()
            accepted = time.perf_counter() - started
            while True:
                time.sleep(0.5)
                collection = http.get("/v1/collections/scifact").json()
                if collection["document_count"] >= len(docs):
                    break
                failed = http.get(
                    "/v1/jobs", params={"collection": "scifact", "state": "failed"}
                ).json()["jobs"]
                if failed:
                    raise SystemExit(f"a job failed: {failed[0]}")
            seconds = time.perf_counter() - started
            stages: dict[str, float] = {}
            before = None
            while True:
                params: dict[str, str | int | float] = {"collection": "scifact", "limit": 500}
                if before is not None:
                    params["before"] = before
                page = http.get("/v1/jobs", params=params).json()
                for job in page["jobs"]:
                    for stage, value in ((job.get("result") or {}).get("timings") or {}).items():
                        stages[stage] = stages.get(stage, 0.0) + value
                before = page["next_before"]
                if before is None:
                    break
            names = ["ingest", "worker", *extra, "chroma", "redis"]
            rss = {name: peak_rss_mb(stack.processes[name].pid) for name in names}
            cpu = {name: cpu_seconds(stack.processes[name].pid) for name in names}
            queried = loaded = None
            if query:
                print("query benchmarks...", flush=True)
                time.sleep(2)  # the lexical index follows within a second
                key = bench_key(stack.edge_url)
                queried = run_query_bench(
                    stack.api_url("query"),
                    "scifact",
                    CORPUS.parent,
                    cache,
                    stack.ports.chroma,
                    edge=(stack.edge_url, key),
                )
                print("load (wrk)...", flush=True)
                queries = list(load_test_queries(CORPUS.parent)[0].values())
                loaded = sweep(
                    stack.api_url("query"),
                    stack.edge_url,
                    key,
                    "scifact",
                    queries,
                    cache,
                    stack.ports.chroma,
                    "rag-default-scifact",
                )
        return {
            "documents": len(docs),
            "chunks": collection["chunk_count"],
            "seconds": seconds,
            "accept_seconds": accepted,
            "chunks_per_s": collection["chunk_count"] / seconds,
            "docs_per_s": len(docs) / seconds,
            "stage_seconds": stages,
            "peak_rss_mb": rss,
            "cpu_seconds": cpu,
            "query": queried,
            "load": loaded,
        }


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = (
        int(
            next(
                line.split()[1]
                for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")
            )
        )
        / 1024
        / 1024
    )
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Python {platform.python_version()}"


def write_section(raw: dict[str, Any], e2e: dict[str, Any], args: argparse.Namespace) -> str:
    ratio = e2e["chunks_per_s"] / raw["chunks_per_s"]
    stages = e2e["stage_seconds"]
    total_stage = sum(stages.values()) or 1.0
    lines = [
        "<!-- ingest:begin -->",
        "## Ingest throughput (BEIR SciFact)",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}; commit `{commit()}`;",
        f"`python bench/ingest_throughput.py --limit {args.limit or 0} --workers {args.workers} "
        f"--concurrency {args.concurrency}` ({e2e['documents']} documents).",
        "Model all-MiniLM-L6-v2 int8 on onnxruntime (CPU), batch 32, chunks of at most 200",
        "tokens with 40 overlapping.",
        "",
        "| path | chunks | seconds | chunks/s | docs/s |",
        "|---|---:|---:|---:|---:|",
        f"| raw embedder, same chunks, in-process | {raw['chunks']} | {raw['seconds']:.1f} | "
        f"{raw['chunks_per_s']:.1f} | - |",
        f"| end to end: API -> Redis queue -> worker ({args.workers}) -> Chroma "
        f"| {e2e['chunks']} | {e2e['seconds']:.1f} | {e2e['chunks_per_s']:.1f} "
        f"| {e2e['docs_per_s']:.1f} |",
        "",
        f"End to end reaches **{ratio:.0%}** of the raw embedder's chunks/s "
        f"(target: at least 90%{'' if ratio >= 0.9 else '; not met'}). "
        f"Accepting all documents took {e2e['accept_seconds']:.1f} s.",
        "",
        "Time inside jobs by stage (summed over jobs that run concurrently, so it exceeds the",
        "wall time): "
        + ", ".join(
            f"{k} {v:.1f} s ({v / total_stage:.0%})"
            for k, v in sorted(stages.items(), key=lambda kv: -kv[1])
        )
        + ".",
        "",
        "Peak resident memory (VmHWM): "
        + ", ".join(f"{k} {v:.0f} MiB" for k, v in e2e["peak_rss_mb"].items())
        + ".",
        "",
        "CPU time over the whole run (user + system, with child processes): "
        + ", ".join(f"{k} {v:.0f} s" for k, v in e2e["cpu_seconds"].items())
        + f"; the raw embedder used {raw['cpu_seconds']:.0f} s.",
        "<!-- ingest:end -->",
    ]
    return "\n".join(lines)


def bench_key(edge_url: str) -> str:
    """An API key for the load, with a rate limit no benchmark reaches."""
    created = httpx.post(
        f"{edge_url}/v1/admin/keys",
        json={"tenant": "default", "scopes": ["query:read"], "name": "bench"},
        headers={"Authorization": f"Bearer {BENCH_ADMIN_KEY}"},
        timeout=30,
    )
    created.raise_for_status()
    key: str = created.json()["key"]
    return key


def replace_section(text: str, name: str, section: str) -> str:
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if begin in text:
        head, rest = text.split(begin, 1)
        return head + section + rest.split(end, 1)[1]
    return text.rstrip() + "\n\n" + section + "\n"


def commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=None, help="documents (default: all)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--data-dir", default=str(ROOT / ".dev" / "bench-data"))
    parser.add_argument(
        "--no-query", action="store_true", help="skip the query benchmarks after ingesting"
    )
    args = parser.parse_args()
    # SIGTERM ends the run like Ctrl-C: the stack's `with` block stops every process it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    docs = load_corpus(args.limit)
    cache = Path(args.data_dir)
    settings = IngestSettings(_env_file=None)
    print(f"raw embedder on {len(docs)} documents...", flush=True)
    raw = raw_embedder(docs, cache / "models", settings)
    print(f"  {raw['chunks']} chunks, {raw['chunks_per_s']:.1f} chunks/s", flush=True)
    print("end to end...", flush=True)
    e2e = end_to_end(docs, cache, args.workers, args.concurrency, query=not args.no_query)
    print(
        f"  {e2e['chunks']} chunks, {e2e['chunks_per_s']:.1f} chunks/s "
        f"({e2e['chunks_per_s'] / raw['chunks_per_s']:.0%} of raw)",
        flush=True,
    )
    section = write_section(raw, e2e, args)
    text = replace_section(DOC.read_text() if DOC.exists() else "# Benchmarks\n", "ingest", section)
    print(section)
    if e2e["query"] is not None:
        header = (
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}; commit "
            f"`{commit()}`; the same run and stack as the ingest figures above "
            f"({e2e['documents']} documents, {e2e['chunks']} chunks), native stack, one query "
            "process."
        )
        queried = query_section(e2e["query"], header)
        text = replace_section(text, "query", queried)
        print(queried)
        plot(e2e["load"], ROOT / "docs" / "img" / "query-load.png")
        loaded = load_section(e2e["load"], header, "img/query-load.png")
        text = replace_section(text, "load", loaded)
        print(loaded)
    DOC.write_text(text)
    sys.exit(0)


if __name__ == "__main__":
    main()
