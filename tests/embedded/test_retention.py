"""Keeping the database small, on the embedded runtime: deleting an ended workflow (and
what a late message for it then does to the engine), deleting a definition version,
finding workflows by their input, and the engine's own retention."""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import timedelta

import falcon.testing
import pytest

from api.app import create_app
from flow.clock import utcnow
from flow.core.vocabulary import Outcome
from flow.persistence.models import ActivityRecord, EventRecord, OutboxRecord, TimerRecord, WorkflowRecord
from flow.process.embedded import EmbeddedFlow
from flow.wire import messages
from tests.conftest import wait_for
from tests.embedded.test_api import finished

SLOW = {"name": "SlowOne", "activities": [{"name": "SleepActivity", "config": {"sleep_s": 30}}]}


def rows_of(flow: EmbeddedFlow, workflow_id: str) -> dict[str, int]:
    with flow.runtime.store.unit_of_work():
        return {
            "workflows": WorkflowRecord.select().where(WorkflowRecord.id == workflow_id).count(),
            "activities": ActivityRecord.select().where(ActivityRecord.workflow == workflow_id).count(),
            "events": EventRecord.select().where(EventRecord.workflow == workflow_id).count(),
            "timers": TimerRecord.select().where(TimerRecord.workflow == workflow_id).count(),
            "outbox": OutboxRecord.select().where(OutboxRecord.workflow == workflow_id).count(),
        }


def test_deleting_an_ended_workflow_removes_it_and_everything_that_names_it(client, flow):
    workflow_id = client.simulate_post("/workflows", json={"name": "RetryWorkflow"}).json["id"]
    finished(client, workflow_id)
    keep = client.simulate_post("/workflows", json={"name": "DummyWorkflow"}).json["id"]
    finished(client, keep)
    assert rows_of(flow, workflow_id)["events"] > 0

    result = client.simulate_delete(f"/workflows/{workflow_id}")
    assert result.status_code == 204 and not result.text
    assert client.simulate_get(f"/workflows/{workflow_id}").status_code == 404
    assert client.simulate_get(f"/workflows/{workflow_id}/events").status_code == 404
    assert rows_of(flow, workflow_id) == dict.fromkeys(("workflows", "activities", "events", "timers", "outbox"), 0)
    assert client.simulate_get(f"/workflows/{keep}").json["status"] == "Finished"
    assert client.simulate_delete(f"/workflows/{workflow_id}").status_code == 404


def test_a_workflow_in_progress_cannot_be_deleted_and_the_answer_says_why(client, flow):
    client.simulate_put("/definitions/SlowOne", json=SLOW)
    workflow_id = client.simulate_post("/workflows", json={"name": "SlowOne"}).json["id"]
    result = client.simulate_delete(f"/workflows/{workflow_id}")
    assert result.status_code == 409
    assert "In Progress" in result.json["description"] and "cancel it first" in result.json["description"]
    assert rows_of(flow, workflow_id)["workflows"] == 1
    client.simulate_post(f"/workflows/{workflow_id}/cancel")
    finished(client, workflow_id)
    assert client.simulate_delete(f"/workflows/{workflow_id}").status_code == 204


def test_deleting_an_unknown_workflow_is_404(client):
    assert client.simulate_delete("/workflows/no-such-workflow").status_code == 404
    assert client.simulate_delete("/workflows/" + "x" * 5000).status_code == 404


def late_result(workflow_id: str) -> messages.AttemptResult:
    return messages.AttemptResult(workflow_id=workflow_id, position=0, attempt=1, outcome=Outcome.SUCCEEDED)


def test_a_late_message_for_a_deleted_workflow_is_dropped_and_the_engine_goes_on(client, flow, caplog):
    caplog.set_level(logging.INFO, logger="flow.engine")
    service = flow.runtime.service
    workflow_id = client.simulate_post("/workflows", json={"name": "DummyWorkflow"}).json["id"]
    finished(client, workflow_id)
    assert client.simulate_delete(f"/workflows/{workflow_id}").status_code == 204

    # Its actor is still alive, holding the state it committed last: the commit of the
    # late result finds the row gone, and the message is dropped, not requeued.
    flow.runtime.broker.enqueue(late_result(workflow_id).to_message(service.queue_of(workflow_id)))
    wait_for(lambda: f"workflow {workflow_id} was deleted" in caplog.text, what="the late result to be dropped")
    # With no state in memory, the next one finds nothing to load.
    flow.runtime.broker.enqueue(late_result(workflow_id).to_message(service.queue_of(workflow_id)))
    wait_for(lambda: f"no workflow with id '{workflow_id}'" in caplog.text, what="the second one to be dropped")

    assert flow.engine.refused_commits == 0
    assert rows_of(flow, workflow_id)["events"] == 0  # nothing was written for it
    # The engine handled both without an error (other workflows' activities may log theirs).
    assert not [r for r in caplog.records if r.name.startswith("flow.engine") and (r.exc_info or r.levelno >= 40)]
    again = client.simulate_post("/workflows", json={"name": "DummyWorkflow"}).json["id"]
    assert finished(client, again)["status"] == "Finished"


def test_deleting_a_definition_version_keeps_the_workflows_that_used_it_readable(client):
    first = {"name": "Versioned", "activities": [{"name": "NoopActivity"}]}
    second = {"name": "Versioned", "activities": [{"name": "NoopActivity"}, {"name": "EchoActivity"}]}
    assert client.simulate_put("/definitions/Versioned", json=first).json["version"] == 1
    assert client.simulate_put("/definitions/Versioned", json=second).json["version"] == 2
    ended = client.simulate_post("/workflows", json={"name": "Versioned"}).json["id"]
    before = finished(client, ended)

    assert client.simulate_delete("/definitions/Versioned/versions/2").status_code == 204
    assert client.simulate_get("/definitions/Versioned/versions/2").status_code == 404
    assert client.simulate_delete("/definitions/Versioned/versions/2").status_code == 404
    shown = client.simulate_get("/definitions/Versioned").json
    assert shown["version"] == 1 and [v["version"] for v in shown["versions"]] == [1]
    # The ended workflow kept its own snapshot (config and activities).
    assert client.simulate_get(f"/workflows/{ended}").json == before
    assert len(before["activities"]) == 2 and before["definition_version"] == 2
    # New starts take the newest version left; a number is never given to another body.
    assert client.simulate_post("/workflows", json={"name": "Versioned"}).json["definition_version"] == 1
    third = {"name": "Versioned", "activities": [{"name": "EchoActivity"}]}
    assert client.simulate_put("/definitions/Versioned", json=third).json["version"] == 3
    again = client.simulate_put("/definitions/Versioned", json=second)
    assert (again.status_code, again.json["version"]) == (201, 2)


def test_a_definition_version_a_running_workflow_uses_cannot_be_deleted(client):
    client.simulate_put("/definitions/SlowOne", json=SLOW)
    workflow_id = client.simulate_post("/workflows", json={"name": "SlowOne"}).json["id"]
    result = client.simulate_delete("/definitions/SlowOne/versions/1")
    assert result.status_code == 409
    assert "1 workflow(s) In Progress" in result.json["description"]
    assert client.simulate_get("/definitions/SlowOne/versions/1").status_code == 200
    client.simulate_post(f"/workflows/{workflow_id}/cancel")
    finished(client, workflow_id)
    assert client.simulate_delete("/definitions/SlowOne/versions/1").status_code == 204


@pytest.mark.parametrize("path", ["/definitions/Nobody/versions/1", "/definitions/DummyWorkflow/versions/99"])
def test_deleting_an_unknown_definition_version_is_404(client, path):
    assert client.simulate_delete(path).status_code == 404


def test_workflows_are_found_by_what_they_were_started_with(client):
    inputs = [{"order_id": 42, "customer": {"tier": "gold"}}, {"order_id": 43}, {"order_id": "42"}]
    ids = [
        client.simulate_post("/workflows", json={"name": "DummyWorkflow", "input_data": i}).json["id"] for i in inputs
    ]

    def found(query: dict) -> list[str]:
        page = client.simulate_get("/workflows", params={"input": json.dumps(query)}).json
        return [w["id"] for w in page["items"]]

    assert found({"order_id": 42}) == [ids[0]]
    assert found({"customer": {"tier": "gold"}}) == [ids[0]]
    assert found({"order_id": "42"}) == [ids[2]]
    assert found({}) == ids[::-1]
    paged = client.simulate_get("/workflows", params={"input": "{}", "limit": 2}).json
    rest = client.simulate_get("/workflows", params={"input": "{}", "cursor": paged["next"]}).json
    assert [w["id"] for w in paged["items"] + rest["items"]] == ids[::-1]


@pytest.mark.parametrize(
    ("raw", "status", "path"),
    [
        ('{"order_id": 42', 422, "input"),
        ('{"x": NaN}', 422, "input.x"),
        ("[1, 2]", 422, "input"),
        ('"order"', 422, "input"),
        ('{"x": "' + "y" * 5000 + '"}', 422, "input"),
    ],
)
def test_an_input_filter_that_is_not_a_json_object_is_refused_naming_the_parameter(client, raw, status, path):
    result = client.simulate_get("/workflows", params={"input": raw})
    assert result.status_code == status
    assert result.json["errors"][0]["path"] == path


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        # The two: SQLite answered 503 "The database cannot be reached" to both.
        ('{"a":' * 11 + "1" + "}" * 11, "nests objects and arrays deeper than 8 levels"),
        (json.dumps({"a": list(range(493))}), "the array at $.a has 493 elements; a filter's arrays may have at most"),
    ],
    ids=["nested-11", "array-493"],
)
def test_an_input_filter_beyond_its_limits_is_422_naming_the_limit(client, raw, message):
    result = client.simulate_get("/workflows", params={"input": raw})
    assert result.status_code == 422, result.text
    assert result.json["errors"][0]["path"] == "input"
    assert message in result.json["errors"][0]["message"]


def test_the_engine_deletes_workflows_past_retention(embedded_settings):
    settings = dataclasses.replace(embedded_settings, retention_days=7.0, retention_interval_s=0.2)
    with EmbeddedFlow(settings) as flow:
        client = falcon.testing.TestClient(create_app(runtime=flow.runtime))
        old, recent = (client.simulate_post("/workflows", json={"name": "DummyWorkflow"}).json["id"] for _ in "ab")
        finished(client, old)
        finished(client, recent)
        with flow.runtime.store.unit_of_work():
            WorkflowRecord.update(finished_at=utcnow() - timedelta(days=8)).where(WorkflowRecord.id == old).execute()
        wait_for(lambda: rows_of(flow, old)["workflows"] == 0, what="retention to delete the old workflow")
        assert rows_of(flow, old) == dict.fromkeys(("workflows", "activities", "events", "timers", "outbox"), 0)
        assert rows_of(flow, recent)["workflows"] == 1
        assert flow.engine.retention.deleted == 1
