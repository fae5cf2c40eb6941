"""A workflow's priority end to end in one process (SQLite, the in-process broker): given
at each door (HTTP, the Dramatiq start message, a schedule's ticks and its trigger, the
embedded ``start``), shown by the API and filtered by its list, inherited by a child
workflow. The AMQP door is tested against RabbitMQ (tests/integration/test_amqp_start.py),
the CLI in tests/embedded/test_cli.py and test_cli_remote.py."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import dramatiq
import falcon.testing
import pytest

from api.app import create_app
from flow.core.lineage import child_id
from flow.errors import InvalidInput
from flow.process.embedded import EmbeddedFlow
from flow.service.senders import MESSAGE_NAMESPACE
from flow.settings import Settings
from flow.testing.definitions import embedded_env
from tests.conftest import wait_for

DEFINITIONS = {
    "Child": {"name": "Child", "activities": [{"name": "EchoActivity"}]},
    "Parent": {"name": "Parent", "activities": [{"id": "child", "workflow": "Child"}]},
    "Grandparent": {"name": "Grandparent", "activities": [{"id": "parent", "workflow": "Parent"}]},
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


def test_http_start_takes_a_priority_and_the_view_shows_it(client, flow):
    urgent = client.simulate_post("/workflows", json={"name": "Child", "priority": 1})
    assert urgent.status_code == 201, urgent.text
    assert urgent.json["priority"] == 1
    plain = client.simulate_post("/workflows", json={"name": "Child"}).json
    assert plain["priority"] == 3
    assert flow.wait(urgent.json["id"], timeout_s=30).state.priority == 1  # and its run keeps it
    assert client.simulate_get(f"/workflows/{urgent.json['id']}").json["priority"] == 1
    assert flow.runtime.store.get(plain["id"]).state.priority == 3


@pytest.mark.parametrize("bad", [0, 6, "1", 2.5, 2.0, True])
def test_http_start_refuses_a_bad_priority_naming_the_field(client, flow, bad):
    response = client.simulate_post("/workflows", json={"name": "Child", "priority": bad})
    assert response.status_code == 422
    assert response.json["errors"][0]["path"] == "$.priority"
    assert "an integer from 1 (first) to 5 (last)" in response.json["errors"][0]["message"]
    assert flow.runtime.store.list_workflows() == []


def test_the_list_filters_by_priority_and_refuses_a_bad_one(client):
    ids = {p: client.simulate_post("/workflows", json={"name": "Child", "priority": p}).json["id"] for p in (1, 2, 5)}
    page = client.simulate_get("/workflows", params={"priority": "2"}).json
    assert [w["id"] for w in page["items"]] == [ids[2]]
    assert page["items"][0]["priority"] == 2
    everything = client.simulate_get("/workflows").json["items"]
    assert {w["id"]: w["priority"] for w in everything} == {ids[p]: p for p in ids}
    for bad in ("0", "6", "x", "1.0"):
        response = client.simulate_get("/workflows", params={"priority": bad})
        assert response.status_code == 422, bad
        assert response.json["errors"][0]["path"] == "priority"


def test_the_dramatiq_start_message_takes_a_priority(flow):
    message = dramatiq.Message(
        queue_name=flow.settings.engine_queue,
        actor_name="flow.start_workflow",
        args=(),
        kwargs={"name": "Child", "input_data": {}, "priority": 5},
        options={},
    )
    flow.runtime.broker.enqueue(message)
    workflow_id = str(uuid.uuid5(MESSAGE_NAMESPACE, message.message_id))
    assert wait_for(lambda: flow.runtime.store.list_workflows(), timeout_s=30, what="the workflow")[0].state.id == (
        workflow_id
    )
    assert flow.wait(workflow_id, timeout_s=30).state.priority == 5


def test_the_embedded_start_takes_a_priority_and_refuses_a_bad_one(flow):
    assert flow.wait(flow.start("Child", priority=4), timeout_s=30).state.priority == 4
    with pytest.raises(InvalidInput, match="priority"):
        flow.start("Child", priority=9)


def test_a_child_and_its_own_child_inherit_the_priority(client, flow):
    grandparent = client.simulate_post("/workflows", json={"name": "Grandparent", "priority": 2}).json
    assert flow.wait(grandparent["id"], timeout_s=60).state.status == "Finished"
    parent_id = child_id(grandparent["id"], "parent")
    grandchild_id = child_id(parent_id, "child")
    for workflow_id in (parent_id, grandchild_id):
        assert client.simulate_get(f"/workflows/{workflow_id}").json["priority"] == 2
    children = client.simulate_get("/workflows", params={"parent_id": grandparent["id"]}).json["items"]
    assert [(w["id"], w["priority"]) for w in children] == [(parent_id, 2)]


def test_a_child_of_a_default_workflow_has_the_default(flow):
    parent_id = flow.start("Parent")
    flow.wait(parent_id, timeout_s=60)
    assert flow.runtime.store.get(child_id(parent_id, "child")).state.priority == 3


def test_a_schedule_starts_its_workflows_with_its_priority(client, flow):
    body = {"workflow": "Child", "cron": "* * * * * *", "priority": 1}
    response = client.simulate_put("/schedules/urgent", json=body)
    assert response.status_code == 201, response.text
    assert response.json["priority"] == 1

    def a_run() -> str | None:
        runs = client.simulate_get("/schedules/urgent").json["recent_runs"]
        return runs[0]["workflow_id"] if runs else None

    ticked = wait_for(a_run, timeout_s=30, what="a tick's workflow")
    assert flow.wait(ticked, timeout_s=30).state.priority == 1
    client.simulate_post("/schedules/urgent/pause")
    triggered = client.simulate_post("/schedules/urgent/trigger")
    assert triggered.status_code == 201 and triggered.json["priority"] == 1


def test_a_schedule_refuses_a_bad_priority(client):
    response = client.simulate_put("/schedules/bad", json={"workflow": "Child", "cron": "0 9 * * *", "priority": 7})
    assert response.status_code == 422
    assert response.json["errors"][0]["path"] == "$.priority"
    assert client.simulate_get("/schedules/bad").status_code == 404
