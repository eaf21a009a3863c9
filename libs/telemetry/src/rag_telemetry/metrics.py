"""Prometheus metrics shared by every service, multi-process aware."""

from __future__ import annotations

import os

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The classic text format every Prometheus version parses (the web framework adds the charset).
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4"
UNMATCHED_ROUTE = "<unmatched>"

# Latency buckets from 1 ms to 60 s: API calls, streamed answers and uploads all fit.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests served, by route template, method and status code.",
    ["route", "method", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time from request start to the end of the response body.",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge(
    "http_requests_in_flight",
    "HTTP requests being served right now.",
    multiprocess_mode="livesum",
)
BUILD_INFO = Gauge(
    "rag_build_info",
    "Always 1; labels say which service and version this process is.",
    ["service", "version"],
    multiprocess_mode="max",
)


def render_metrics() -> bytes:
    """The Prometheus text exposition of this process, or of all workers when multi-process."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


class WorkerProcessMetrics:
    """process_* metrics of each worker when WORKERS>1, labelled by ``pid``.

    prometheus-client's multi-process collector leaves process metrics out, so each worker
    samples its own (with the stock ProcessCollector) into multi-process gauges.
    """

    def __init__(self) -> None:
        self._collector = ProcessCollector(registry=None)
        self._gauges: dict[str, Gauge] = {}

    def sample(self) -> None:
        for family in self._collector.collect():
            for sample in family.samples:
                gauge = self._gauges.get(sample.name)
                if gauge is None:
                    gauge = Gauge(
                        sample.name, family.documentation, registry=None, multiprocess_mode="all"
                    )
                    self._gauges[sample.name] = gauge
                gauge.set(sample.value)
