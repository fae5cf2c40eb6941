"""Cancel, retry from failure, timeouts and payload limits, end to end in one process."""

from __future__ import annotations

import json
from collections.abc import Iterator

import falcon.testing
import pytest

from api.app import create_app
from flow.errors import InvalidInput
from flow.process.embedded import EmbeddedFlow
from flow.settings import Settings
from flow.testing.definitions import embedded_env
from tests.conftest import wait_for

NO_RETRY = {"retry": {"max_attempts": 1}}

DEFINITIONS = {
    "Slow": {
        "name": "Slow",
        "activities": [{"name": "SleepActivity", "config": {"sleep_s": 1.0}}, {"name": "NoopActivity"}],
    },
    "Redrive": {
        "name": "Redrive",
        "config": {"retry": {"max_attempts": 2, "initial_delay_ms": 10, "jitter": 0}},
        "activities": [{"name": "EchoActivity"}, {"name": "FlakyActivity", "config": {"succeed_on_attempt": 3}}],
    },
    "StartToClose": {
        "name": "StartToClose",
        "config": {"retry": {"max_attempts": 2, "initial_delay_ms": 10}},
        "activities": [{"name": "SpinActivity", "config": {"spin_s": 10, "timeouts": {"start_to_close_s": 0.3}}}],
    },
    "WorkflowTimeout": {
        "name": "WorkflowTimeout",
        "config": {"timeouts": {"workflow_s": 0.5}},
        "activities": [{"name": "SleepActivity", "config": {"sleep_s": 0.2}} for _ in range(6)],
    },
    "BigOutput": {
        "name": "BigOutput",
        "config": NO_RETRY,
        "activities": [{"name": "BigOutputActivity", "config": {"size": 300_000}}],
    },
}


@pytest.fixture
def flow(tmp_path, definitions_dir) -> Iterator[EmbeddedFlow]:
    for name, body in DEFINITIONS.items():
        (definitions_dir / f"{name}.json").write_text(json.dumps(body))
    settings = Settings.from_env(embedded_env(tmp_path, definitions_dir), embedded=True)
    with EmbeddedFlow(settings) as running:
        yield running


@pytest.fixture
def client(flow) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(runtime=flow.runtime))


def ended(flow: EmbeddedFlow, workflow_id: str):
    return flow.wait(workflow_id, timeout_s=20).state


def test_cancel_stops_scheduling_and_records_the_late_result(flow, client):
    workflow_id = flow.start("Slow")
    wait_for(lambda: flow.runtime.store.get(workflow_id).state.activities[0].status == "Started")
    response = client.simulate_post(f"/workflows/{workflow_id}/cancel", json={"reason": "no longer needed"})
    assert response.status_code == 202
    state = ended(flow, workflow_id)
    assert state.status == "Cancelled"
    assert state.activities[1].status == "Cancelled"
    # The sleep is told to stop; its result arrives after the cancel: recorded on the
    # activity, nothing scheduled.
    wait_for(lambda: flow.runtime.store.get(workflow_id).state.activities[0].status == "Cancelled", timeout_s=5)
    assert flow.runtime.store.get(workflow_id).state.status == "Cancelled"
    kinds = [e["type"] for e in flow.runtime.store.events(workflow_id)]
    assert "workflow-cancelled" in kinds
    assert kinds.count("schedule-activity") == 1
    again = client.simulate_post(f"/workflows/{workflow_id}/cancel")
    assert again.status_code == 409


def test_retry_from_failure_runs_only_what_did_not_succeed(flow, client):
    workflow_id = flow.start("Redrive")
    failed = ended(flow, workflow_id)
    assert failed.status == "Failed"
    assert [(a.status, a.attempt) for a in failed.activities] == [("Succeeded", 1), ("Failed", 2)]
    echo_output = failed.activities[0].output

    assert client.simulate_post(f"/workflows/{workflow_id}/retry").status_code == 202
    wait_for(lambda: flow.runtime.store.get(workflow_id).state.run == 2)
    state = ended(flow, workflow_id)
    assert state.status == "Finished"
    echo, flaky = state.activities
    assert (echo.attempt, echo.output) == (1, echo_output)  # not run again
    assert (flaky.status, flaky.attempt) == ("Succeeded", 3)
    assert client.simulate_post(f"/workflows/{workflow_id}/retry").status_code == 409


def test_an_attempt_over_its_start_to_close_timeout_is_stopped_and_retried(flow):
    state = ended(flow, flow.start("StartToClose"))
    assert state.status == "Failed"
    [spin] = state.activities
    assert spin.attempt == 2
    assert "start-to-close timeout" in spin.error
    # Stopped in the worker, not left spinning for its 10 s.
    assert (spin.finished_at - spin.started_at).total_seconds() < 2


def test_workflow_timeout_fails_the_workflow_with_the_reason_in_its_events(flow):
    workflow_id = flow.start("WorkflowTimeout")
    state = ended(flow, workflow_id)
    assert state.status == "Failed"
    assert "timed out" in state.error
    failure = [e for e in flow.runtime.store.events(workflow_id) if e["type"] == "workflow-failure"]
    assert "timed out" in failure[0]["data"]["error"]


def test_an_oversize_output_fails_with_a_clear_error(flow):
    state = ended(flow, flow.start("BigOutput"))
    assert state.status == "Failed"
    assert "FLOW_MAX_PAYLOAD_BYTES" in state.activities[0].error


def test_an_oversize_input_is_refused_before_anything_is_created(flow, client):
    with pytest.raises(InvalidInput, match="FLOW_MAX_PAYLOAD_BYTES"):
        flow.start("Slow", {"blob": "x" * 300_000})
    response = client.simulate_post("/workflows", json={"name": "Slow", "input_data": {"blob": "x" * 300_000}})
    assert response.status_code == 422
    assert "$.input_data" in response.json["description"]
    assert client.simulate_get("/workflows").json["items"] == []


def test_cancel_and_retry_of_unknown_workflows_are_404(client):
    assert client.simulate_post("/workflows/nope/cancel").status_code == 404
    assert client.simulate_post("/workflows/nope/retry").status_code == 404


# -- regressions found by a hostile review of the graph features ---------------------


def test_review_an_optional_condition_that_cannot_be_evaluated_lets_the_workflow_go_on(flow):
    """Review (fixed): ``abs()`` of a JSON literal holding a lone surrogate cannot be
    evaluated; the fail reason quotes the value as is, the SQLite commit raises
    UnicodeEncodeError (PostgreSQL: a NUL literal raises ValueError), and the engine
    fails the whole workflow ("the engine cannot handle this workflow") with ``first``
    left Scheduled and ``last`` Pending, instead of failing the optional activity with
    the reason and finishing (README: "fails the activity before it runs ... and the
    workflow, if the activity is required")."""
    body = {
        "name": "SurrogateCondition",
        "activities": [
            {"id": "first", "name": "EchoActivity"},
            {"id": "bad", "name": "EchoActivity", "required": False, "when": 'abs(`"\\ud800"`)'},
            {"id": "last", "name": "EchoActivity"},
        ],
    }
    flow.runtime.service.register(body)
    state = ended(flow, flow.start("SurrogateCondition", {}))
    assert state.status == "Finished", state.error
    bad = {a.id: a for a in state.activities}["bad"]
    assert bad.status == "Failed"
    assert "could not be evaluated" in bad.error
