"""Tracing's parts without a workflow: the switch, the traceparent in messages, the
attempt's span and the engine's workflow spans (recorded by a local SDK provider)."""

from __future__ import annotations

import logging
import sys
from dataclasses import replace
from datetime import datetime

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from flow.core.state import ActivityState, WorkflowState, WorkflowStatus
from flow.core.vocabulary import Outcome
from flow.engine.spans import WorkflowSpans
from flow.observability import tracing
from flow.wire.attempts import AttemptRequest
from tests.tracing import global_provider

T = datetime(2026, 1, 1)
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def exporter(monkeypatch) -> InMemorySpanExporter:
    """Spans of flow's tracer recorded in memory, without touching the global provider."""
    recorded = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(recorded))
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("test"))
    monkeypatch.setattr(tracing, "ENABLED", True)
    return recorded


def workflow(**fields) -> WorkflowState:
    activity = ActivityState(position=0, name="A", independent=False, required=True, config={})
    values = {
        "id": "wf-1",
        "name": "W",
        "definition_version": 1,
        "status": WorkflowStatus.IN_PROGRESS,
        "input_data": {},
        "config": {},
        "activities": (activity,),
        "created_at": T,
        **fields,
    }
    return WorkflowState(**values)


def ids(traceparent: str) -> tuple[int, int]:
    _, trace_id, span_id, _ = traceparent.split("-")
    return int(trace_id, 16), int(span_id, 16)


# -- propagation ------------------------------------------------------------------------------


def test_a_traceparent_names_its_span_as_a_remote_parent(exporter):
    span = tracing.tracer().start_span("parent")
    traceparent = tracing.traceparent_of(span)
    parent = trace.get_current_span(tracing.context_of(traceparent)).get_span_context()
    assert (parent.trace_id, parent.span_id) == (span.get_span_context().trace_id, span.get_span_context().span_id)
    assert parent.is_remote and parent.trace_flags.sampled


@pytest.mark.parametrize("traceparent", [None, "", "not a traceparent", "00-" + "0" * 32 + "-" + "0" * 16 + "-01"])
def test_no_or_an_unreadable_traceparent_means_a_new_trace(traceparent):
    assert trace.get_current_span(tracing.context_of(traceparent)) is trace.INVALID_SPAN


# -- the switch -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "asked"),
    [
        ({}, None),
        ({"OTEL_SERVICE_NAME": "flow"}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, ["otlp"]),
        # Named exporters are added by the SDK itself.
        ({"OTEL_TRACES_EXPORTER": "console"}, []),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, []),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, None),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}, None),
    ],
)
def test_the_otel_variables_say_whether_traces_are_exported(env, asked):
    assert tracing.exporters_asked(env) == asked


def test_without_otel_variables_or_a_provider_tracing_stays_off():
    assert tracing.configure({}) is False
    assert tracing.ENABLED is False


def test_without_the_sdk_tracing_stays_off_and_says_why(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk._configuration", None)  # as if not installed
    with caplog.at_level(logging.WARNING, logger="flow.observability.tracing"):
        assert tracing.configure({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}) is False
    assert tracing.ENABLED is False
    assert "opentelemetry-sdk is not installed" in caplog.text


def test_a_provider_installed_by_the_host_turns_tracing_on():
    with global_provider() as recorded:
        assert tracing.configure({}) is True
        tracing.tracer().start_span("made by flow").end()
        assert [s.name for s in recorded.get_finished_spans()] == ["made by flow"]
    assert tracing.ENABLED is False  # the helper turns it off again


# -- the attempt's span (workers) -------------------------------------------------------------


def test_an_attempt_span_is_a_child_of_the_workflow_span_and_the_parent_of_the_activity_s(exporter):
    request = AttemptRequest.of(workflow(traceparent=PARENT), 0, 2, reply_to="q")

    def attempt():
        with tracing.tracer().start_as_current_span("inside do_activity"):
            pass
        return request.result(Outcome.SUCCEEDED)

    tracing.run_attempt(request, attempt)
    inner, span = exporter.get_finished_spans()
    assert (span.context.trace_id, span.parent.span_id) == ids(PARENT)
    assert inner.parent.span_id == span.context.span_id
    assert dict(span.attributes) == {
        "flow.workflow.id": "wf-1",
        "flow.activity.name": "A",
        "flow.activity.position": 0,
        "flow.attempt.number": 2,
        "flow.attempt.outcome": "SUCCEEDED",
    }
    assert span.status.status_code is StatusCode.UNSET


def test_a_failed_attempt_span_is_an_error_named_by_the_last_line_of_its_traceback(exporter):
    request = AttemptRequest.of(workflow(), 0, 1, reply_to="q")
    error = 'Traceback (most recent call last):\n  File "x.py", line 1\nRuntimeError: broken\n'
    tracing.run_attempt(request, lambda: request.result(Outcome.TEMPORARY_FAILURE, error=error))
    (span,) = exporter.get_finished_spans()
    assert span.parent is None  # no traceparent: a trace of its own
    assert span.attributes["flow.attempt.outcome"] == "TEMPORARY_FAILURE"
    assert (span.status.status_code, span.status.description) == (StatusCode.ERROR, "RuntimeError: broken")


# -- the engine's workflow spans ----------------------------------------------------------------


def test_the_start_of_a_run_begins_the_workflow_span_and_its_end_ends_it(exporter):
    spans = WorkflowSpans()
    before = workflow()
    after = spans.before_commit(before, replace(before, started=True), partition=3)
    assert after.traceparent is not None and len(spans) == 1
    # The same transition again (its commit failed, the actor reloaded): the same span.
    assert spans.before_commit(before, replace(before, started=True), partition=3) == after
    spans.after_commit(replace(after, status=WorkflowStatus.CANCELLED))
    (span,) = exporter.get_finished_spans()
    assert (span.context.trace_id, span.context.span_id) == ids(after.traceparent)
    assert span.parent is None and span.name == "workflow W"
    assert span.attributes["flow.workflow.outcome"] == "Cancelled"
    assert span.status.status_code is StatusCode.UNSET
    assert len(spans) == 0


def test_another_engine_resumes_a_workflow_in_a_child_span_and_keeps_the_stored_context(exporter):
    spans = WorkflowSpans()  # an engine that did not start it
    before = workflow(started=True, traceparent=PARENT)
    after = spans.before_commit(before, before, partition=0)
    assert after.traceparent == PARENT  # attempts stay children of the workflow's own span
    spans.after_commit(replace(after, status=WorkflowStatus.FAILED, error="it broke\nfor good"))
    (span,) = exporter.get_finished_spans()
    assert (span.context.trace_id, span.parent.span_id) == ids(PARENT)
    assert span.attributes["flow.workflow.resumed"] is True
    assert (span.status.status_code, span.status.description) == (StatusCode.ERROR, "for good")


def test_a_workflow_started_while_tracing_was_off_gets_its_span_stored_when_resumed(exporter):
    before = workflow(started=True)
    after = WorkflowSpans().before_commit(before, before, partition=0)
    assert after.traceparent is not None


def test_a_retry_from_failure_is_a_new_span_under_the_previous_run(exporter):
    spans = WorkflowSpans()
    before = workflow(started=True, status=WorkflowStatus.FAILED, traceparent=PARENT)
    after = spans.before_commit(before, replace(before, status=WorkflowStatus.IN_PROGRESS, run=2), partition=0)
    assert after.traceparent != PARENT
    spans.let_go()
    (span,) = exporter.get_finished_spans()
    assert span.parent.span_id == ids(PARENT)[1]
    assert span.attributes["flow.workflow.run"] == 2


def test_nothing_begins_for_an_unstarted_workflow_or_a_late_message_after_the_end(exporter):
    spans = WorkflowSpans()
    unstarted = workflow()
    assert spans.before_commit(unstarted, unstarted, partition=0) is unstarted
    ended = workflow(started=True, status=WorkflowStatus.FINISHED, traceparent=PARENT)
    assert spans.before_commit(ended, ended, partition=0) is ended
    assert len(spans) == 0


def test_letting_a_partition_go_ends_its_spans_as_handed_over(exporter):
    spans = WorkflowSpans()
    for workflow_id, partition in (("a", 1), ("b", 2)):
        state = workflow(id=workflow_id)
        spans.before_commit(state, replace(state, started=True), partition=partition)
    spans.let_go(1)
    (span,) = exporter.get_finished_spans()
    assert span.attributes["flow.workflow.id"] == "a"
    assert span.attributes["flow.workflow.handed_over"] is True
    assert "flow.workflow.outcome" not in span.attributes
    assert len(spans) == 1
