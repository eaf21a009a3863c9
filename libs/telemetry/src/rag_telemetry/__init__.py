"""Logging, tracing and metrics for RAG Engine services: one call per process."""

from __future__ import annotations

from rag_config import ServiceSettings

from rag_telemetry.logs import (
    SecretMasker,
    bind_log_context,
    configure_logging,
    get_logger,
    reset_log_context,
)
from rag_telemetry.metrics import BUILD_INFO, METRICS_CONTENT_TYPE, render_metrics
from rag_telemetry.middleware import REQUEST_ID_HEADER, current_request_id, instrument_app
from rag_telemetry.tracing import (
    configure_tracing,
    continue_trace,
    current_traceparent,
    shutdown_tracing,
)


def setup_telemetry(service: str, settings: ServiceSettings, *, version: str) -> None:
    """Configure logs, traces and the build-info metric for this process."""
    configure_logging(
        service,
        level=settings.log_level,
        log_format=settings.log_format,
        secrets=settings.secret_values(),
    )
    configure_tracing(service, version=version, otlp_endpoint=settings.otel_exporter_otlp_endpoint)
    BUILD_INFO.labels(service=service, version=version).set(1)


__all__ = [
    "METRICS_CONTENT_TYPE",
    "REQUEST_ID_HEADER",
    "SecretMasker",
    "bind_log_context",
    "configure_logging",
    "configure_tracing",
    "continue_trace",
    "current_request_id",
    "current_traceparent",
    "get_logger",
    "instrument_app",
    "render_metrics",
    "reset_log_context",
    "setup_telemetry",
    "shutdown_tracing",
]
