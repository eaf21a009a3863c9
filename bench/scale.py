"""Scale: how ingest time and query latency grow with the collection.

Ingest growth comes from the full run's own timeline (documents done against time). Query
growth is measured on collections of increasing size: the first 1,000 SciFact documents, the
whole corpus, and synthetic collections of 50k and 100k chunks. Embedding 100k chunks would
take this machine 20 minutes, so these collections are bulk-loaded with vectors the raw
embedder already computed (synthetic chunks: real chunks with words shuffled and vectors
jittered), through the very store calls the worker makes after embedding: chunks into Chroma,
then the version switch in Redis, which the query replicas follow like any ingest."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
from numpy.typing import NDArray
from procs import disk_mb, rss_mb
from rag_config import IngestSettings
from rag_core.catalog import DEFAULT_NAMESPACE, CollectionCatalog, DocumentRecord, Keys
from rag_core.chroma import ChromaClient
from rag_core.chunks import ChromaChunkStore, StoredChunk, chunk_id, version_tag
from rag_devstack import NativeStack, free_port, http_ok
from rag_ingest.versions import Cleanup, DocumentStore
from redis.asyncio import Redis
from stats import summarize

CHUNKS_PER_SYNTHETIC_DOC = 4
WRITE_BATCH = 1000
T = TypeVar("T")
SIZES = (100_000, 300_000, 1_000_000)


async def bulk_load(
    settings: IngestSettings,
    collection: str,
    docs: list[tuple[str, list[str]]],
    vectors: NDArray[np.float32],
) -> None:
    """Store ``docs`` (id, chunk texts) with ``vectors`` (one per chunk, in order) as the worker
    would once it has embedded them."""
    redis = Redis.from_url(settings.redis_url.get_secret_value())
    chroma = ChromaClient(settings, settings)
    chunks = ChromaChunkStore(chroma)
    keys = Keys(settings.redis_prefix)
    store = DocumentStore(redis, keys)
    try:
        found = await CollectionCatalog(redis, keys).get(DEFAULT_NAMESPACE, collection)
        row = 0
        pending: list[tuple[str, str, int, str]] = []  # document, tag, position, text
        records: list[DocumentRecord] = []
        sequences = await _gathered(
            [store.next_sequence(DEFAULT_NAMESPACE, collection, d) for d, _ in docs]
        )
        for (doc_id, texts), sequence in zip(docs, sequences, strict=True):
            tag = version_tag(sequence)
            pending += [(doc_id, tag, i, t) for i, t in enumerate(texts)]
            records.append(
                DocumentRecord(
                    id=doc_id,
                    version=0,
                    tag=tag,
                    content_hash=f"bulk-{doc_id}",
                    version_hash=f"bulk-{doc_id}-{tag}",
                    chunk_count=len(texts),
                    sequence=sequence,
                )
            )
            if len(pending) >= WRITE_BATCH or doc_id == docs[-1][0]:
                await chunks.write(
                    found.chroma_id,
                    [
                        StoredChunk(chunk_id(d, v, i), d, v, i, t, content_hash=f"bulk-{d}")
                        for d, v, i, t in pending
                    ],
                    vectors[row : row + len(pending)],
                )
                row += len(pending)

                async def switch(record: DocumentRecord) -> None:
                    own = Cleanup(
                        DEFAULT_NAMESPACE,
                        collection,
                        found.chroma_id,
                        record.id,
                        record.tag,
                        "bulk",
                    )
                    await store.reserve_cleanup(own, time.time() + 3600)
                    outcome = await store.switch_to(
                        DEFAULT_NAMESPACE, collection, found.chroma_id, record, own
                    )
                    assert outcome.status == "created", outcome

                await _gathered([switch(record) for record in records])
                pending, records = [], []
    finally:
        await chroma.close()
        await redis.aclose()


async def _gathered(calls: list[Coroutine[Any, Any, T]], at_once: int = 64) -> list[T]:
    """The results of ``calls``, at most ``at_once`` of them waiting on Redis at a time (as
    many jobs of a worker would)."""
    gate = asyncio.Semaphore(at_once)

    async def one(call: Coroutine[Any, Any, T]) -> T:
        async with gate:
            return await call

    return list(await asyncio.gather(*(one(c) for c in calls)))


def synthetic(
    chunks: list[str],
    vectors: NDArray[np.float32],
    total: int,
    seed: int = 7,
    first_doc: int = 0,
) -> tuple[list[tuple[str, list[str]]], NDArray[np.float32]]:
    """``total`` chunks made from the real ones: words shuffled, vectors jittered (then
    normalised), so no two are equal and both indexes see a realistic vocabulary."""
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    noise = np.random.default_rng(seed)
    picks = [rng.randrange(len(chunks)) for _ in range(total)]
    texts = []
    for n in picks:
        words = chunks[n].split()
        rng.shuffle(words)
        texts.append(" ".join(words))
    jittered = vectors[picks] + noise.normal(0, 0.03, (total, vectors.shape[1])).astype(np.float32)
    jittered /= np.linalg.norm(jittered, axis=1, keepdims=True)
    docs = [
        (
            f"synthetic-{first_doc + start // CHUNKS_PER_SYNTHETIC_DOC}",
            texts[start : start + CHUNKS_PER_SYNTHETIC_DOC],
        )
        for start in range(0, total, CHUNKS_PER_SYNTHETIC_DOC)
    ]
    return docs, jittered


def wait_indexed(query_url: str, collection: str, marker: str, timeout: float = 600) -> float:
    """Seconds until a lexical search finds ``marker``, a word only the last chunk loaded
    holds: the replica's index has followed the whole bulk load."""
    started = time.perf_counter()
    with httpx.Client(base_url=query_url, timeout=60) as http:
        while time.perf_counter() - started < timeout:
            found = http.post(
                f"/v1/collections/{collection}/search",
                json={"query": marker, "mode": "lexical", "top_k": 1},
            )
            if found.status_code == 200 and found.json()["results"]:
                return time.perf_counter() - started
            time.sleep(0.5)
    raise SystemExit(f"the query replica did not index {collection} within {timeout} s")


def latency_at(query_url: str, collection: str, queries: list[str]) -> dict[str, dict[str, float]]:
    out = {}
    with httpx.Client(base_url=query_url, timeout=60) as http:
        http.post(f"/v1/collections/{collection}/search", json={"query": "warm up"})
        for mode in ("dense", "hybrid"):
            samples = []
            began = time.perf_counter()
            for text in queries:
                started = time.perf_counter()
                response = http.post(
                    f"/v1/collections/{collection}/search",
                    json={"query": text, "mode": mode, "top_k": 10},
                )
                samples.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
            out[mode] = summarize(samples, time.perf_counter() - began)
    return out


SUBSETS = (1000, 3000)  # the first N SciFact documents, each its own collection


def query_growth(
    settings: IngestSettings,
    stack: NativeStack,
    full: tuple[str, int],
    doc_chunks: list[tuple[str, list[str]]],
    vectors: NDArray[np.float32],
    queries: list[str],
    subsets: tuple[int, ...] = SUBSETS,
    sizes: tuple[int, ...] = SIZES,
) -> list[dict[str, Any]]:
    """Search latency on the first ``subsets`` documents, the full corpus (``full``: its
    collection and chunk count, ingested by the worker), then one synthetic collection grown
    to each of ``sizes`` chunks in turn: at each size the query replica's and Chroma's memory
    and Chroma's disk too, and at the largest the start-up of a fresh query replica."""
    ingest_url, query_url = stack.api_url("ingest"), stack.api_url("query")
    results = []
    with httpx.Client(base_url=ingest_url, timeout=120) as http:
        for count in subsets:
            first = doc_chunks[:count]
            used = sum(len(c) for _, c in first)
            name = f"scale-{count}"
            assert http.post("/v1/collections", json={"name": name}).status_code == 201
            row = _grow(settings, query_url, name, first, vectors[:used], queries)
            row.update(label=f"first {count:,} SciFact documents", chunks=used)
            results.append(row)
            http.delete(f"/v1/collections/{name}")
        measured = latency_at(query_url, full[0], queries)
        results.append(
            {
                "collection": full[0],
                "label": "whole SciFact corpus (ingested by the worker)",
                "chunks": full[1],
                "load_seconds": 0.0,
                "index_seconds": 0.0,
                "latency": measured,
            }
        )
        name, loaded = "scale-synthetic", 0
        assert http.post("/v1/collections", json={"name": name}).status_code == 201
        all_chunks = [t for _, texts in doc_chunks for t in texts]
        for step, size in enumerate(sizes):
            made, jittered = synthetic(
                all_chunks,
                vectors,
                size - loaded,
                seed=7 + step,
                first_doc=loaded // CHUNKS_PER_SYNTHETIC_DOC,
            )
            row = _grow(settings, query_url, name, made, jittered, queries)
            del made, jittered
            loaded = size
            row.update(
                label=f"synthetic, {size:,} chunks",
                chunks=size,
                query_rss_mb=rss_mb(stack.processes["query"].pid),
                chroma_rss_mb=rss_mb(stack.processes["chroma"].pid),
                chroma_disk_mb=disk_mb(stack.workdir / "data" / "chroma"),
            )
            results.append(row)
        results[-1]["fresh_replica"] = fresh_replica(stack)
        http.delete(f"/v1/collections/{name}")
    return results


def _grow(
    settings: IngestSettings,
    query_url: str,
    name: str,
    docs: list[tuple[str, list[str]]],
    rows: NDArray[np.float32],
    queries: list[str],
) -> dict[str, Any]:
    """Bulk-load ``docs`` into ``name``, wait for the replica's index, measure searches."""
    marker = f"bulkmarker{len(rows)}x{time.monotonic_ns()}"
    last_id, last_texts = docs[-1]
    marked = [*docs[:-1], (last_id, [*last_texts[:-1], f"{last_texts[-1]} {marker}"])]
    started = time.perf_counter()
    asyncio.run(bulk_load(settings, name, marked, rows))
    loaded = time.perf_counter() - started
    indexed = wait_indexed(query_url, name, marker, timeout=3600)
    measured = latency_at(query_url, name, queries)
    print(
        f"  {name} +{len(rows)} chunks: load {loaded:.0f} s, indexed after {indexed:.1f} s, "
        f"dense p50 {measured['dense']['p50']:.1f} ms, "
        f"hybrid p50 {measured['hybrid']['p50']:.1f} ms",
        flush=True,
    )
    return {
        "collection": name,
        "load_seconds": loaded,
        "index_seconds": indexed,
        "latency": measured,
    }


def fresh_replica(stack: NativeStack, timeout: float = 3600) -> dict[str, float]:
    """A query replica started now, beside the collections as they are: seconds until it is
    ready (every collection indexed), and its resident memory then."""
    health = free_port()
    started = time.perf_counter()
    replica = stack.start_service(
        "query", {"PORT": str(free_port()), "HEALTH_PORT": str(health)}, name="query-fresh"
    )
    replica.wait_until(
        lambda: http_ok(f"http://127.0.0.1:{health}/ready"), timeout=timeout, what="ready"
    )
    seconds = time.perf_counter() - started
    memory = rss_mb(replica.pid)
    replica.stop()
    print(f"  a fresh query replica was ready after {seconds:.1f} s, {memory:.0f} MiB", flush=True)
    return {"ready_seconds": seconds, "rss_mb": memory}


def fit_linear(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Least squares y = a + b x: (a, b, R²)."""
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    b, a = np.polyfit(x, y, 1)
    predicted = a + b * x
    total = float(((y - y.mean()) ** 2).sum()) or 1.0
    return float(a), float(b), 1.0 - float(((y - predicted) ** 2).sum()) / total


def fit_power(xs: list[float], ys: list[float]) -> float:
    """The exponent k of y ∝ x^k (least squares in log-log)."""
    k, _ = np.polyfit([math.log(v) for v in xs], [math.log(v) for v in ys], 1)
    return float(k)


def ingest_growth(timeline: list[tuple[float, int]], step: int = 500) -> list[tuple[int, float]]:
    """(documents done, seconds since the first was posted) at every ``step`` documents."""
    points, mark = [], step
    for seconds, done in timeline:
        while done >= mark:
            points.append((mark, seconds))
            mark += step
    if timeline and (not points or points[-1][0] != timeline[-1][1]):
        points.append((timeline[-1][1], timeline[-1][0]))
    return points


def plot(
    growth: dict[str, list[tuple[int, float]]], queries: list[dict[str, Any]], path: Path
) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, (ingest, search) = plt.subplots(1, 2, figsize=(13, 5))
    for label, points in growth.items():
        ingest.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=label)
    ingest.set_xlabel("documents ingested")
    ingest.set_ylabel("seconds since the first was posted")
    ingest.set_title("ingest time against corpus size")
    ingest.grid(alpha=0.3)
    ingest.legend(fontsize=8)
    sizes = [q["chunks"] for q in queries]
    for mode in ("dense", "hybrid"):
        search.plot(
            sizes, [q["latency"][mode]["p50"] for q in queries], marker="o", label=f"{mode} p50"
        )
        search.plot(
            sizes,
            [q["latency"][mode]["p95"] for q in queries],
            ":",
            marker="x",
            label=f"{mode} p95",
        )
    search.set_xscale("log")
    search.set_xlabel("chunks in the collection (log)")
    search.set_ylabel("ms, one request at a time")
    search.set_title("search latency against collection size")
    search.grid(alpha=0.3)
    search.legend(fontsize=8)
    figure.suptitle("Scale on BEIR SciFact and synthetic collections (2 cores)")
    figure.tight_layout(rect=(0, 0, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def section(
    growth: dict[str, list[tuple[int, float]]],
    queries: list[dict[str, Any]],
    header: str,
    image: str,
) -> str:
    lines = [
        "<!-- scale:begin -->",
        "## Scale",
        "",
        header,
        "",
        "Ingest time against corpus size "
        "(from each run's own timeline; least-squares fit `seconds = a + b * documents`):",
        "",
        "| run | documents | seconds | fitted s per 1,000 docs | R² |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, points in growth.items():
        _, b, r2 = fit_linear([p[0] for p in points], [p[1] for p in points])
        lines.append(
            f"| {label} | {points[-1][0]} | {points[-1][1]:.1f} | {b * 1000:.1f} | {r2:.3f} |"
        )
    lines += [
        "",
        "Search latency (direct to the query replica, one request at a time, the 300 test "
        "queries; ms):",
        "",
        "| collection | chunks | bulk load s | indexed by the replica after s | dense p50 / p95 "
        "| hybrid p50 / p95 | query replica MiB | Chroma MiB | Chroma disk MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for q in queries:
        d, h = q["latency"]["dense"], q["latency"]["hybrid"]
        load = f"{q['load_seconds']:.1f}" if q["load_seconds"] else "-"
        indexed = f"{q['index_seconds']:.1f}" if q["load_seconds"] else "-"
        memory = " | ".join(
            f"{q[k]:,.0f}" if k in q else "-"
            for k in ("query_rss_mb", "chroma_rss_mb", "chroma_disk_mb")
        )
        lines.append(
            f"| {q['label']} | {q['chunks']:,} | {load} | {indexed} | {d['p50']:.1f} / "
            f"{d['p95']:.1f} | {h['p50']:.1f} / {h['p95']:.1f} | {memory} |"
        )
    grown = [q for q in queries if "query_rss_mb" in q]
    if len(grown) >= 2:
        sizes = [float(q["chunks"]) for q in grown]
        per = {
            k: fit_linear(sizes, [q[k] for q in grown])[1] * 1024
            for k in ("query_rss_mb", "chroma_rss_mb", "chroma_disk_mb")
        }
        lines += [
            "",
            "Per chunk, fitted over the synthetic sizes (least squares, the slope of each "
            f"column against chunks): a query replica holds {per['query_rss_mb']:.2f} KiB, "
            f"Chroma {per['chroma_rss_mb']:.2f} KiB in memory and {per['chroma_disk_mb']:.2f} "
            "KiB on disk (a 384-dimension float32 vector alone is 1.5 KiB).",
        ]
    fresh = queries[-1].get("fresh_replica")
    if fresh:
        everything = (
            sum(q["chunks"] for q in queries if q["collection"] == "scifact")
            + (queries[-1]["chunks"])
        )
        lines += [
            "",
            f"Start-up: a query replica started beside these collections ({everything:,} "
            f"chunks in all) was ready, its lexical index built, after "
            f"{fresh['ready_seconds']:.1f} s, holding {fresh['rss_mb']:,.0f} MiB.",
        ]
    sizes = [q["chunks"] for q in queries]
    exponents = {
        mode: fit_power(sizes, [q["latency"][mode]["p50"] for q in queries])
        for mode in ("dense", "hybrid")
    }
    lines += [
        "",
        "Fitted growth of p50 with collection size (`p50 ∝ chunks^k`): "
        f"dense k = {exponents['dense']:.2f}, hybrid k = {exponents['hybrid']:.2f} "
        "(k = 1 would be linear; HNSW search is close to logarithmic, BM25 scoring touches "
        "every chunk holding a query term).",
        "",
        f"![ingest time and search latency against size]({image})",
        "<!-- scale:end -->",
    ]
    return "\n".join(lines)
