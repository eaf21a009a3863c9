"""What a re-embedding costs and what readers see meanwhile (issue 20): SciFact abstracts in a
collection embedded with all-MiniLM-L6-v2 (fp32), moved to all-MiniLM-L6-v2-int8 with
`POST /v1/collections/{c}/reembed` while a reader searches (hybrid) one request after another
through nginx, and a writer adds a document a second. Reports the migration's time and
chunks per second, the search latency before, during and after it, every failed or empty
search, and Chroma's memory before and at the peak (it holds both copies until the switch).
Writes the "reembed" section of docs/benchmarks.md.

    make bench-reembed        (about 13 minutes)
"""

from __future__ import annotations

import statistics
import threading
import time

import httpx
from ingest_throughput import DOC, edge_stack, load_corpus, measured_on, replace_section
from procs import peak_rss_mb, rss_mb
from rag_client import Client

DOCUMENTS = 3000
CALLS = 100  # searches timed before and after the migration
FROM, TO = "all-MiniLM-L6-v2", "all-MiniLM-L6-v2-int8"


def percentiles(samples: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(sorted(samples), n=100, method="inclusive")
    return {"n": len(samples), "p50": cuts[49], "p95": cuts[94], "max": max(samples)}


class Reader:
    """Hybrid searches one after another until stopped; latency, failures and empties."""

    def __init__(self, http: httpx.Client, questions: list[str]) -> None:
        self.http, self.questions = http, questions
        self.samples: list[float] = []
        self.failed: list[str] = []
        self.empty = 0
        self.stop = threading.Event()

    def search(self, question: str) -> None:
        started = time.perf_counter()
        try:
            got = self.http.post(
                "/v1/collections/scifact/search", json={"query": question, "top_k": 5}
            )
        except httpx.HTTPError as exc:
            self.failed.append(f"{type(exc).__name__}: {exc}")
            return
        self.samples.append((time.perf_counter() - started) * 1000)
        if got.status_code != 200:
            self.failed.append(f"{got.status_code} {got.text[:200]}")
        elif not got.json()["results"]:
            self.empty += 1

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            self.search(self.questions[i % len(self.questions)])
            i += 1


def timed(http: httpx.Client, questions: list[str]) -> Reader:
    reader = Reader(http, questions)
    for question in questions[:CALLS]:
        reader.search(question)
    return reader


def main() -> None:
    documents = load_corpus(DOCUMENTS)
    questions = [d["title"] for d in documents[::7]]
    with edge_stack(
        "bench-reembed",
        ["ingest:read", "ingest:write", "query:read"],
        requests_per_minute=1_000_000,  # the readers are not what is measured
    ) as (stack, key):
        auth = {"Authorization": f"Bearer {key}"}
        with (
            Client(stack.edge_url, key) as sdk,
            httpx.Client(base_url=stack.edge_url, headers=auth, timeout=60) as http,
        ):
            sdk.create_collection("scifact", embedding_model=FROM)
            for start in range(0, len(documents), 500):
                accepted = sdk.add_documents("scifact", documents[start : start + 500])
                sdk.wait_jobs(accepted.job_ids, max_seconds=900)
            chunks = sdk.get_collection("scifact").chunk_count
            timed(http, questions)  # warm up
            before = timed(http, questions)
            chroma = stack.processes["chroma"].pid
            chroma_before = rss_mb(chroma)

            during = Reader(http, questions)
            reading = threading.Thread(target=during.run, daemon=True)
            reading.start()
            written: list[str] = []
            job = sdk.reembed_collection("scifact", TO)
            started = time.monotonic()
            while not (job := sdk.get_job(job.id)).finished:
                added = sdk.add_documents(
                    "scifact", [{"id": f"late-{len(written)}", "text": "A late note."}]
                )
                written += added.job_ids
                time.sleep(1.0)
            seconds = time.monotonic() - started
            during.stop.set()
            reading.join(timeout=60)
            assert job.state == "succeeded", job
            chroma_peak = peak_rss_mb(chroma)
            after = timed(http, questions)
            sdk.wait_jobs(written, max_seconds=120)
            kept = sum(
                http.get(f"/v1/collections/scifact/documents/late-{i}").status_code == 200
                for i in range(len(written))
            )
            result = job.result or {}
    embedded = int(result.get("chunks_embedded", 0))
    rows = [("before", before), ("during the migration", during), ("after the switch", after)]
    lines = [
        "<!-- reembed:begin -->",
        f"{measured_on()}; `make bench-reembed`: {DOCUMENTS} SciFact abstracts ({chunks} "
        f"chunks) embedded with {FROM}, moved to {TO} while one reader searched (hybrid, "
        "top 5) one request after another through nginx (one gateway, two query replicas) and "
        "a writer added a document a second.",
        "",
        "| searches | count | p50 ms | p95 ms | max ms | failed | empty |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, reader in rows:
        p = percentiles(reader.samples)
        lines.append(
            f"| {label} | {p['n']} | {p['p50']:.1f} | {p['p95']:.1f} | {p['max']:.1f} | "
            f"{len(reader.failed)} | {reader.empty} |"
        )
    lines += [
        "",
        f"The migration took {seconds:.1f} s: {embedded} chunks embedded again "
        f"({embedded / max(seconds, 1e-9):.0f} chunks/s, on the same two cores as the readers), "
        f"{int(result.get('catch_up_rounds', 0))} catch-up round(s); "
        f"{len(written)} documents written during it, "
        f"{kept} of them in the collection after the switch. Chroma's resident memory: "
        f"{chroma_before:.0f} MiB before, {chroma_peak:.0f} MiB at its peak (both copies "
        "until the switch).",
        "<!-- reembed:end -->",
    ]
    section = "\n".join(lines)
    DOC.write_text(replace_section(DOC.read_text(), "reembed", section))
    print(section)
    if during.failed:
        print("failures:", during.failed[:5])


if __name__ == "__main__":
    main()
