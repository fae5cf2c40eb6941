"""Tracing with OpenTelemetry: the switch, the trace context that messages carry, the
span and attribute names, and the attempt's span (docs/design.md, "Tracing").

Only ``opentelemetry-api`` is imported here. Tracing is on in a process once
:func:`configure` has found a tracer provider:

- one the host process installed (``opentelemetry-instrument``, a program that runs
  :class:`~flow.process.embedded.EmbeddedFlow` with its own SDK set-up, the tests), or
- one that ``opentelemetry-sdk``'s autoconfiguration builds from the standard
  ``OTEL_`` variables, when the SDK is installed (``pip install 'libero-flow[otel]'``)
  and ``OTEL_TRACES_EXPORTER`` or ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`` asks for
  an exporter (an endpoint alone means OTLP).

Otherwise :data:`ENABLED` stays False, and every caller on a hot path tests it once
before anything else: no span is made, no context travels, the messages are those
of a release without tracing.

The ``OTEL_`` variables belong to OpenTelemetry (its SDK reads them itself), so
they are the one thing read from the environment outside :mod:`flow.settings`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from flow.core.vocabulary import Outcome

if TYPE_CHECKING:
    from flow.wire.attempts import AttemptRequest
from flow.wire.messages import AttemptResult

logger = logging.getLogger(__name__)

#: True once :func:`configure` found a tracer provider; read once per step by the hot paths.
ENABLED = False

#: The instrumentation scope of every span Libero Flow makes.
SCOPE = "libero-flow"

# Attributes of the workflow span (one per run of a workflow, in the engine).
WORKFLOW_ID = "flow.workflow.id"
WORKFLOW_NAME = "flow.workflow.name"
WORKFLOW_RUN = "flow.workflow.run"
#: ``Finished``, ``Failed`` or ``Cancelled``; absent when the engine let the workflow go first.
WORKFLOW_OUTCOME = "flow.workflow.outcome"
#: This engine took up a workflow started elsewhere (a restart, a failover).
WORKFLOW_RESUMED = "flow.workflow.resumed"
#: This engine let the workflow go before it ended (its partition moved, the engine stopped).
WORKFLOW_HANDED_OVER = "flow.workflow.handed_over"
# Attributes of the attempt span (one per attempt, in the worker).
ACTIVITY_NAME = "flow.activity.name"
#: The activity's index in the definition: its id within its workflow.
ACTIVITY_POSITION = "flow.activity.position"
ATTEMPT_NUMBER = "flow.attempt.number"
#: ``SUCCEEDED``, ``TEMPORARY_FAILURE`` or ``PERMANENT_FAILURE``.
ATTEMPT_OUTCOME = "flow.attempt.outcome"

_PROPAGATOR = TraceContextTextMapPropagator()
_tracer: trace.Tracer = trace.NoOpTracer()


def configure(environ: Mapping[str, str] | None = None) -> bool:
    """Turn tracing on if a tracer provider is installed or the ``OTEL_`` variables of
    ``environ`` (default ``os.environ``) ask for one; return whether it is on. Called
    once per process by the entry points, after logging is configured."""
    global ENABLED, _tracer
    env = os.environ if environ is None else environ
    if not _provider_installed():
        exporters = exporters_asked(env)
        if exporters is None:
            ENABLED = False
            return False
        try:
            from opentelemetry.sdk._configuration import _initialize_components
        except ImportError:
            logger.warning(
                "OTEL_ variables ask for traces, but opentelemetry-sdk is not installed "
                "(pip install 'libero-flow[otel]'): tracing is off"
            )
            ENABLED = False
            return False
        try:
            # The SDK's own autoconfiguration (what opentelemetry-instrument runs): it
            # reads every other OTEL_ variable (service name, resource, sampler, ...).
            _initialize_components(trace_exporter_names=exporters)
        except Exception as e:  # a tracing mistake must never stop an engine or a worker
            logger.error("tracing is off: the OpenTelemetry SDK could not be configured: %s", e)
            ENABLED = False
            return False
    _tracer = trace.get_tracer(SCOPE)
    ENABLED = True
    return True


def disable() -> None:
    """Turn tracing off in this process (the tests, between cases)."""
    global ENABLED, _tracer
    ENABLED = False
    _tracer = trace.NoOpTracer()


def exporters_asked(env: Mapping[str, str]) -> list[str] | None:
    """The trace exporters to add to those ``OTEL_TRACES_EXPORTER`` names (which the
    SDK adds itself), or None when ``env`` asks for no traces at all."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    named = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if named:
        return None if named == "none" else []
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return ["otlp"]
    return None


def _provider_installed() -> bool:
    return not isinstance(trace.get_tracer_provider(), (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


def tracer() -> trace.Tracer:
    """The tracer of Libero Flow's own spans (a no-op one while tracing is off)."""
    return _tracer


# -- the context in messages ------------------------------------------------------------------


def traceparent_of(span: trace.Span) -> str | None:
    """The W3C ``traceparent`` that makes a span in another process a child of ``span``."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


def context_of(traceparent: str | None) -> Context:
    """The context whose span is the remote parent ``traceparent`` names; an empty
    context (so a new trace) when there is none or it cannot be read."""
    if not traceparent:
        return Context()
    return _PROPAGATOR.extract({"traceparent": traceparent}, context=Context())


def failed(span: trace.Span, error: str | None) -> None:
    """Mark ``span`` as failed, described by the last line of ``error`` (a traceback's
    last line is the exception)."""
    lines = [line for line in (error or "").splitlines() if line.strip()]
    span.set_status(trace.Status(trace.StatusCode.ERROR, lines[-1][:256] if lines else None))


# -- the attempt's span (workers) ----------------------------------------------------------------


def run_attempt(request: AttemptRequest, attempt: Callable[[], AttemptResult]) -> AttemptResult:
    """Run ``attempt`` in the span of ``request``'s attempt: a child of the workflow's
    span (the request's ``traceparent``) and the current span while the activity runs,
    so the spans its ``do_activity`` makes with the global tracer are its children."""
    span = _tracer.start_span(
        f"activity {request.activity}",
        context=context_of(request.traceparent),
        # It processes a message sent by the engine, in another process.
        kind=trace.SpanKind.CONSUMER,
        attributes={
            WORKFLOW_ID: request.workflow_id,
            ACTIVITY_NAME: request.activity,
            ACTIVITY_POSITION: request.position,
            ATTEMPT_NUMBER: request.attempt,
        },
    )
    with trace.use_span(span, end_on_exit=True):
        result = attempt()
        span.set_attribute(ATTEMPT_OUTCOME, result.outcome.value)
        if result.outcome is not Outcome.SUCCEEDED:
            failed(span, result.error)
    return result
