"""Definitions through the API: list, versions, register, validate."""

from __future__ import annotations

import copy
import json

from tests.conftest import ROOT


def dummy() -> dict:
    return json.loads((ROOT / "workflows" / "dummy_workflow.json").read_text())


def test_the_directory_is_registered_as_version_1(client):
    items = {d["name"]: d for d in client.simulate_get("/definitions").json["items"]}
    assert items["DummyWorkflow"]["version"] == 1
    assert items["ParallelWorkflow"]["activities"] == 4
    shown = client.simulate_get("/definitions/DummyWorkflow").json
    assert shown["version"] == 1
    assert [v["version"] for v in shown["versions"]] == [1]
    assert shown["definition"]["activities"][0]["name"] == "DoSomethingActivity"


def test_a_definition_says_each_steps_id_name_and_kind_so_no_client_infers_them(client):
    body = {
        "name": "EveryKind",
        "activities": [
            {"name": "EchoActivity"},
            {"name": "EchoActivity", "map": {"over": "input.xs"}},
            {"sleep_s": 1},
            {"wait_for": "approved"},
            {"workflow": "DummyWorkflow"},
            {"id": "last", "name": "EchoActivity"},
        ],
    }
    shown = client.simulate_put("/definitions/EveryKind", json=body).json
    assert shown["steps"] == [
        {"id": "EchoActivity.1", "name": "EchoActivity", "kind": "activity"},
        {"id": "EchoActivity", "name": "EchoActivity", "kind": "map"},
        {"id": "sleep", "name": "sleep", "kind": "sleep"},
        {"id": "wait", "name": "wait", "kind": "wait"},
        {"id": "DummyWorkflow", "name": "DummyWorkflow", "kind": "child"},
        {"id": "last", "name": "EchoActivity", "kind": "activity"},
    ]
    assert client.simulate_get("/definitions/EveryKind").json["steps"] == shown["steps"]


def test_a_changed_definition_is_a_new_version_and_running_workflows_keep_theirs(client, flow):
    first = client.simulate_post("/workflows", json={"name": "FailingWorkflow"}).json
    body = client.simulate_get("/definitions/FailingWorkflow").json["definition"]
    changed = copy.deepcopy(body)
    changed["activities"][1]["required"] = False  # the refusal no longer fails the workflow

    created = client.simulate_put("/definitions/FailingWorkflow", json=changed)
    assert created.status_code == 201
    assert created.json["version"] == 2
    assert created.headers["location"] == "/definitions/FailingWorkflow/versions/2"
    assert client.simulate_put("/definitions/FailingWorkflow", json=changed).status_code == 200  # same body

    second = client.simulate_post("/workflows", json={"name": "FailingWorkflow"}).json
    old, new = (flow.wait(w["id"], timeout_s=20).state for w in (first, second))
    assert (old.definition_version, old.status) == (1, "Failed")
    assert (new.definition_version, new.status) == (2, "Finished")
    assert client.simulate_get(f"/workflows/{second['id']}").json["definition_version"] == 2
    assert client.simulate_get("/definitions/FailingWorkflow/versions/1").json["definition"] == body


def test_an_invalid_definition_is_refused_with_json_paths(client):
    bad = dummy()
    bad["activities"][0]["independent"] = "sometimes"
    bad["activities"][1]["name"] = "NoSuchActivity"
    response = client.simulate_put("/definitions/DummyWorkflow", json=bad)
    assert response.status_code == 422
    paths = {e["path"] for e in response.json["errors"]}
    assert "$.activities[0].independent" in paths
    assert client.simulate_get("/definitions/DummyWorkflow").json["version"] == 1


def test_the_name_in_the_body_must_match_the_url(client):
    response = client.simulate_put("/definitions/Other", json=dummy())
    assert response.status_code == 422
    assert "$.name" in response.json["description"]


def test_validate_checks_without_registering(client):
    ok = client.simulate_post("/definitions/validate", json={**dummy(), "name": "Brand.New"})
    assert ok.status_code == 200 and ok.json["valid"] is True
    assert client.simulate_get("/definitions/Brand.New").status_code == 404
    bad = client.simulate_post("/definitions/validate", json={"name": "X", "activities": [], "extra": 1})
    assert bad.status_code == 422
    assert {"$", "$.activities"} <= {e["path"] for e in bad.json["errors"]}


def test_unknown_definitions_and_versions_are_404(client):
    assert client.simulate_get("/definitions/Nope").status_code == 404
    assert client.simulate_get("/definitions/DummyWorkflow/versions/9").status_code == 404
    assert client.simulate_get("/definitions/DummyWorkflow/versions/0").status_code == 404


def test_an_unknown_name_lists_ten_definitions_and_counts_the_rest(client):
    for i in range(12):
        body = {**dummy(), "name": f"Extra{i:02}"}
        assert client.simulate_put(f"/definitions/Extra{i:02}", json=body).status_code == 201
    total = len(client.simulate_get("/definitions").json["items"])
    for response in (
        client.simulate_get("/definitions/NoSuchWorkflow"),
        client.simulate_post("/workflows", json={"name": "NoSuchWorkflow"}),
    ):
        assert response.status_code in (404, 422)
        description = response.json["description"]
        assert "known: BrokenOptionalWorkflow, DummyWorkflow, Extra00," in description
        assert description.endswith(f"and {total - 10} more (GET /definitions))")
        assert "Extra11" not in description


# -- regressions found by a hostile review of the graph features ---------------------


def test_review_a_deeply_nested_condition_is_422_not_500(client):
    """Review (fixed): jmespath.compile recurses per nesting level and RecursionError is
    not a JMESPathError, so compile_condition lets it out of parse(): a 1,000-character
    ``when`` (within the schema's maxLength) makes PUT and validate answer 500."""
    body = {**dummy(), "name": "Deep"}
    body["activities"][0]["when"] = "!" * 999 + "@"
    for response in (
        client.simulate_post("/definitions/validate", json=body),
        client.simulate_put("/definitions/Deep", json=body),
    ):
        assert response.status_code == 422, response.text[:300]
        assert response.json["errors"][0]["path"] == "$.activities[0].when"
