"""OpenTelemetry tracing: W3C trace context always, OTLP export only when configured."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_provider: TracerProvider | None = None


def configure_tracing(service: str, *, version: str, otlp_endpoint: str | None) -> TracerProvider:
    """Install the SDK tracer provider (real trace ids in logs even with no exporter)."""
    global _provider  # noqa: PLW0603 - one provider per process, by OpenTelemetry's design
    if _provider is not None:
        return _provider
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: f"rag-{service}", SERVICE_VERSION: version})
    )
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=_traces_url(otlp_endpoint)))
        )
    trace.set_tracer_provider(provider)
    propagate.set_global_textmap(
        CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
    )
    _provider = provider
    return provider


def _traces_url(endpoint: str) -> str:
    # The OTLP spec: the generic endpoint gets the signal path appended.
    return endpoint.rstrip("/") + "/v1/traces"


def shutdown_tracing() -> None:
    """Flush spans still buffered for export."""
    if _provider is not None:
        _provider.shutdown()


@contextmanager
def continue_trace(name: str, traceparent: str | None, **attributes: Any) -> Iterator[trace.Span]:
    """A consumer span for work a request started elsewhere (a queued job): it joins the
    request's trace when ``traceparent`` is given, so its log lines carry that trace id."""
    parent = propagate.extract({"traceparent": traceparent}) if traceparent else None
    tracer = trace.get_tracer("rag")
    with tracer.start_as_current_span(
        name,
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        attributes={k: v for k, v in attributes.items() if v is not None},
    ) as span:
        yield span


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, to hand to work done elsewhere later."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")
