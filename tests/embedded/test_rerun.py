"""Rerun from a step and replay before deploying, end to end on the embedded runtime:
``POST /workflows/{id}/rerun``, ``PUT /definitions/{name}?check=running``,
``POST /definitions/{name}/replay`` and ``flow replay``."""

from __future__ import annotations

import json
from typing import Any

import falcon.testing
import pytest

from api.app import create_app
from flow.testing.definitions import embedded_env
from tests.conftest import wait_for
from tests.embedded.conftest import flow_of, run_cli

FAST = {"retry": {"max_attempts": 1}}
SHOP: dict[str, Any] = {
    "name": "Shop",
    "config": FAST,
    "activities": [
        {"name": "SwitchActivity", "id": "charge"},
        {"name": "SwitchActivity", "id": "ship", "config": {"refuse": True}},
        {"name": "SwitchActivity", "id": "notify"},
    ],
}
PLAIN: dict[str, Any] = {
    "name": "Plain",
    "config": FAST,
    "activities": [{**a, "config": {}} for a in SHOP["activities"]],
}
KID: dict[str, Any] = {"name": "Kid", "config": FAST, "activities": [{"name": "SwitchActivity", "id": "work"}]}
PARENT: dict[str, Any] = {
    "name": "Parent",
    "config": FAST,
    "activities": [{"name": "SwitchActivity", "id": "before"}, {"workflow": "Kid", "id": "kid"}],
}
#: Waits for a signal after its first step: a workflow that stays running.
HELD: dict[str, Any] = {
    "name": "Held",
    "config": FAST,
    "activities": [{"name": "SwitchActivity", "id": "first"}, {"id": "gate", "wait_for": "go"}],
}


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    base = tmp_path_factory.mktemp("rerun")
    with flow_of(base, {"Shop": SHOP, "Plain": PLAIN, "Held": HELD, "Kid": KID, "Parent": PARENT}) as running:
        yield base, running, falcon.testing.TestClient(create_app(runtime=running.runtime))


def ended(client, workflow_id: str) -> dict[str, Any]:
    def done():
        body = client.simulate_get(f"/workflows/{workflow_id}").json
        return body if body["status"] != "In Progress" else None

    return wait_for(done, timeout_s=20, what=f"workflow {workflow_id} to end")


def rerun_ended(client, workflow_id: str) -> dict[str, Any]:
    """The workflow once the run its rerun started has ended."""

    def done():
        types = [e["type"] for e in client.simulate_get(f"/workflows/{workflow_id}/events").json["items"]]
        rerun = types.index("rerun-workflow") if "rerun-workflow" in types else None
        if rerun is None or not {"workflow-finished", "workflow-failure"} & set(types[rerun:]):
            return None
        return client.simulate_get(f"/workflows/{workflow_id}").json

    return wait_for(done, timeout_s=20, what=f"the rerun of {workflow_id} to end")


def attempts(body: dict[str, Any]) -> dict[str, tuple[str, int]]:
    return {a["id"]: (a["status"], a["attempt"]) for a in body["activities"]}


def test_a_failed_workflow_reruns_from_the_failed_step_on_a_pinned_version(shop):
    _, _, client = shop
    workflow_id = client.simulate_post("/workflows", json={"name": "Shop"}).json["id"]
    failed = ended(client, workflow_id)
    assert failed["status"] == "Failed" and attempts(failed)["ship"] == ("Failed", 1)
    fixed = {**SHOP, "activities": [{**a, "config": {}} for a in SHOP["activities"]]}
    assert client.simulate_put("/definitions/Shop", json=fixed).json["version"] == 2

    reply = client.simulate_post(f"/workflows/{workflow_id}/rerun", json={"from": "ship", "version": 2, "by": "ops"})
    assert reply.status_code == 202, reply.text
    done = rerun_ended(client, workflow_id)
    assert done["status"] == "Finished", done
    # charge kept its outcome (one attempt); ship and what follows ran again.
    assert attempts(done) == {"charge": ("Succeeded", 1), "ship": ("Succeeded", 2), "notify": ("Succeeded", 1)}
    assert done["definition_version"] == 2
    history = client.simulate_get(f"/workflows/{workflow_id}/events").json["items"]
    asked = next(e for e in history if e["type"] == "rerun-requested")
    assert asked["data"] == {"from": "ship", "by": "ops"}
    rerun = next(e for e in history if e["type"] == "rerun-workflow")
    assert rerun["data"]["reset"] == ["ship", "notify"] and rerun["data"]["version"] == 2


def test_a_finished_workflow_reruns_from_a_step_with_a_new_input(shop):
    _, _, client = shop
    workflow_id = client.simulate_post("/workflows", json={"name": "Plain", "input_data": {"n": 1}}).json["id"]
    first = ended(client, workflow_id)
    assert first["status"] == "Finished"
    reply = client.simulate_post(f"/workflows/{workflow_id}/rerun", json={"from": "notify", "input_data": {"n": 2}})
    assert reply.status_code == 202
    done = rerun_ended(client, workflow_id)
    assert attempts(done) == {"charge": ("Succeeded", 1), "ship": ("Succeeded", 1), "notify": ("Succeeded", 2)}
    assert done["input_data"] == {"n": 2} and done["output"]["notify"]["input"] == {"n": 2}
    assert done["output"]["charge"]["input"] == {"n": 1}  # kept: its outcome is the first run's


def test_a_rerun_from_a_child_step_runs_its_finished_child_again(shop):
    _, _, client = shop
    parent = client.simulate_post("/workflows", json={"name": "Parent"}).json["id"]
    assert ended(client, parent)["status"] == "Finished"
    child_id = client.simulate_get(f"/workflows/{parent}").json["activities"][1]["child_id"]
    refused = client.simulate_post(f"/workflows/{child_id}/rerun", json={"from": "work"})
    assert refused.status_code == 409 and "rerun its parent" in refused.json["description"]
    assert client.simulate_post(f"/workflows/{parent}/rerun", json={"from": "kid"}).status_code == 202
    done = rerun_ended(client, parent)
    assert attempts(done) == {"before": ("Succeeded", 1), "kid": ("Succeeded", 2)}
    child = client.simulate_get(f"/workflows/{child_id}").json
    assert child["status"] == "Finished" and attempts(child) == {"work": ("Succeeded", 2)}
    assert done["output"]["kid"] == child["output"]


def test_a_rerun_is_refused_while_running_from_an_unknown_step_and_for_a_version_that_cannot_take_over(shop):
    _, _, client = shop
    held = client.simulate_post("/workflows", json={"name": "Held"}).json["id"]
    assert client.simulate_post(f"/workflows/{held}/rerun", json={"from": "first"}).status_code == 409
    workflow_id = client.simulate_post("/workflows", json={"name": "Shop"}).json["id"]
    ended(client, workflow_id)
    unknown = client.simulate_post(f"/workflows/{workflow_id}/rerun", json={"from": "nope"})
    assert unknown.status_code == 422 and "no step 'nope'" in unknown.json["description"]
    # A version without charge cannot take over a history in which charge ran.
    gone = {
        **SHOP,
        "activities": [{"name": "SwitchActivity", "id": "ship"}, {"name": "SwitchActivity", "id": "notify"}],
    }
    version = client.simulate_put("/definitions/Shop", json=gone).json["version"]
    refused = client.simulate_post(f"/workflows/{workflow_id}/rerun", json={"from": "ship", "version": version})
    assert refused.status_code == 409
    assert refused.json["workflows"][0]["divergences"][0]["change"] == "removed"
    client.simulate_post(f"/workflows/{held}/cancel")


def running_held(client) -> str:
    workflow_id = client.simulate_post("/workflows", json={"name": "Held"}).json["id"]
    wait_for(
        lambda: client.simulate_get(f"/workflows/{workflow_id}").json["activities"][1]["status"] == "Waiting",
        timeout_s=20,
        what="the workflow to wait for its signal",
    )
    return workflow_id


def test_put_with_check_running_refuses_a_version_that_would_break_running_workflows(shop):
    _, _, client = shop
    workflow_id = running_held(client)
    broken = {**HELD, "activities": [{"id": "gate", "wait_for": "go"}]}  # "first" ran and is gone
    refused = client.simulate_put("/definitions/Held", json=broken, params={"check": "running"})
    assert refused.status_code == 409, refused.text
    assert workflow_id in [v["workflow_id"] for v in refused.json["workflows"]]
    grown = {**HELD, "activities": [*HELD["activities"], {"name": "SwitchActivity", "id": "after"}]}
    report = client.simulate_post("/definitions/Held/replay", json=grown).json
    assert report["incompatible"] == 0 and report["compatible"] >= 1
    assert client.simulate_put("/definitions/Held", json=grown, params={"check": "running"}).status_code == 201
    client.simulate_post(f"/workflows/{workflow_id}/cancel")


@pytest.mark.parametrize(
    ("child", "says"),
    [("Nope", "unknown workflow definition 'Nope'"), ("Held", "Held")],
    ids=["unknown-child", "reaches-itself"],
)
def test_a_replay_of_a_definition_that_cannot_be_registered_is_refused_as_put_refuses_it(shop, child, says):
    """A report that passes a body PUT would refuse (its child unknown, or reaching itself)
    tells CI the change is safe when it cannot even be deployed."""
    _, _, client = shop
    body = {**HELD, "activities": [*HELD["activities"], {"workflow": child, "id": "after"}]}
    put = client.simulate_put("/definitions/Held", json=body)
    assert put.status_code == 422, put.text
    refused = client.simulate_post("/definitions/Held/replay", json=body)
    assert refused.status_code == 422, refused.text
    assert says in refused.json["description"] and refused.json["errors"] == put.json["errors"]


def test_flow_replay_exits_0_when_every_running_workflow_is_compatible_and_1_with_the_report(shop, tmp_path):
    base, _, client = shop
    workflow_id = running_held(client)
    env = embedded_env(base, base / "workflows")
    grown = tmp_path / "grown.json"
    grown.write_text(json.dumps({**HELD, "activities": [*HELD["activities"], {"name": "SwitchActivity"}]}))
    broken = tmp_path / "broken.json"
    broken.write_text(
        json.dumps({**HELD, "activities": [{"name": "SwitchActivity", "id": "second"}, *HELD["activities"]]})
    )

    ok = run_cli("replay", str(grown), env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "incompatible" not in ok.stdout and " 0 not" in ok.stdout
    bad = run_cli("replay", str(broken), "--json", "--database", env["FLOW_DATABASE_URL"], env=env)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    report = json.loads(bad.stdout)
    verdict = next(v for v in report["verdicts"] if v["workflow_id"] == workflow_id)
    assert not verdict["compatible"]
    assert {d["change"] for d in verdict["divergences"]} == {"dependency"}  # "first" now waits for "second"
    table = run_cli("replay", str(broken), env={**env, "COLUMNS": "250"})
    assert table.returncode == 1 and workflow_id in table.stdout and "now depends on second" in table.stdout
    client.simulate_post(f"/workflows/{workflow_id}/cancel")
