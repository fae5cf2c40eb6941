"""Search attributes end to end in one process (SQLite, the in-process broker): given at
the start (HTTP, the Dramatiq start message, a schedule, the embedded ``start``), checked
against the definition's declarations, changed by an activity with its result, shown by
the workflow view and found by the list's ``attr.*`` filter and a batch's;
``flow start --attributes`` and ``flow list --attr`` against ``flow up``. The index behind
it is shown on PostgreSQL (tests/integration/test_attributes_index.py). The AMQP door
reads its body with the same ``parse_start_request`` (tests/unit/test_attributes.py) and
starts through the same starter."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import dramatiq
import falcon.testing
import pytest
import requests

from api.app import create_app
from flow.process.embedded import EmbeddedFlow
from flow.service.senders import MESSAGE_NAMESPACE
from flow.testing import flow_up
from flow.testing.definitions import embedded_env, write_definitions
from tests.conftest import wait_for
from tests.embedded.conftest import flow_of, run_cli

DECLARED = {"customer": "string", "amount": "number", "vip": "boolean", "due": "time", "stage": "string"}
DEFINITIONS = {
    "Order": {
        "name": "Order",
        "attributes": DECLARED,
        "activities": [{"name": "SetAttributesActivity", "config": {"attributes": {"stage": "shipped"}}}],
    },
    "Quiet": {"name": "Quiet", "attributes": DECLARED, "activities": [{"name": "NoopActivity"}]},
    "Refusing": {"name": "Refusing", "attributes": DECLARED, "activities": [{"name": "RefusingActivity"}]},
    # Two activities that set 20 names of their own each (undeclared, as design.md allows).
    "Many": {
        "name": "Many",
        "activities": [
            {
                "id": f"set{half}",
                "name": "SetAttributesActivity",
                "config": {"attributes": {f"n{half}_{i}": i for i in range(20)}},
            }
            for half in (1, 2)
        ],
    },
}


@pytest.fixture(scope="module")
def flow(tmp_path_factory) -> Iterator[EmbeddedFlow]:
    with flow_of(tmp_path_factory.mktemp("attributes"), DEFINITIONS) as running:
        yield running


@pytest.fixture(scope="module")
def client(flow) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(runtime=flow.runtime))


def ids(client, query: str) -> set[str]:
    response = client.simulate_get(f"/workflows?limit=500&{query}")
    assert response.status_code == 200, response.text
    return {item["id"] for item in response.json["items"]}


def test_a_start_with_attributes_is_found_by_them_and_an_activity_changes_one(client, flow):
    given = {"customer": "acme", "amount": 120.5, "vip": True, "due": "2026-12-24T00:00:00Z"}
    created = client.simulate_post("/workflows", json={"name": "Order", "attributes": given})
    assert created.status_code == 201, created.text
    assert created.json["attributes"] == given
    small = client.simulate_post("/workflows", json={"name": "Quiet", "attributes": {"customer": "acme", "amount": 5}})
    other = client.simulate_post("/workflows", json={"name": "Quiet", "attributes": {"customer": "zenith"}})
    big, small, other = created.json["id"], small.json["id"], other.json["id"]
    for workflow_id in (big, small, other):
        flow.wait(workflow_id, timeout_s=30)

    # The activity's set_attribute was committed with its result: the view and the filter see it.
    assert client.simulate_get(f"/workflows/{big}").json["attributes"] == {**given, "stage": "shipped"}
    assert ids(client, "attr.stage=shipped") == {big}

    assert ids(client, "attr.customer=acme") == {big, small}
    assert ids(client, "attr.customer=acme&attr.amount.gt=100") == {big}
    assert ids(client, "attr.amount.lte=5") == {small}
    assert ids(client, "attr.amount.ne=5") == {big}
    assert ids(client, "attr.amount=120.5&attr.vip=true") == {big}
    assert ids(client, "attr.due.gte=2026-12-01T00:00:00Z&attr.due.lt=2027-01-01") == {big}
    assert ids(client, "attr.customer=acme&status=Finished&name=Quiet") == {small}
    assert ids(client, "attr.customer=acme&status=Failed") == set()
    assert ids(client, "attr.customer=nobody") == set()


def test_an_undeclared_attribute_or_a_wrong_type_is_refused_naming_it(client, flow):
    undeclared = client.simulate_post("/workflows", json={"name": "Order", "attributes": {"colour": "red"}})
    assert undeclared.status_code == 422, undeclared.text
    assert "$.attributes.colour" in undeclared.text and "customer" in undeclared.text
    wrong = client.simulate_post("/workflows", json={"name": "Order", "attributes": {"amount": "lots"}})
    assert wrong.status_code == 422 and "$.attributes.amount" in wrong.text and "number" in wrong.text
    late = client.simulate_post("/workflows", json={"name": "Order", "attributes": {"due": "next week"}})
    assert late.status_code == 422 and "$.attributes.due" in late.text and "ISO 8601" in late.text
    with pytest.raises(Exception, match="vip"):
        flow.start("Order", {}, attributes={"vip": "yes"})


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("attr.amount.gt=lots", "attr.amount.gt"),
        ("attr.amount.between=1", "attr.amount.between"),
        ("attr.bad-name=1", "attr.bad-name"),
        # Times that are years 1 to 9999 as written but not in UTC: 500 before (OverflowError).
        ("attr.due.gt=0001-01-01T00:00:00%2B05:00", "attr.due.gt"),
        ("attr.due.lt=9999-12-31T23:59:59-05:00", "attr.due.lt"),
    ],
)
def test_a_malformed_attribute_filter_is_422_naming_the_parameter(client, query, named):
    response = client.simulate_get(f"/workflows?{query}")
    assert response.status_code == 422, response.text
    assert named in response.text


def test_flow_start_and_flow_list_take_attributes(tmp_path):
    directory = write_definitions(tmp_path / "workflows", DEFINITIONS)
    with flow_up(tmp_path, embedded_env(tmp_path, directory)) as url:
        env = {"FLOW_API_URL": url}
        started = run_cli("start", "Quiet", "--attributes", '{"customer": "acme", "amount": 120}', "--json", env=env)
        assert started.returncode == 0, started.stderr
        wanted = json.loads(started.stdout)["id"]
        assert requests.get(f"{url}/workflows/{wanted}", timeout=10).json()["attributes"] == {
            "customer": "acme",
            "amount": 120,
        }
        body = {"name": "Quiet", "attributes": {"customer": "acme", "amount": 7}}
        assert requests.post(f"{url}/workflows", json=body, timeout=10).status_code == 201
        listed = run_cli("list", "--attr", "customer=acme", "--attr", "amount.gt=100", "--json", env=env)
        assert [w["id"] for w in json.loads(listed.stdout)["items"]] == [wanted], listed.stderr
        bad = run_cli("list", "--attr", "amount.gt=lots", env=env)
        assert bad.returncode == 2 and "attr.amount.gt" in bad.stderr, (bad.returncode, bad.stderr)


def test_a_schedule_starts_its_workflows_with_its_attributes(client, flow):
    body = {"workflow": "Quiet", "cron": "0 0 1 1 *", "attributes": {"customer": "nightly"}}
    wrong = client.simulate_put("/schedules/nightly", json={**body, "attributes": {"colour": "red"}})
    assert wrong.status_code == 422 and "$.attributes.colour" in wrong.text
    put = client.simulate_put("/schedules/nightly", json=body)
    assert put.status_code == 201, put.text
    assert put.json["attributes"] == {"customer": "nightly"}
    started = client.simulate_post("/schedules/nightly/trigger")
    assert started.status_code == 201, started.text
    assert started.json["attributes"] == {"customer": "nightly"}
    assert ids(client, "attr.customer=nightly") == {started.json["id"]}


def test_the_dramatiq_start_message_takes_attributes(client, flow):
    message = dramatiq.Message(
        queue_name=flow.settings.engine_queue,
        actor_name="flow.start_workflow",
        args=(),
        kwargs={"name": "Quiet", "input_data": {}, "attributes": {"customer": "by-dramatiq", "amount": 3}},
        options={},
    )
    flow.runtime.broker.enqueue(message)
    workflow_id = str(uuid.uuid5(MESSAGE_NAMESPACE, message.message_id))
    wait_for(lambda: ids(client, "attr.customer=by-dramatiq") == {workflow_id}, timeout_s=30, what="the workflow")
    assert flow.runtime.store.get(workflow_id).attributes == {"customer": "by-dramatiq", "amount": 3}


def test_a_batch_takes_the_attribute_filter(client, flow):
    workflow_ids = {
        customer: flow.start("Refusing", {}, attributes={"customer": customer}) for customer in ("bulk", "other")
    }
    store = flow.runtime.store
    wait_for(lambda: all(store.get(i).state.status == "Failed" for i in workflow_ids.values()), timeout_s=30)
    body = {"operation": "retry", "filter": {"status": "Failed", "attr.customer": "bulk"}}
    started = client.simulate_post("/batches", json=body)
    assert started.status_code == 202, started.text
    assert started.json["filter"] == {"status": "Failed", "attr.customer": "bulk"}
    done = wait_for(
        lambda: (b := client.simulate_get(f"/batches/{started.json['id']}").json)["status"] == "finished" and b,
        timeout_s=30,
        what="the batch to finish",
    )
    assert (done["matched"], done["done"]) == (1, 1)

    def retried() -> dict[str, bool]:
        return {c: any(e["type"] == "retry-workflow" for e in store.events(i)) for c, i in workflow_ids.items()}

    # Done means sent: the engine applies the retry a moment later.
    wait_for(lambda: retried() == {"bulk": True, "other": False}, timeout_s=30, what="the one retry")
    wrong = client.simulate_post("/batches", json={"operation": "retry", "filter": {"attr.customer.gt": "x"}})
    assert wrong.status_code == 422 and "attr.customer.gt" in wrong.text


def test_a_time_outside_the_years_1_to_9999_in_utc_is_a_422_at_every_door_that_reads_one(client):
    # datetime.astimezone raised OverflowError, which nothing mapped: 500 before.
    early, late = "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"
    for moment in (early, late):
        start = client.simulate_post("/workflows", json={"name": "Order", "attributes": {"due": moment}})
        assert start.status_code == 422 and "$.attributes.due" in start.text, start.text
        batch = client.simulate_post("/batches", json={"operation": "cancel", "filter": {"attr.due.gt": moment}})
        assert batch.status_code == 422 and "attr.due.gt" in batch.text, batch.text
    # Read as text, an equality finds no workflow rather than failing.
    assert ids(client, f"attr.due={early.replace('+', '%2B')}") == set()


def test_a_workflow_holds_at_most_32_attributes_whatever_its_activities_set(client, flow):
    """32 names bound the workflow, not one result (the hostile review: two activities of 20
    names each gave one workflow 40 rows): the first activity's 20 and 12 of the second's."""
    created = client.simulate_post("/workflows", json={"name": "Many"})
    assert created.status_code == 201, created.text
    assert flow.wait(created.json["id"], timeout_s=30).state.status.value == "Finished"
    held = client.simulate_get(f"/workflows/{created.json['id']}").json["attributes"]
    assert len(held) == 32
    assert {f"n1_{i}" for i in range(20)} <= set(held)
