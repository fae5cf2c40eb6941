"""The Falcon API through ``falcon.testing``, on the embedded runtime."""

from __future__ import annotations

import json

import falcon.testing
import pytest

from api.app import create_app
from flow.persistence.models import WorkflowRecord
from flow.process.embedded import EmbeddedFlow
from tests.conftest import wait_for


def workflow_count(flow: EmbeddedFlow) -> int:
    with flow.runtime.store.unit_of_work():
        return WorkflowRecord.select().count()


def finished(client, workflow_id: str) -> dict:
    def ended():
        body = client.simulate_get(f"/workflows/{workflow_id}").json
        return body if body["status"] != "In Progress" else None

    return wait_for(ended, timeout_s=20, what=f"workflow {workflow_id} to end")


def test_post_creates_and_runs_a_workflow(client):
    result = client.simulate_post("/workflows", json={"name": "DummyWorkflow", "input_data": {"x": 1}})
    assert result.status_code == 201
    body = result.json
    assert result.headers["location"] == f"/workflows/{body['id']}"
    assert body["status"] == "In Progress"
    assert body["name"] == "DummyWorkflow"

    done = finished(client, body["id"])
    assert done["status"] == "Finished"
    assert done["input_data"] == {"x": 1}
    assert done["created_at"].endswith("Z") and done["finished_at"]
    for activity in done["activities"]:
        assert activity["status"] == "Succeeded"
        assert activity["attempt"] == 1
        assert activity["started_at"] and activity["finished_at"]
        assert activity["duration_ms"] >= 0
        assert activity["error"] is None


def test_events_are_the_history_in_order(client):
    workflow_id = client.simulate_post("/workflows", json={"name": "RetryWorkflow"}).json["id"]
    finished(client, workflow_id)
    items = client.simulate_get(f"/workflows/{workflow_id}/events").json["items"]
    kinds = [e["type"] for e in items]
    assert kinds[0] == "start-workflow" and kinds[-1] == "workflow-finished"
    assert kinds.count("reschedule-activity") == 2
    assert [e["id"] for e in items] == sorted(e["id"] for e in items)
    page = client.simulate_get(f"/workflows/{workflow_id}/events", params={"limit": 2}).json
    assert len(page["items"]) == 2
    rest = client.simulate_get(f"/workflows/{workflow_id}/events", params={"after": page["next"]}).json
    assert [e["id"] for e in page["items"] + rest["items"]] == [e["id"] for e in items]


def test_failed_activity_shows_its_error(client):
    workflow_id = client.simulate_post("/workflows", json={"name": "FailingWorkflow"}).json["id"]
    done = finished(client, workflow_id)
    assert done["status"] == "Failed"
    assert "RefusingActivity" in done["error"]
    assert done["activities"][1]["error"] == "refused on purpose"


def test_idempotency_key_returns_the_first_workflow(client, flow):
    headers = {"Idempotency-Key": "order-42"}
    first = client.simulate_post("/workflows", json={"name": "DummyWorkflow"}, headers=headers)
    second = client.simulate_post("/workflows", json={"name": "DummyWorkflow"}, headers=headers)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json["id"] == second.json["id"]
    assert workflow_count(flow) == 1


def test_list_is_newest_first_with_a_cursor(client):
    ids = [client.simulate_post("/workflows", json={"name": "DummyWorkflow"}).json["id"] for _ in range(3)]
    page = client.simulate_get("/workflows", params={"limit": 2}).json
    assert [w["id"] for w in page["items"]] == ids[::-1][:2]
    rest = client.simulate_get("/workflows", params={"limit": 2, "cursor": page["next"]}).json
    assert [w["id"] for w in rest["items"]] == ids[:1]
    assert rest["next"] is None
    filtered = client.simulate_get("/workflows", params={"name": "NoSuch"}).json
    assert filtered["items"] == []
    all_three = client.simulate_get("/workflows", params={"created_after": "2000-01-01T00:00:00Z"}).json["items"]
    assert len(all_three) == 3
    assert client.simulate_get("/workflows", params={"created_before": "2000-01-01T00:00:00Z"}).json["items"] == []
    bad = client.simulate_get("/workflows", params={"created_after": "yesterday"})
    assert bad.status_code == 422 and "ISO 8601" in bad.json["description"]


BAD_POSTS = [
    # (body bytes, content type, expected status, text in the description)
    (b'{"name": "DummyWorkflow",', "application/json", 400, "not valid JSON"),
    (b'{"name": "DummyWorkflow", "input_data": {"x": NaN}}', "application/json", 400, "$.input_data.x"),
    (b'{"name": "NoSuchWorkflow"}', "application/json", 422, "NoSuchWorkflow"),
    (b'{"input_data": {}}', "application/json", 422, "$.name"),
    (b'{"name": "DummyWorkflow", "input_data": [1]}', "application/json", 422, "$.input_data"),
    (b'{"name": "DummyWorkflow", "status": "Finished"}', "application/json", 422, "$.status"),
    (b'{"name": "DummyWorkflow", "id": "mine"}', "application/json", 422, "$.id"),
    (b"[1, 2]", "application/json", 422, "JSON object"),
    (b"name=DummyWorkflow", "application/x-www-form-urlencoded", 415, "application/json"),
    (b'{"name": "DummyWorkflow", "idempotency_key": 7}', "application/json", 422, "$.idempotency_key"),
]


@pytest.mark.parametrize(("body", "content_type", "status", "text"), BAD_POSTS)
def test_bad_posts_get_a_clear_error_and_create_nothing(client, flow, body, content_type, status, text):
    result = client.simulate_post("/workflows", body=body, headers={"Content-Type": content_type})
    assert result.status_code == status
    assert text in result.json["description"]
    assert result.json["title"]
    assert workflow_count(flow) == 0


def test_after_hostile_starts_the_api_reads_back_as_strict_json(client, flow):
    from tests.hostile import START_BODIES, post_json

    for _, body, _, _ in START_BODIES:
        post_json(client, "/workflows", body)
    created = client.simulate_post("/workflows", json={"name": "DummyWorkflow", "input_data": {"ok": "caf\u00e9 😀"}})
    assert created.status_code == 201
    listed = client.simulate_get("/workflows")
    assert [w["id"] for w in json.loads(listed.text)["items"]] == [created.json["id"]]
    assert json.loads(client.simulate_get(f"/workflows/{created.json['id']}").text)["input_data"]["ok"] == "café 😀"


def test_a_body_over_the_limit_is_413_even_without_content_length(client, flow):
    big = json.dumps({"name": "DummyWorkflow", "input_data": {"blob": "x" * 2_000_000}}).encode()

    result = client.simulate_post("/workflows", body=big, headers={"Content-Type": "application/json"})
    assert result.status_code == 413

    # Chunked: no Content-Length, the server marks the input as terminated.
    environ = falcon.testing.create_environ(
        "/workflows", method="POST", body=big, headers={"Content-Type": "application/json"}
    )
    del environ["CONTENT_LENGTH"]
    environ["wsgi.input_terminated"] = True
    status = []
    b"".join(client.app(environ, lambda s, h, *a: status.append(s)))
    assert status[0].startswith("413")
    assert workflow_count(flow) == 0


def test_unknown_workflow_is_404(client):
    result = client.simulate_get("/workflows/nope")
    assert result.status_code == 404
    assert "nope" in result.json["description"]
    assert client.simulate_get("/workflows/nope/events").status_code == 404


def test_wrong_method_is_405(client):
    assert client.simulate_delete("/workflows").status_code == 405


def test_health_reports_the_database(client):
    assert client.simulate_get("/health").json == {"status": "ok", "database": "ok", "broker": "ok"}


def test_with_a_token_every_route_but_health_needs_it(flow):
    import dataclasses

    runtime = flow.runtime
    runtime.settings = dataclasses.replace(runtime.settings, api_token="s3cret")
    client = falcon.testing.TestClient(create_app(runtime=runtime))
    assert client.simulate_get("/health").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        result = client.simulate_get("/workflows", headers=headers)
        assert result.status_code == 401
        assert "Bearer" in result.headers["www-authenticate"]
        assert client.simulate_post("/workflows", json={"name": "DummyWorkflow"}, headers=headers).status_code == 401
    assert workflow_count(flow) == 0
    assert client.simulate_get("/workflows", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_metrics_show_workflows_engines_and_their_partitions(flow, client):
    workflow_id = flow.start("DummyWorkflow")
    flow.wait(workflow_id, timeout_s=30)
    response = client.simulate_get("/metrics")
    assert response.status_code == 200
    text = response.text
    assert 'flow_workflows{status="Finished"} 1.0' in text
    # The embedded engine holds every partition; none is waiting for a takeover.
    assert f'flow_engine_partitions{{engine="{flow.engine.engine_id}"}} 64.0' in text
    assert f'flow_engine_commits_refused{{engine="{flow.engine.engine_id}"}} 0.0' in text
    assert "flow_partitions_unowned 0.0" in text


def test_each_step_of_a_workflow_says_its_kind_and_only_its_kind_fills_its_keys(client):
    body = {
        "name": "EveryKind",
        "activities": [
            {"id": "each", "name": "EchoActivity", "map": {"over": "input.xs"}},
            {"sleep_s": 0.01},
            {"wait_for": "go", "timeout_s": 60},
            {"workflow": "DummyWorkflow"},
            {"id": "after", "name": "EchoActivity"},
        ],
    }
    assert client.simulate_put("/definitions/EveryKind", json=body).status_code == 201
    workflow_id = client.simulate_post("/workflows", json={"name": "EveryKind", "input_data": {"xs": [1, 2]}}).json[
        "id"
    ]
    assert client.simulate_post(f"/workflows/{workflow_id}/signals/go", json={"payload": 1}).status_code == 202
    done = finished(client, workflow_id)
    assert done["status"] == "Finished", done["error"]
    kinds = {a["id"]: a["kind"] for a in done["activities"]}
    assert kinds == {
        "each": "map",
        "sleep": "sleep",
        "wait": "wait",
        "DummyWorkflow": "child",
        "after": "activity",
        "each[0]": "item",
        "each[1]": "item",
    }
    by_id = {a["id"]: a for a in done["activities"]}
    assert by_id["each"]["map"] == {"over": "input.xs", "max_concurrency": None} and by_id["each"]["wait_for"] is None
    assert (by_id["each[1]"]["parent"], by_id["each[1]"]["item"]) == ("each", 2)
    assert by_id["wait"]["wait_for"] == "go" and by_id["wait"]["map"] is None
    assert by_id["DummyWorkflow"]["child_id"] and by_id["after"]["workflow"] is None
