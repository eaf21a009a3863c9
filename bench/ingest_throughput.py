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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import goals
import httpx
import load
import numpy as np
import peer
import scale
from load import add_peer as add_peer_load
from load import plot, sweep
from load import section as load_section
from procs import cpu_seconds, peak_rss_mb, rss_mb
from query_bench import add_peer as add_peer_quality
from query_bench import chroma_name_of, load_test_queries, run_of, run_query_bench, score
from query_bench import section as query_section
from rag_client import Client
from rag_config import IngestSettings
from rag_core.embedding.local import LocalEmbedder
from rag_devstack import NativeStack, StackPorts, create_api_key, free_port
from rag_ingest.chunking import chunk_sections
from rag_ingest.parsing import parse_document
from rag_ingest.worker.pipeline import chunk_header

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "eval" / "scifact" / "corpus.jsonl"
DOC = ROOT / "docs" / "benchmarks.md"
BATCH = 500
BENCH_ADMIN_KEY = "bench-admin-key-for-this-run-only-0123456789"
BENCH_DATA = ROOT / ".dev" / "bench-data"  # models and data the benches keep between runs


@contextmanager
def edge_stack(
    key_name: str, scopes: Sequence[str], **key_options: Any
) -> Iterator[tuple[NativeStack, str]]:
    """A native stack behind nginx (one gateway, two query replicas), its models and data
    under the bench cache, and a key of ``scopes`` made through the admin API (``key_options``:
    as ``Client.create_key`` takes them)."""
    with tempfile.TemporaryDirectory() as where:
        stack = NativeStack(
            Path(where),
            StackPorts.free(),
            env={
                "DATA_DIR": str(BENCH_DATA),
                "LOG_LEVEL": "WARNING",
                "ADMIN_API_KEY": BENCH_ADMIN_KEY,
            },
        )
        with stack:
            stack.start(with_nginx=True, query_replicas=2)
            with Client(stack.edge_url, BENCH_ADMIN_KEY) as admin:
                key = admin.create_key(key_name, list(scopes), **key_options).key
            assert key is not None
            yield stack, key


def load_corpus(limit: int | None) -> list[dict[str, str]]:
    docs = []
    with CORPUS.open() as handle:
        for line in handle:
            row = json.loads(line)
            # Title and text as BEIR gives them: the worker indexes each chunk after its title.
            docs.append({"id": f"scifact-{row['_id']}", "title": row["title"], "text": row["text"]})
            if limit and len(docs) >= limit:
                break
    return docs


def raw_embedder(
    docs: list[dict[str, str]], cache: Path, settings: IngestSettings
) -> dict[str, Any]:
    """The hardware limit: the same model and chunks, with nothing else around."""
    embedder = LocalEmbedder(cache, variant="int8")
    doc_chunks = []
    for doc in docs:
        parsed = parse_document(doc["text"].encode(), content_type="text/plain; charset=utf-8")
        # What the worker embeds (rag_core.chunks.embedded_text): each chunk's text, after its
        # header with CHUNK_HEADER_EMBEDDED.
        texts = []
        for c in chunk_sections(
            parsed.sections,
            embedder.token_spans,
            size=settings.chunk_size_tokens,
            overlap=settings.chunk_overlap_tokens,
            max_chars=settings.chunk_max_chars,
        ):
            header = chunk_header(doc.get("title"), c.heading_path, settings.chunk_header_max_chars)
            embedded = header and settings.chunk_header_embedded
            texts.append(f"{header}\n{c.text}" if embedded else c.text)
        doc_chunks.append((doc["id"], texts))
    chunks = [t for _, texts in doc_chunks for t in texts]
    embedder.embed_sync(chunks[:64])  # warm-up
    started, cpu_started = time.perf_counter(), time.process_time()
    vectors = embedder.embed_sync(chunks)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    embedder.close()
    return {
        "chunks": len(chunks),
        "seconds": seconds,
        "cpu_seconds": cpu,
        "chunks_per_s": len(chunks) / seconds,
        "doc_chunks": doc_chunks,
        "vectors": vectors,
    }


def embedder_quality(raw: dict[str, Any], cache: Path, settings: IngestSettings) -> dict[str, Any]:
    """Dense retrieval with the int8 model (what we ship) against fp32, exhaustively over the
    very same chunks, in-process: what quantization costs in quality and buys in speed."""
    queries, qrels = load_test_queries(CORPUS.parent)
    owners = [doc_id for doc_id, texts in raw["doc_chunks"] for _ in texts]
    chunks = [t for _, texts in raw["doc_chunks"] for t in texts]
    fp32 = LocalEmbedder(cache, variant="fp32")
    int8 = LocalEmbedder(cache, variant="int8")
    try:
        fp32.embed_sync(chunks[:64])
        started = time.perf_counter()
        fp32_vectors = fp32.embed_sync(chunks)
        fp32_rate = len(chunks) / (time.perf_counter() - started)
        out: dict[str, Any] = {"chunks_per_s": {"int8": raw["chunks_per_s"], "fp32": fp32_rate}}
        for variant, embedder, vectors in (
            ("int8", int8, raw["vectors"]),
            ("fp32", fp32, fp32_vectors),
        ):
            asked = embedder.embed_sync(list(queries.values()))
            scores = asked @ vectors.T
            run = []
            for row, query_id in enumerate(queries):
                ranked = np.argsort(-scores[row], kind="stable")[:300]
                run += run_of(query_id, [owners[i] for i in ranked])
            out[variant] = score(qrels, run)
        return out
    finally:
        fp32.close()
        int8.close()


def wait_settled(stack: NativeStack, names: list[str], timeout: float = 300) -> None:
    """Until ``names`` are idle (under 5% of a core for two seconds running): the query
    replicas have indexed what the worker wrote, Chroma has flushed it. What they spend on it
    belongs to the ingest."""
    deadline, quiet = time.perf_counter() + timeout, 0
    while quiet < 2 and time.perf_counter() < deadline:
        before = sum(cpu_seconds(stack.processes[n].pid) for n in names)
        time.sleep(1.0)
        used = sum(cpu_seconds(stack.processes[n].pid) for n in names) - before
        quiet = quiet + 1 if used < 0.05 else 0


def end_to_end(
    docs: list[dict[str, str]],
    cache: Path,
    workers: int,
    concurrency: int,
    *,
    raw: dict[str, Any] | None,
    synthetic: tuple[int, ...] = scale.SIZES,
) -> dict[str, Any]:
    """Ingest ``docs`` through a fresh native stack with ``workers`` workers. With ``raw`` (the
    raw embedder's chunks and vectors), the query side too, on the same stack: the peer
    pipeline's ingest into the same Chroma, quality and latency, the load sweep, and scale."""
    query = raw is not None
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
                # As `make dev` runs it: nginx, the gateway and two query replicas.
                stack.start(
                    services=["ingest", "query", "gateway"], with_nginx=True, query_replicas=2
                )
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
            # Every process of the stack is charged for the ingest: what it spends from here on
            # (start-up is not a cost per chunk). The query replicas index every chunk too.
            names = [n for n in stack.processes if n != "nginx"]
            cpu_before = {name: cpu_seconds(stack.processes[name].pid) for name in names}
            idle_rss = {name: rss_mb(stack.processes[name].pid) for name in names}
            started = time.perf_counter()
            for start in range(0, len(docs), BATCH):
                response = http.post(
                    "/v1/collections/scifact/documents",
                    json={"documents": docs[start : start + BATCH]},
                )
                response.raise_for_status()
            accepted = time.perf_counter() - started
            timeline: list[tuple[float, int]] = []
            while True:
                time.sleep(0.5)
                collection = http.get("/v1/collections/scifact").json()
                timeline.append((time.perf_counter() - started, collection["document_count"]))
                if collection["document_count"] >= len(docs):
                    break
                failed = http.get(
                    "/v1/jobs", params={"collection": "scifact", "state": "failed"}
                ).json()["jobs"]
                if failed:
                    raise SystemExit(f"a job failed: {failed[0]}")
            seconds = time.perf_counter() - started
            wait_settled(stack, [n for n in names if n.startswith(("query", "chroma"))])
            cpu = {
                name: cpu_seconds(stack.processes[name].pid) - cpu_before[name] for name in names
            }
            stages = job_stages(http)
            result: dict[str, Any] = {
                "workers": workers,
                "documents": len(docs),
                "chunks": collection["chunk_count"],
                "seconds": seconds,
                "accept_seconds": accepted,
                "chunks_per_s": collection["chunk_count"] / seconds,
                "docs_per_s": len(docs) / seconds,
                "stage_seconds": stages,
                "cpu_seconds": cpu,
                "idle_rss_mb": idle_rss,
                "timeline": timeline,
            }
            if raw is not None:
                result.update(
                    query_side(stack, docs, cache, raw, collection["chunk_count"], synthetic)
                )
            if "nginx" in stack.processes:
                names.append("nginx")
            result["peak_rss_mb"] = {name: peak_rss_mb(stack.processes[name].pid) for name in names}
        return result


def job_stages(http: httpx.Client) -> dict[str, float]:
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
            return stages


def query_side(
    stack: NativeStack,
    docs: list[dict[str, str]],
    cache: Path,
    raw: dict[str, Any],
    chunks: int,
    synthetic: tuple[int, ...],
) -> dict[str, Any]:
    """Ours first (quality, latency, load, scale), then the peer: its ingest into the same
    Chroma, then its retriever, so neither's background work lands in the other's figures."""
    settings = IngestSettings(_env_file=None)
    print("query benchmarks...", flush=True)
    time.sleep(2)  # the lexical index follows within a second
    # An API key for the load; the stack's rate limit is set high enough for any benchmark.
    key = create_api_key(stack.edge_url, BENCH_ADMIN_KEY, ["query:read"], "bench")
    queried = run_query_bench(
        stack.api_url("query"),
        "scifact",
        CORPUS.parent,
        cache,
        stack.ports.chroma,
        chroma_name_of(stack.redis_url, "scifact"),
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
        chroma_name_of(stack.redis_url, "scifact"),
    )
    # No synthetic growth (--no-scale): no subsets either, the whole corpus only.
    subsets: tuple[int, ...] = scale.SUBSETS if synthetic else ()
    print("scale...", flush=True)
    stack_settings = IngestSettings(
        _env_file=None,
        redis_url=stack.redis_url,
        chroma_host="127.0.0.1",
        chroma_port=stack.ports.chroma,
    )
    grown = scale.query_growth(
        stack_settings,
        stack,
        ("scifact", chunks),
        raw["doc_chunks"],
        raw["vectors"],
        queries,
        subsets=subsets,
        sizes=synthetic,
    )
    print("peer pipeline (LlamaIndex) into the same Chroma...", flush=True)
    peer_ingest = peer.ingest(
        docs,
        cache / "models",
        stack.ports.chroma,
        chunk_size=settings.chunk_size_tokens,
        overlap=settings.chunk_overlap_tokens,
        batch_size=settings.embed_batch_size,
    )
    print(
        f"  {peer_ingest['chunks']} chunks, {peer_ingest['chunks_per_s']:.1f} chunks/s", flush=True
    )
    time.sleep(5)  # let Chroma finish indexing what the peer wrote
    retriever = peer.PeerRetriever(cache / "models", stack.ports.chroma)
    add_peer_quality(queried, CORPUS.parent, retriever)
    add_peer_load(loaded, queries, retriever)
    return {"peer": peer_ingest, "query": queried, "load": loaded, "scale": grown}


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


def write_section(raw: dict[str, Any], runs: list[dict[str, Any]], args: argparse.Namespace) -> str:
    first = runs[0]
    stages = first["stage_seconds"]
    total_stage = sum(stages.values()) or 1.0
    lines = [
        "<!-- ingest:begin -->",
        "## Ingest throughput (BEIR SciFact)",
        "",
        f"{measured_on()};",
        f"`make bench` (`python bench/ingest_throughput.py --limit {args.limit or 0} "
        f"--workers {args.workers} --concurrency {args.concurrency}`; {first['documents']} "
        "documents). Model all-MiniLM-L6-v2 int8 on onnxruntime (CPU), each chunk in a run of its "
        "own (unpadded), chunks of at "
        "most 200 tokens with 40 overlapping.",
        "",
        "| path | chunks | seconds | chunks/s | docs/s | vs raw | vs peer |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| raw embedder, same chunks, in-process | {raw['chunks']} | {raw['seconds']:.1f} | "
        f"{raw['chunks_per_s']:.1f} | - | 100% | - |",
    ]
    peer_run = first.get("peer")
    for run in runs:
        ratio = run["chunks_per_s"] / raw["chunks_per_s"]
        versus = f"{run['chunks_per_s'] / peer_run['chunks_per_s']:.2f}x" if peer_run else "-"
        lines.append(
            f"| end to end: API -> Redis queue -> {run['workers']} worker(s) -> Chroma "
            f"| {run['chunks']} | {run['seconds']:.1f} | {run['chunks_per_s']:.1f} "
            f"| {run['docs_per_s']:.1f} | {ratio:.0%} | {versus} |"
        )
    if peer_run:
        lines.append(
            "| peer: LlamaIndex `IngestionPipeline` (`SentenceSplitter`, same ONNX model) -> "
            f"`ChromaVectorStore` | {peer_run['chunks']} | {peer_run['seconds']:.1f} "
            f"| {peer_run['chunks_per_s']:.1f} | {peer_run['docs_per_s']:.1f} "
            f"| {peer_run['chunks_per_s'] / raw['chunks_per_s']:.0%} | 1.00x |"
        )
    ratio = first["chunks_per_s"] / raw["chunks_per_s"]
    lines += [
        "",
        f"End to end with one worker reaches **{ratio:.0%}** of the raw embedder's chunks/s "
        f"(target: at least 90%{'' if ratio >= 0.9 else '; not met'})"
        + (
            f" and **{first['chunks_per_s'] / peer_run['chunks_per_s']:.2f}x** the peer pipeline's"
            if peer_run
            else ""
        )
        + f". Accepting all documents took {first['accept_seconds']:.1f} s. The peer runs in "
        "one process with nothing else to do: no API, queue, job records, retries, versions "
        "or lexical index; its splitter counts tokens with the same tokenizer.",
        "",
        "Time inside jobs by stage, one worker (summed over jobs that run concurrently, so it "
        "exceeds the wall time): "
        + ", ".join(
            f"{k} {v:.1f} s ({v / total_stage:.0%})"
            for k, v in sorted(stages.items(), key=lambda kv: -kv[1])
        )
        + ".",
        "",
    ]
    for run in runs:
        lines.append(
            f"- {run['workers']} worker(s): peak resident memory (VmHWM, with child processes) "
            + ", ".join(f"{k} {v:.0f} MiB" for k, v in run["peak_rss_mb"].items())
            + "; CPU time (user + system) "
            + ", ".join(f"{k} {v:.0f} s" for k, v in run["cpu_seconds"].items())
            + "."
        )
    lines += [
        f"- The raw embedder used {raw['cpu_seconds']:.0f} CPU-s.",
        "<!-- ingest:end -->",
    ]
    return "\n".join(lines)


def quantization_section(result: dict[str, Any], header: str) -> str:
    rate = result["chunks_per_s"]
    lines = [
        "<!-- quantization:begin -->",
        "## int8 quantization against fp32",
        "",
        header,
        "",
        "Dense retrieval over the same chunks, exhaustive (no HNSW), in-process; the int8 "
        "model is what RAG Engine ships (dynamic quantization of the MatMul weights).",
        "",
        "| model | nDCG@10 | Recall@10 | Recall@100 | MRR@10 | embedding chunks/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for variant in ("fp32", "int8"):
        q = result[variant]
        lines.append(
            f"| all-MiniLM-L6-v2 {variant} | {q['nDCG@10']:.4f} | {q['R@10']:.4f} "
            f"| {q['R@100']:.4f} | {q['RR@10']:.4f} | {rate[variant]:.1f} |"
        )
    lines += [
        "",
        f"int8 changes nDCG@10 by {result['int8']['nDCG@10'] - result['fp32']['nDCG@10']:+.4f} "
        f"and embeds {rate['int8'] / rate['fp32']:.2f}x as fast.",
        "<!-- quantization:end -->",
    ]
    return "\n".join(lines)


def replace_section(text: str, name: str, section: str) -> str:
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if begin in text:
        head, rest = text.split(begin, 1)
        return head + section + rest.split(end, 1)[1]
    return text.rstrip() + "\n\n" + section + "\n"


def measured_on() -> str:
    """When, on what and at which commit a section's figures were measured."""
    return f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}; commit `{commit()}`"


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
    parser.add_argument(
        "--workers", default="1,2", help="worker counts to ingest with, one run each (1,2)"
    )
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--data-dir", default=str(BENCH_DATA))
    parser.add_argument(
        "--no-query", action="store_true", help="skip everything after the first ingest"
    )
    parser.add_argument(
        "--fp32",
        action="store_true",
        help="also compare the int8 model with fp32 (5 more minutes: embeds the corpus again)",
    )
    parser.add_argument(
        "--load-seconds", type=int, default=load.SECONDS, help="seconds per load level"
    )
    parser.add_argument(
        "--no-scale",
        action="store_true",
        help="skip the synthetic growth (about 100 minutes); the Scale section stays as recorded",
    )
    parser.add_argument(
        "--synthetic-chunks",
        default=",".join(str(n) for n in scale.SIZES),
        help="sizes the synthetic collection grows to, in turn (chunks)",
    )
    args = parser.parse_args()
    # SIGTERM ends the run like Ctrl-C: the stack's `with` block stops every process it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    load.SECONDS = args.load_seconds
    began = time.perf_counter()
    docs = load_corpus(args.limit)
    cache = Path(args.data_dir)
    settings = IngestSettings(_env_file=None)
    print(f"raw embedder on {len(docs)} documents...", flush=True)
    raw = raw_embedder(docs, cache / "models", settings)
    print(f"  {raw['chunks']} chunks, {raw['chunks_per_s']:.1f} chunks/s", flush=True)
    quantized = None
    if args.fp32:
        print("int8 against fp32...", flush=True)
        quantized = embedder_quality(raw, cache / "models", settings)
    runs = []
    for n, workers in enumerate(int(w) for w in args.workers.split(",")):
        print(f"end to end, {workers} worker(s)...", flush=True)
        with_query = n == 0 and not args.no_query
        run = end_to_end(
            docs,
            cache,
            workers,
            args.concurrency,
            raw=raw if with_query else None,
            synthetic=()
            if args.no_scale
            else tuple(int(n) for n in args.synthetic_chunks.split(",")),
        )
        print(
            f"  {run['chunks']} chunks, {run['chunks_per_s']:.1f} chunks/s "
            f"({run['chunks_per_s'] / raw['chunks_per_s']:.0%} of raw)",
            flush=True,
        )
        runs.append(run)
    section = write_section(raw, runs, args)
    text = replace_section(DOC.read_text() if DOC.exists() else "# Benchmarks\n", "ingest", section)
    sections = [section]
    header = (
        f"{measured_on()}; the same run and stack as the ingest figures above "
        f"({runs[0]['documents']} documents, {runs[0]['chunks']} chunks), native stack: "
        "nginx, the gateway and two query replicas, as `make dev` runs them (rows marked "
        "direct: one replica)."
    )
    if quantized is not None:
        sections.append(
            quantization_section(
                quantized,
                f"{measured_on()}; `make bench BENCH_ARGS=--fp32`, on the chunks of the ingest run "
                "above.",
            )
        )
        text = replace_section(text, "quantization", sections[-1])
    first = runs[0]
    if "query" in first:
        sections.append(query_section(first["query"], header))
        text = replace_section(text, "query", sections[-1])
        plot(first["load"], ROOT / "docs" / "img" / "query-load.png")
        sections.append(load_section(first["load"], header, "img/query-load.png"))
        text = replace_section(text, "load", sections[-1])
        carried: list[str] = []
        if args.no_scale:
            # The memory and start-up rows come from the run that wrote the Scale section.
            carried = goals.carried_rows(text)
        else:
            growth = {
                f"{run['workers']} worker(s)": scale.ingest_growth(run["timeline"]) for run in runs
            }
            scale.plot(growth, first["scale"], ROOT / "docs" / "img" / "scale.png")
            sections.append(scale.section(growth, first["scale"], header, "img/scale.png"))
            text = replace_section(text, "scale", sections[-1])
        sections.append(goals.section(raw, first, header.replace("above", "below"), carried))
        text = replace_section(text, "goals", sections[-1])
    DOC.write_text(text)
    print("\n\n".join(sections))
    print(summary(raw, runs, quantized))
    print(f"make bench took {(time.perf_counter() - began) / 60:.1f} minutes", flush=True)
    sys.exit(0)


def summary(
    raw: dict[str, Any], runs: list[dict[str, Any]], quantized: dict[str, Any] | None
) -> str:
    """The few figures that matter, for the terminal."""
    first = runs[0]
    rows = [("raw embedder chunks/s", f"{raw['chunks_per_s']:.1f}")]
    for run in runs:
        rows.append(
            (
                f"ingest chunks/s, {run['workers']} worker(s)",
                f"{run['chunks_per_s']:.1f} "
                f"({run['chunks_per_s'] / raw['chunks_per_s']:.0%} of raw)",
            )
        )
    if "peer" in first:
        rows.append(("peer pipeline chunks/s", f"{first['peer']['chunks_per_s']:.1f}"))
    if "query" in first:
        q = first["query"]
        for key in ("lexical", "dense", "hybrid", "hybrid+mmr", "peer"):
            if key in q["quality"]:
                rows.append((f"nDCG@10 {key}", f"{q['quality'][key]['nDCG@10']:.4f}"))
        rows.append(("search dense p50 ms", f"{q['latency']['search dense']['p50']:.1f}"))
        rows.append(("raw limit p50 ms", f"{q['raw']['p50']:.1f}"))
        if "peer_latency" in q:
            rows.append(("peer retriever p50 ms", f"{q['peer_latency']['p50']:.1f}"))
        edge = q["latency"].get("search dense, through nginx + gateway")
        if edge:
            rows.append(
                (
                    "gateway + nginx add, ms",
                    f"{edge['p50'] - q['latency']['search dense']['p50']:.1f}",
                )
            )
    if quantized is not None:
        rows.append(
            (
                "nDCG@10 dense fp32 / int8 (exhaustive)",
                f"{quantized['fp32']['nDCG@10']:.4f} / {quantized['int8']['nDCG@10']:.4f}",
            )
        )
    width = max(len(name) for name, _ in rows)
    return "\n".join(["", "summary", *(f"  {name:<{width}}  {value}" for name, value in rows)])


if __name__ == "__main__":
    main()
