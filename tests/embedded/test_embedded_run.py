"""Workflows end to end in one process: SQLite, StubBroker, in-process worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from flow.core.vocabulary import ActivityStatus, HistoryType
from flow.loops import poll_until
from flow.process.embedded import EmbeddedFlow
from flow.settings import Settings
from flow.testing.definitions import EXPECTED_STATUS


@pytest.fixture
def flow(embedded_settings: Settings) -> Iterator[EmbeddedFlow]:
    with EmbeddedFlow(embedded_settings) as running:
        yield running


def run(flow: EmbeddedFlow, name: str, input_data: dict | None = None):
    workflow_id = flow.start(name, input_data or {"x": 1})
    row = flow.wait(workflow_id, timeout_s=20)
    assert row.state.status.ended, f"{name} did not end: {row.state}"
    return row.state, flow.runtime.store.events(workflow_id)


def test_dummy_workflow_runs_both_activities_in_order(flow):
    state, events = run(flow, "DummyWorkflow")
    assert state.status == "Finished"
    assert [a.status for a in state.activities] == ["Succeeded", "Succeeded"]
    assert [a.attempt for a in state.activities] == [1, 1]
    first, second = state.activities
    assert first.finished_at <= second.scheduled_at
    assert state.output["DoAnotherThingActivity"]["status"] == 200
    assert state.input_data == {"x": 1}


def test_history_uses_the_decision_vocabulary_in_order(flow):
    _, events = run(flow, "DummyWorkflow")
    kinds = [HistoryType(e["type"]) for e in events]  # each stored type is in the vocabulary
    assert kinds[0] is HistoryType.START_WORKFLOW
    assert kinds[-1] is HistoryType.WORKFLOW_FINISHED
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    scheduled = [(e["position"], e["data"]["attempt"]) for e in events if e["type"] == HistoryType.SCHEDULE_ACTIVITY]
    assert scheduled == [(0, 1), (1, 1)]


def test_temporary_failures_are_retried_until_success(flow):
    state, events = run(flow, "RetryWorkflow")
    assert state.status == "Finished"
    assert state.activities[0].attempt == 3
    assert state.activities[0].output == {"attempt": 3}
    assert [e["type"] for e in events].count(HistoryType.RESCHEDULE_ACTIVITY) == 2


def test_http_503_exhausts_attempts_and_optional_activity_does_not_fail_the_workflow(flow, http_server):
    state, _ = run(flow, "HttpErrorWorkflow")
    assert state.status == "Finished"
    optional, required = state.activities
    assert (optional.status, optional.attempt) == ("Failed", 3)
    assert "503" in optional.error
    assert required.status == "Succeeded"


def test_required_permanent_failure_fails_the_workflow_and_skips_the_rest(flow):
    state, events = run(flow, "FailingWorkflow")
    assert state.status == "Failed"
    assert [a.status for a in state.activities] == ["Succeeded", "Failed", "Skipped"]
    assert state.activities[1].attempt == 1  # PERMANENT_FAILURE is never retried
    assert "RefusingActivity" in state.error
    assert events[-1]["type"] == HistoryType.WORKFLOW_FAILURE


def test_an_exception_is_a_temporary_failure_with_its_traceback(flow):
    state, _ = run(flow, "BrokenOptionalWorkflow")
    broken, echo = state.activities
    assert (broken.status, broken.attempt) == ("Failed", 2)
    assert "RuntimeError: broken on purpose" in broken.error
    assert "Traceback" in broken.error
    assert echo.status == "Succeeded"


def test_independent_activities_start_together_and_the_next_waits_for_all(flow):
    state, _ = run(flow, "ParallelWorkflow", {"who": "world"})
    sleep_a, sleep_b, flaky, echo = state.activities
    assert state.status == "Finished"
    # The two 0.3 s sleeps overlapped rather than running one after the other.
    assert sleep_b.started_at < sleep_a.finished_at and sleep_a.started_at < sleep_b.finished_at
    assert echo.scheduled_at >= max(sleep_a.finished_at, sleep_b.finished_at, flaky.finished_at)
    # Config is the workflow's overlaid with the activity's; earlier outputs are handed on.
    assert echo.output["config"] == {"greeting": "hi"}
    assert echo.output["input_data"] == {"who": "world"}
    assert echo.output["outputs"] == {"FlakyActivity": {"attempt": 1}}


@pytest.mark.parametrize("name", sorted(EXPECTED_STATUS))
def test_every_test_definition_ends_as_expected(flow, name):
    state, events = run(flow, name)
    assert state.status == EXPECTED_STATUS[name]
    assert not any(a.status in ("Scheduled", "Started", "Waiting Retry") for a in state.activities)


def test_several_workflows_at_once(flow):
    ids = {flow.start(name, {}): name for name in sorted(EXPECTED_STATUS) for _ in range(3)}
    for workflow_id, name in ids.items():
        assert flow.wait(workflow_id, timeout_s=30).state.status == EXPECTED_STATUS[name]


def test_an_unfinished_workflow_resumes_when_the_process_starts_again(embedded_settings):
    with EmbeddedFlow(embedded_settings) as first:
        workflow_id = first.start("ParallelWorkflow")
        # Stop while the two 0.3 s sleeps run: the in-process broker loses their messages.
        first.wait(workflow_id, timeout_s=0.1)
    assert EmbeddedFlow(embedded_settings).runtime.store.get(workflow_id).state.status == "In Progress"
    with EmbeddedFlow(embedded_settings) as second:
        state = second.wait(workflow_id, timeout_s=20).state
    assert state.status == "Finished"
    assert all(a.status == "Succeeded" for a in state.activities)


def test_a_sleep_survives_a_restart_and_wakes_once(embedded_settings, tmp_path):
    (Path(embedded_settings.definitions_dir) / "Nap.json").write_text(
        json.dumps({"name": "Nap", "activities": [{"id": "nap", "sleep_s": 1}, {"name": "NoopActivity"}]})
    )
    with EmbeddedFlow(embedded_settings) as first:
        workflow_id = first.start("Nap", {})
        poll_until(
            lambda: first.runtime.store.get(workflow_id).state.activities[0].status is ActivityStatus.WAITING,
            timeout_s=20,
            what="the sleep to start",
        )
    with EmbeddedFlow(embedded_settings) as second:
        state = second.wait(workflow_id, timeout_s=30).state
        events = second.runtime.store.events(workflow_id)
    assert state.status == "Finished"
    woke = [e for e in events if e["type"] == HistoryType.TIMER_FIRED and not e["data"].get("stale")]
    assert [(e["position"], e["data"]["kind"]) for e in woke] == [(0, "sleep")]
    assert [e["type"] for e in events].count(HistoryType.START_SLEEP) == 1
