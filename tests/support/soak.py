"""A bounded mixed load through nginx: searches (dense and hybrid), streamed answers and small
ingests at a fixed rate, for a fixed time; with every status, latency, and the resident memory
of every service sampled after a warm-up and at the end. Used by the 30-second soak test in
`make test` (errors and memory only) and by `make soak` (SOAK_SECONDS; latency budget too)."""

from __future__ import annotations

import itertools
import random
import statistics
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.query import read_sse

# Share of requests per kind.
MIX = (("search dense", 0.35), ("search hybrid", 0.35), ("answer stream", 0.2), ("ingest", 0.1))
QUESTIONS = (
    "Which receptor does the enzyme bind?",
    "What happens in the tissue?",
    "enzyme pathway regulation",
    "Where is the receptor expressed?",
)


@dataclass
class Results:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, status: int, seconds: float, problem: str | None = None) -> None:
        with self.lock:
            self.latencies.setdefault(kind, []).append(seconds * 1000)
            self.statuses[(kind, status)] += 1
            if problem:
                self.failures.append(f"{kind}: {problem}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _one(http: httpx.Client, kind: str, collection: str, results: Results, n: int) -> None:
    question = QUESTIONS[n % len(QUESTIONS)]
    started = time.perf_counter()
    try:
        if kind.startswith("search"):
            response = http.post(
                f"/v1/collections/{collection}/search",
                json={"query": question, "mode": kind.split()[1]},
            )
            status = response.status_code
            problem = None if status == 200 else response.text[:200]
        elif kind == "answer stream":
            with http.stream(
                "POST",
                f"/v1/collections/{collection}/query",
                json={"query": question, "stream": True, "cache": False},
            ) as response:
                status = response.status_code
                events = [e.event for e in read_sse(response.iter_lines())] if status == 200 else []
            problem = None
            if status != 200:
                problem = f"status {status}"
            elif not events or events[-1] != "done":
                problem = f"stream ended with {events[-1:] or 'nothing'}"
        else:
            response = http.post(
                f"/v1/collections/{collection}/documents",
                json={
                    "documents": [
                        {
                            "id": f"soak-{uuid.uuid4().hex[:12]}",
                            "text": f"Soak record {n}: enzyme {n % 50} binds receptor "
                            f"{n % 7} in tissue {n % 13}.",
                        }
                    ]
                },
            )
            status = response.status_code
            problem = None if status == 202 else response.text[:200]
            if status == 202:
                with results.lock:
                    results.jobs.append(response.json()["jobs"][0]["job_id"])
    except httpx.HTTPError as exc:
        status, problem = 0, f"{type(exc).__name__}: {exc}"
    results.record(kind, status, time.perf_counter() - started, problem)


def run(
    edge_url: str,
    headers: dict[str, str],
    collection: str,
    *,
    seconds: float,
    rate: float,
    pids: dict[str, int],
    warmup_fraction: float = 0.3,
    seed: int = 11,
) -> dict[str, Any]:
    """``rate`` requests per second for ``seconds``; memory sampled once ``warmup_fraction`` of
    the time has passed and again at the end."""
    results = Results()
    chooser = random.Random(seed)
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    rss_after_warmup: dict[str, float] = {}
    with (
        httpx.Client(base_url=edge_url, headers=headers, timeout=60) as http,
        ThreadPoolExecutor(max_workers=32) as pool,
    ):
        began = time.monotonic()
        for n in itertools.count():
            due = began + n / rate
            if due - began >= seconds:
                break
            if not rss_after_warmup and due - began >= seconds * warmup_fraction:
                rss_after_warmup = {name: rss_mb(pid) for name, pid in pids.items()}
            time.sleep(max(0.0, due - time.monotonic()))
            kind = chooser.choices(kinds, weights)[0]
            pool.submit(_one, http, kind, collection, results, n)
    elapsed = time.monotonic() - began
    rss_end = {name: rss_mb(pid) for name, pid in pids.items()}
    summary: dict[str, Any] = {
        "seconds": round(elapsed, 1),
        "rate": rate,
        "requests": sum(results.statuses.values()),
        "statuses": {f"{k} {s}": v for (k, s), v in sorted(results.statuses.items())},
        "server_errors": sum(v for (_, s), v in results.statuses.items() if s >= 500 or s == 0),
        "failures": results.failures[:20],
        "latency_ms": {},
        "rss_mb": {
            name: {"after_warmup": round(rss_after_warmup.get(name, 0.0), 1), "end": round(v, 1)}
            for name, v in rss_end.items()
        },
        "jobs": results.jobs,
    }
    for kind, samples in results.latencies.items():
        cuts = (
            statistics.quantiles(samples, n=100, method="inclusive")
            if len(samples) > 1
            else [samples[0]] * 99
        )
        summary["latency_ms"][kind] = {
            "count": len(samples),
            "p50": round(cuts[49], 1),
            "p95": round(cuts[94], 1),
            "p99": round(cuts[98], 1),
        }
    return summary


def growth(rss: dict[str, dict[str, float]]) -> dict[str, float]:
    """Relative RSS growth of each process from after the warm-up to the end."""
    return {
        name: (v["end"] - v["after_warmup"]) / v["after_warmup"]
        for name, v in rss.items()
        if v["after_warmup"] > 0
    }
