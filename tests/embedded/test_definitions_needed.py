"""Issue 28 item 1: a DELETE of a definition version that another definition or a
running workflow still needs is refused (409 naming who needs it), and a definition
that has become invalid is left out with a log line and shown as broken, so it never
stops the others from loading."""

from __future__ import annotations

import json
import logging

import falcon.testing

from api.app import create_app
from flow.process.embedded import EmbeddedFlow
from tests.conftest import wait_for

API_DEF = {"name": "ApiDef", "activities": [{"name": "EchoActivity"}]}
FILE_PARENT = {"name": "FileParent", "activities": [{"id": "c", "workflow": "ApiDef"}]}
WAITING_PARENT = {
    "name": "WaitingParent",
    "activities": [{"id": "w", "wait_for": "go"}, {"id": "c", "workflow": "Child", "version": 1}],
}


def app(running: EmbeddedFlow) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(runtime=running.runtime))


def test_deleting_a_version_a_registered_definition_needs_is_409_naming_it(embedded_settings):
    with EmbeddedFlow(embedded_settings) as running:
        client = app(running)
        assert client.simulate_put("/definitions/ApiDef", json=API_DEF).status_code == 201
        assert (
            client.simulate_put("/definitions/ApiParent", json={**FILE_PARENT, "name": "ApiParent"}).status_code == 201
        )
        refused = client.simulate_delete("/definitions/ApiDef/versions/1")
        assert refused.status_code == 409, refused.text
        assert "ApiParent version 1" in refused.json["description"]
        assert client.simulate_get("/definitions/ApiDef/versions/1").status_code == 200


def test_deleting_a_version_a_running_workflows_child_step_needs_is_409(embedded_settings):
    with EmbeddedFlow(embedded_settings) as running:
        client = app(running)
        child = {"name": "Child", "activities": [{"name": "EchoActivity"}]}
        assert client.simulate_put("/definitions/Child", json=child).status_code == 201
        assert client.simulate_put("/definitions/WaitingParent", json=WAITING_PARENT).status_code == 201
        started = client.simulate_post("/workflows", json={"name": "WaitingParent"}).json
        # The parent's newest version is replaced by one that needs no child: only the
        # running workflow (started with version 1) still needs Child version 1.
        replaced = {"name": "WaitingParent", "activities": [{"id": "w", "wait_for": "go"}]}
        assert client.simulate_put("/definitions/WaitingParent", json=replaced).status_code == 201
        refused = client.simulate_delete("/definitions/Child/versions/1")
        assert refused.status_code == 409, refused.text
        assert "WaitingParent version 1" in refused.json["description"]
        assert "In Progress" in refused.json["description"]
        assert client.simulate_post(f"/workflows/{started['id']}/cancel").status_code == 202
        wait_for(lambda: client.simulate_get(f"/workflows/{started['id']}").json["status"] == "Cancelled")
        assert client.simulate_delete("/definitions/WaitingParent/versions/1").status_code == 204
        assert client.simulate_delete("/definitions/Child/versions/1").status_code == 204


def test_a_definition_that_became_invalid_is_left_out_and_shown_broken(embedded_settings, definitions_dir, caplog):
    # The sequence, with the DELETE done behind the API's back (as an older
    # release allowed): the file definition FileParent now names a definition that is gone.
    with EmbeddedFlow(embedded_settings) as running:
        client = app(running)
        assert client.simulate_put("/definitions/ApiDef", json=API_DEF).status_code == 201
        running.runtime.store.delete_definition_version("ApiDef", 1)
    (definitions_dir / "FileParent.json").write_text(json.dumps(FILE_PARENT))
    (definitions_dir / "Unreadable.json").write_text("{not json")
    with caplog.at_level(logging.ERROR), EmbeddedFlow(embedded_settings) as running:
        client = app(running)
        listed = client.simulate_get("/definitions")
        assert listed.status_code == 200, listed.text
        assert "DummyWorkflow" in {d["name"] for d in listed.json["items"]}
        broken = {d["source"].rsplit("/", 1)[-1]: d for d in listed.json["broken"]}
        assert set(broken) == {"FileParent.json", "Unreadable.json"}
        assert broken["FileParent.json"]["name"] == "FileParent"
        assert "unknown workflow definition 'ApiDef'" in broken["FileParent.json"]["error"]
        started = client.simulate_post("/workflows", json={"name": "DummyWorkflow"})
        assert started.status_code == 201, started.text
        # The PUT that restores ApiDef works, and so does a schedule's.
        assert client.simulate_put("/definitions/ApiDef", json=API_DEF).status_code == 201
        schedule = {"workflow": "DummyWorkflow", "cron": "0 0 1 1 *"}
        assert client.simulate_put("/schedules/yearly", json=schedule).status_code == 201
    logged = [r.getMessage() for r in caplog.records]
    assert any("FileParent.json" in m and "left out" in m for m in logged), logged


def test_a_file_whose_failure_handler_workflow_is_gone_is_left_out_as_a_childs_would_be(
    embedded_settings, definitions_dir
):
    saga = {
        "name": "FileSaga",
        "config": {"on_failure": {"workflow": "ApiDef"}},
        "activities": [{"name": "EchoActivity"}],
    }
    (definitions_dir / "FileSaga.json").write_text(json.dumps(saga))
    (definitions_dir / "FileParent.json").write_text(json.dumps(FILE_PARENT))
    with EmbeddedFlow(embedded_settings) as running:
        broken = {d["name"]: d["error"] for d in app(running).simulate_get("/definitions").json["broken"]}
    assert set(broken) == {"FileSaga", "FileParent"}
    assert "$.config.on_failure.workflow: unknown workflow definition 'ApiDef': register it first" in broken["FileSaga"]
    assert "$.activities[0].workflow: unknown workflow definition 'ApiDef': register it first" in broken["FileParent"]
