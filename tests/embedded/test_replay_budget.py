"""The API's replay has a budget: ``POST /definitions/{name}/replay`` and ``PUT
/definitions/{name}?check=running`` check at most ``API_MAX_STEPS`` steps of running
workflows in the request (each workflow's steps, a map's items included), and past it
answer 422 pointing at ``flow replay``, which reads the database with no such budget —
instead of holding an API thread for as long as there are running workflows."""

from __future__ import annotations

from collections.abc import Iterator

import falcon.testing
import pytest

from api.app import create_app
from flow.core.vocabulary import ActivityStatus
from flow.process.embedded import EmbeddedFlow
from flow.service import replay
from tests.conftest import wait_for
from tests.embedded.conftest import flow_of

HELD = {
    "name": "Held",
    "activities": [{"id": "first", "name": "EchoActivity"}, {"id": "gate", "wait_for": "go"}],
}


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedFlow]:
    with flow_of(tmp_path_factory.mktemp("replay_budget"), {"Held": HELD}) as running:
        ids = [running.start("Held", {"n": n}) for n in range(3)]
        store = running.runtime.store
        wait_for(
            lambda: all(store.get(i).state.activities[0].status is ActivityStatus.SUCCEEDED for i in ids),
            timeout_s=30,
            what="three workflows waiting",
        )
        yield running


@pytest.fixture
def client(flow: EmbeddedFlow) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(runtime=flow.runtime))


def test_a_replay_within_the_budget_reports_every_running_workflow(client, monkeypatch):
    monkeypatch.setattr(replay, "API_MAX_STEPS", 6)  # three workflows of two steps
    response = client.simulate_post("/definitions/Held/replay", json=HELD)
    assert response.status_code == 200, response.text
    assert response.json["workflows"] == 3


def test_a_replay_past_the_budget_is_refused_naming_flow_replay(client, monkeypatch):
    monkeypatch.setattr(replay, "API_MAX_STEPS", 5)
    response = client.simulate_post("/definitions/Held/replay", json=HELD)
    assert response.status_code == 422, response.text
    assert "flow replay" in response.json["description"]
    assert response.json["errors"][0]["path"] == "name"


def test_a_check_running_past_the_budget_is_refused_and_registers_nothing(client, flow, monkeypatch):
    monkeypatch.setattr(replay, "API_MAX_STEPS", 5)
    changed = {**HELD, "activities": [*HELD["activities"], {"id": "after", "name": "EchoActivity"}]}
    response = client.simulate_put("/definitions/Held?check=running", json=changed)
    assert response.status_code == 422, response.text
    assert response.json["errors"][0]["path"] == "check"
    assert "flow replay" in response.json["description"]
    versions = client.simulate_get("/definitions/Held").json
    assert versions["version"] == 1, versions


def test_flow_replays_report_has_no_budget(flow, monkeypatch):
    monkeypatch.setattr(replay, "API_MAX_STEPS", 1)
    definition = flow.runtime.service.definitions.get("Held")[0]
    assert replay.report(flow.runtime.store, definition)["workflows"] == 3
