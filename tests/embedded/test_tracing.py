"""Tracing end to end in one process: the SDK records into memory; a workflow's span,
its attempts' spans as children, an activity's own span inside its attempt's, and
nothing at all while tracing is off (docs/design.md, "Tracing")."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from flow.core.definition import parse
from flow.engine.spans import WorkflowSpans
from flow.observability import tracing
from flow.process.embedded import EmbeddedFlow
from tests.conftest import wait_for
from tests.tracing import by_name, global_provider

FAST_RETRY = {"retry": {"max_attempts": 3, "initial_delay_ms": 20, "jitter": 0}}
TRACED = {
    "name": "TracedWorkflow",
    "config": FAST_RETRY,
    "activities": [
        {"name": "FlakyActivity", "config": {"succeed_on_attempt": 2}},
        {"name": "TracedActivity"},
    ],
}
FAILING = {"name": "FailingTraced", "config": FAST_RETRY, "activities": [{"name": "RefusingActivity"}]}


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    with global_provider() as exporter:
        assert tracing.configure({})  # the host installed a provider: tracing is on
        yield exporter


def run(flow: EmbeddedFlow, body: dict) -> tuple[str, object]:
    flow.add_definition(parse(body, known_activities=flow.runtime.activity_classes))
    workflow_id = flow.start(body["name"], {"x": 1})
    row = flow.wait(workflow_id, timeout_s=20)
    assert row.state.status.ended
    return workflow_id, row


def ended_workflow_spans(exporter: InMemorySpanExporter, count: int = 1) -> list:
    # The engine ends the span just after the commit that the wait saw.
    return wait_for(
        lambda: (found := by_name(exporter.get_finished_spans(), "workflow ")) and len(found) >= count and found,
        what="the workflow spans to end",
    )


def test_a_workflow_has_one_span_with_one_child_span_per_attempt(spans, embedded_settings):
    with EmbeddedFlow(embedded_settings) as flow:
        workflow_id, row = run(flow, TRACED)
    (workflow,) = ended_workflow_spans(spans)
    finished = spans.get_finished_spans()
    assert workflow.name == "workflow TracedWorkflow"
    assert workflow.parent is None and workflow.kind is SpanKind.INTERNAL
    assert dict(workflow.attributes) == {
        "flow.workflow.id": workflow_id,
        "flow.workflow.name": "TracedWorkflow",
        "flow.workflow.run": 1,
        "flow.workflow.outcome": "Finished",
    }
    # Its context is stored with the workflow, for attempts any engine sends later.
    _, trace_id, span_id, _ = row.state.traceparent.split("-")
    assert (trace_id, span_id) == (f"{workflow.context.trace_id:032x}", f"{workflow.context.span_id:016x}")

    attempts = by_name(finished, "activity ")
    assert [(a.name, a.attributes["flow.attempt.number"], a.attributes["flow.attempt.outcome"]) for a in attempts] == [
        ("activity FlakyActivity", 1, "TEMPORARY_FAILURE"),
        ("activity FlakyActivity", 2, "SUCCEEDED"),
        ("activity TracedActivity", 1, "SUCCEEDED"),
    ]
    for attempt in attempts:
        assert attempt.parent.span_id == workflow.context.span_id
        assert attempt.context.trace_id == workflow.context.trace_id
        assert attempt.kind is SpanKind.CONSUMER
        assert attempt.attributes["flow.workflow.id"] == workflow_id
    assert [a.attributes["flow.activity.position"] for a in attempts] == [0, 0, 1]
    assert attempts[0].status.status_code is StatusCode.ERROR
    assert attempts[0].status.description == "flaky on attempt 1"
    assert attempts[1].status.status_code is StatusCode.UNSET

    (own,) = by_name(finished, "inside do_activity")
    assert own.parent.span_id == attempts[2].context.span_id
    assert own.context.trace_id == workflow.context.trace_id
    assert len(finished) == 5  # nothing else


def test_a_failed_workflow_span_says_why(spans, embedded_settings):
    with EmbeddedFlow(embedded_settings) as flow:
        run(flow, FAILING)
    (workflow,) = ended_workflow_spans(spans)
    assert workflow.attributes["flow.workflow.outcome"] == "Failed"
    assert workflow.status.status_code is StatusCode.ERROR
    assert "RefusingActivity" in workflow.status.description
    (attempt,) = by_name(spans.get_finished_spans(), "activity ")
    assert attempt.attributes["flow.attempt.outcome"] == "PERMANENT_FAILURE"
    assert attempt.status.description == "refused on purpose"


def test_attempts_sent_by_the_next_engine_stay_children_of_the_stored_span(spans, embedded_settings):
    body = {
        "name": "Interrupted",
        "activities": [{"name": "SleepActivity", "config": {"sleep_s": 1}}, {"name": "TracedActivity"}],
    }
    with EmbeddedFlow(embedded_settings) as first:
        first.add_definition(parse(body, known_activities=first.runtime.activity_classes))
        workflow_id = first.start("Interrupted")
        wait_for(lambda: first.runtime.store.get(workflow_id).state.traceparent, what="the start to commit")
    # The first engine stopped while the workflow ran: its span ends, handed over.
    (original,) = ended_workflow_spans(spans)
    assert original.attributes["flow.workflow.handed_over"] is True
    assert "flow.workflow.outcome" not in original.attributes

    with EmbeddedFlow(embedded_settings) as second:  # another engine, on the same database
        row = second.wait(workflow_id, timeout_s=20)
    assert row.state.status == "Finished"
    assert row.state.traceparent.split("-")[2] == f"{original.context.span_id:016x}"
    original, resumed = ended_workflow_spans(spans, 2)
    assert resumed.parent.span_id == original.context.span_id
    assert resumed.attributes["flow.workflow.resumed"] is True
    assert resumed.attributes["flow.workflow.outcome"] == "Finished"
    attempts = by_name(spans.get_finished_spans(), "activity ")
    assert {a.name for a in attempts} == {"activity SleepActivity", "activity TracedActivity"}
    assert all(a.parent.span_id == original.context.span_id for a in attempts)


def test_with_tracing_off_nothing_is_recorded_and_the_hot_paths_never_enter_it(embedded_settings, monkeypatch):
    def entered(*args, **kwargs):
        raise AssertionError("a hot path entered tracing code while tracing is off")

    # Every per-step entry into tracing: the engine's, once per transition and commit,
    # and the worker's, once per attempt.
    monkeypatch.setattr(WorkflowSpans, "before_commit", entered)
    monkeypatch.setattr(WorkflowSpans, "after_commit", entered)
    monkeypatch.setattr(tracing, "run_attempt", entered)
    with global_provider() as exporter:  # an SDK is there, but nobody turned tracing on
        assert not tracing.ENABLED
        with EmbeddedFlow(embedded_settings) as flow:
            workflow_id = flow.start("DummyWorkflow")
            row = flow.wait(workflow_id, timeout_s=20)
        assert row.state.status == "Finished"
        assert row.state.traceparent is None
        assert exporter.get_finished_spans() == ()
