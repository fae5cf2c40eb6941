"""The tests' OpenTelemetry set-up: the SDK recording into memory, installed as the
global tracer provider (activities make their spans with the global tracer), and
removed again afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

from flow.observability import tracing


@contextlib.contextmanager
def global_provider() -> Iterator[InMemorySpanExporter]:
    """An SDK tracer provider recording into memory, global for the duration; flow's
    tracing is left as it was (off) — call :func:`flow.observability.tracing.configure` to turn it on."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _reset_global_provider()
    trace.set_tracer_provider(provider)
    try:
        yield exporter
    finally:
        tracing.disable()
        provider.shutdown()
        _reset_global_provider()


def _reset_global_provider() -> None:
    # The API lets a process set its provider once; OpenTelemetry's own tests reset
    # these two globals the same way (opentelemetry.test.globals_test).
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None


def by_name(spans: tuple[ReadableSpan, ...] | list[ReadableSpan], prefix: str) -> list[ReadableSpan]:
    """The spans whose name starts with ``prefix``, in the order they started."""
    return sorted((s for s in spans if s.name.startswith(prefix)), key=lambda s: s.start_time or 0)
