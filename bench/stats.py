"""Latency statistics shared by the benchmarks."""

from __future__ import annotations

import statistics


def summarize(samples: list[float], elapsed: float) -> dict[str, float]:
    """Latency percentiles (ms) and throughput of a closed-loop run that took ``elapsed`` s."""
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {
        "requests": len(samples),
        "errors": 0,
        "rps": len(samples) / elapsed,
        "p50": cuts[49],
        "p95": cuts[94],
        "p99": cuts[98],
        "mean": statistics.fmean(samples),
    }
