"""OpenTelemetry traces, off by default (GENDETECT_OTEL_ENABLED=true and the
`otel` extra): FastAPI's instrumentation gives one server span per request,
continuing a caller's W3C `traceparent`, and the scoring path adds spans
around its three stages (features, model, audit).

Spans go to an OTLP exporter configured by OpenTelemetry's own variables
(OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, ...), or to the exporter a
caller passes (the tests' in-memory one). Without tracing, `span` is a
shared no-op context manager: the request path pays one attribute read.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

_NO_SPAN: AbstractContextManager[None] = nullcontext()
_tracer: Any = None


def span(name: str) -> AbstractContextManager[Any]:
    """A child span of the current request's span, or nothing."""
    if _tracer is None:
        return _NO_SPAN
    return _tracer.start_as_current_span(name)


def tracing_on() -> bool:
    """Whether spans are recorded (the micro-batcher then stays off: a block
    of several requests has no one request's span to belong to)."""
    return _tracer is not None


def setup_tracing(app: Any, exporter: Any = None) -> Any:
    """Instrument `app`; returns the tracer provider (shut it down at exit)."""
    global _tracer
    try:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError as exc:
        raise RuntimeError(
            "GENDETECT_OTEL_ENABLED needs the otel extra: pip install 'gendetect[otel]'"
        ) from exc
    provider = TracerProvider(resource=Resource.create({"service.name": "gendetect-api"}))
    if exporter is None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise RuntimeError(
                "GENDETECT_OTEL_ENABLED needs an exporter: pip install 'gendetect[otel]'"
            ) from exc
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    # Health probes every few seconds would drown the traces that matter.
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider,
                                       excluded_urls="healthz,readyz,metrics")
    _tracer = provider.get_tracer("gendetect.serving")
    return provider


def stop_tracing(provider: Any) -> None:
    global _tracer
    _tracer = None
    if provider is not None:
        provider.shutdown()
