"""Event triggers on the embedded engine, through the API: 50 updates of one order in a
second with ``debounce_s: 2`` start exactly one workflow with the last event's data; a
resent event id starts nothing; a batch of at most 10 given 25 events starts 3 workflows;
``flow up`` SIGKILLed inside a debounce window, started again, still starts exactly one;
the Dramatiq door."""

from __future__ import annotations

import base64
import json
import os
import signal
from collections.abc import Iterator

import falcon.testing
import pytest
import requests

from api.app import create_app
from flow.process.embedded import EmbeddedFlow
from flow.testing import flow_up, flow_up_process
from flow.testing.definitions import embedded_env
from flow.wire import messages
from tests.conftest import wait_for
from tests.embedded.conftest import flow_of

ECHO = [{"name": "EchoActivity"}]
ORDER_SYNC = {
    "name": "OrderSync",
    "triggers": [{"event": "order.updated", "key": "data.order_id", "debounce_s": 2}],
    "activities": ECHO,
}
ON_PAID = {
    "name": "OnPaid",
    "triggers": [{"event": "order.paid", "when": "data.total > `100`", "input": "{order: data.order_id}"}],
    "activities": ECHO,
}
BATCHED = {
    "name": "Batched",
    "triggers": [{"event": "file.uploaded", "batch": {"max": 10, "wait_s": 1}}],
    "activities": ECHO,
}


@pytest.fixture(scope="module")
def flow(tmp_path_factory) -> Iterator[EmbeddedFlow]:
    """One flow for the module: each test has definitions and event ids of its own."""
    with flow_of(tmp_path_factory.mktemp("events"), {}) as running:
        yield running


@pytest.fixture(scope="module")
def client(flow) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(runtime=flow.runtime))


def register(client, *bodies: dict) -> None:
    for body in bodies:
        response = client.simulate_put(f"/definitions/{body['name']}", json=body)
        assert response.status_code in (200, 201), response.text


def send(client, event: dict) -> dict:
    response = client.simulate_post("/events", json=event)
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == f"/events/{event['id']}"
    return response.json


def workflows_of(client, name: str) -> list[dict]:
    response = client.simulate_get("/workflows", params={"name": name, "limit": "100"})
    assert response.status_code == 200, response.text
    return response.json["items"]


def passes_after(flow: EmbeddedFlow, count: int) -> None:
    """Wait until the engine's event ticker made ``count`` more passes: a window that was
    due by then is closed and its workflow started."""
    ticker = flow.engine.events
    target = ticker.passes + count
    wait_for(lambda: ticker.passes >= target, timeout_s=30, what=f"{count} event passes")


def test_fifty_updates_of_one_order_in_a_second_start_one_workflow_with_the_last_data(client, flow):
    register(client, ORDER_SYNC)
    for seq in range(50):
        answer = send(client, {"type": "order.updated", "id": f"upd-{seq}", "data": {"order_id": 7, "seq": seq}})
        assert answer["duplicate"] is False
        [matched] = answer["matched"]
        assert matched["state"] == "waiting" and matched["mode"] == "debounce" and matched["key"] == "7"
    # Every event of the window names its one workflow.
    resent = send(client, {"type": "order.updated", "id": "upd-49", "data": {"order_id": 7, "seq": 49}})
    workflow_id = resent["workflows"][0]
    assert client.simulate_get("/events/upd-0").json["workflows"] == [workflow_id]

    started = wait_for(lambda: workflows_of(client, "OrderSync"), timeout_s=30, what="the debounced workflow")
    passes_after(flow, 4)  # a second of passes: nothing else starts
    assert [w["id"] for w in workflows_of(client, "OrderSync")] == [workflow_id] == [started[0]["id"]]
    workflow = client.simulate_get(f"/workflows/{workflow_id}").json
    assert workflow["input_data"] == {"order_id": 7, "seq": 49}
    shown = client.simulate_get("/events/upd-0").json
    assert shown["matched"][0]["state"] == "started" and shown["matched"][0]["status"]


def test_a_resent_event_id_starts_nothing(client, flow):
    register(client, ON_PAID)
    first = send(client, {"type": "order.paid", "id": "pay-1", "data": {"order_id": 5, "total": 150}})
    assert first["duplicate"] is False and first["matched"][0]["state"] == "started"
    again = send(client, {"type": "order.paid", "id": "pay-1", "data": {"order_id": 5, "total": 150}})
    assert again["duplicate"] is True and again["workflows"] == first["workflows"]
    passes_after(flow, 4)
    [workflow] = workflows_of(client, "OnPaid")
    assert workflow["id"] == first["workflows"][0]
    assert client.simulate_get(f"/workflows/{workflow['id']}").json["input_data"] == {"order": 5}

    # Why nothing: the condition, and a type no trigger listens to.
    small = send(client, {"type": "order.paid", "id": "pay-2", "data": {"order_id": 6, "total": 20}})
    assert small["workflows"] == [] and "data.total > `100`" in small["reason"]
    nobody = send(client, {"type": "order.shipped", "id": "ship-1"})
    assert "no registered definition has a trigger for events of type 'order.shipped'" in nobody["reason"]
    listed = client.simulate_get("/events", params={"limit": "2"}).json
    assert [e["id"] for e in listed["items"]] == ["ship-1", "pay-2"] and listed["next"]
    rest = client.simulate_get("/events", params={"limit": "2", "cursor": listed["next"]}).json
    assert rest["items"][0]["id"] == "pay-1"
    assert client.simulate_get("/events/never-sent").status_code == 404
    assert client.simulate_post("/events", json={"type": "order.paid"}).status_code == 422


def test_a_batch_of_at_most_ten_given_25_events_starts_three_workflows(client, flow):
    register(client, BATCHED)
    for n in range(25):
        send(client, {"type": "file.uploaded", "id": f"file-{n}", "data": {"n": n}})
    found = wait_for(
        lambda: w if len(w := workflows_of(client, "Batched")) == 3 else None, timeout_s=30, what="three batches"
    )
    passes_after(flow, 4)
    assert len(workflows_of(client, "Batched")) == 3
    inputs = [client.simulate_get(f"/workflows/{w['id']}").json["input_data"]["events"] for w in found]
    assert sorted(len(events) for events in inputs) == [5, 10, 10]
    assert sorted(e["n"] for events in inputs for e in events) == list(range(25))


def test_a_definition_with_a_bad_trigger_is_refused(client):
    body = {**ORDER_SYNC, "triggers": [{"event": "order.updated", "key": "data.[", "debounce_s": -1}]}
    response = client.simulate_put("/definitions/OrderSync", json=body)
    assert response.status_code == 422
    assert {e["path"] for e in response.json["errors"]} == {"$.triggers[0].debounce_s"}
    body["triggers"][0]["debounce_s"] = 1
    response = client.simulate_put("/definitions/OrderSync", json=body)
    assert response.status_code == 422 and response.json["errors"][0]["path"] == "$.triggers[0].key"


def test_an_event_id_sent_again_with_other_data_or_type_is_a_409_and_changes_nothing(client, flow):
    # The id names one event, as an idempotency key names one start: before, a resend
    # with other data answered 202 "duplicate" and dropped that data without a word.
    register(client, ON_PAID)
    first = send(client, {"type": "order.paid", "id": "pay-9", "data": {"order_id": 19, "total": 150}})
    for other in ({"type": "order.paid", "data": {"order_id": 19, "total": 900}}, {"type": "order.refunded"}):
        response = client.simulate_post("/events", json={"id": "pay-9", **other})
        assert response.status_code == 409, response.text
        assert "pay-9" in response.json["description"] and "new id" in response.json["description"]
    again = send(client, {"type": "order.paid", "id": "pay-9", "data": {"order_id": 19, "total": 150}})
    assert again["duplicate"] is True and again["workflows"] == first["workflows"]
    assert client.simulate_get("/events/pay-9").json["data"] == {"order_id": 19, "total": 150}


def test_a_window_whose_definition_is_deleted_says_why_it_started_nothing(client, flow):
    # Before: the engine dropped the window without a trace and the event said "waiting"
    # for ever, its closes_at long past.
    gone = {"name": "GoneBatch", "triggers": [{"event": "gone.thing", "batch": {"max": 10, "wait_s": 0.5}}]}
    register(client, {**gone, "activities": ECHO})
    opened = send(client, {"type": "gone.thing", "id": "gone-1", "data": {"n": 1}})
    assert opened["matched"][0]["state"] == "waiting"
    assert client.simulate_delete("/definitions/GoneBatch/versions/1").status_code == 204
    passes_after(flow, 8)  # the window's time has come and its engine has seen it
    [matched] = client.simulate_get("/events/gone-1").json["matched"]
    assert matched["state"] == "failed" and "GoneBatch" in matched["error"], matched


@pytest.mark.parametrize("cursor", [[1, "a"], [["2026-01-01T00:00:00Z"], "a"], ["0001-01-01T00:00:00+05:00", "a"]])
def test_a_forged_events_cursor_is_a_422(client, cursor):
    # A time that is not text, or that leaves the years 1 to 9999 in UTC, was a 500.
    forged = base64.urlsafe_b64encode(json.dumps(cursor).encode()).decode().rstrip("=")
    response = client.simulate_get("/events", params={"cursor": forged})
    assert response.status_code == 422 and "cursor" in response.text, response.text


def test_flow_up_killed_inside_a_debounce_window_still_starts_exactly_one(tmp_path, definitions_dir):
    env = embedded_env(tmp_path, definitions_dir)
    slow = {**ORDER_SYNC, "triggers": [{"event": "order.updated", "key": "data.order_id", "debounce_s": 3}]}
    with flow_up_process(tmp_path, env, log="killed.log") as (url, killed):
        assert requests.put(f"{url}/definitions/OrderSync", json=slow, timeout=5).status_code == 201
        for seq in range(5):
            event = {"type": "order.updated", "id": f"k-{seq}", "data": {"order_id": 1, "seq": seq}}
            answer = requests.post(f"{url}/events", json=event, timeout=5)
            assert answer.status_code == 202, answer.text
        workflow_id = answer.json()["workflows"][0]
        # Killed inside the window (it closes 3 s after the last event): nothing started.
        assert requests.get(f"{url}/workflows/{workflow_id}", timeout=5).status_code == 404
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(30)
    with flow_up(tmp_path, env) as url:
        wait_for(
            lambda: requests.get(f"{url}/workflows/{workflow_id}", timeout=5).json().get("status") == "Finished",
            timeout_s=30,
            what="the window's workflow to finish",
        )
        listed = requests.get(f"{url}/workflows", params={"name": "OrderSync"}, timeout=5).json()["items"]
        assert [w["id"] for w in listed] == [workflow_id]
        shown = requests.get(f"{url}/workflows/{workflow_id}", timeout=5).json()
        assert shown["input_data"] == {"order_id": 1, "seq": 4}
        assert requests.get(f"{url}/events/k-0", timeout=5).json()["matched"][0]["state"] == "started"


def test_the_dramatiq_door_sends_an_event_as_post_does_and_a_redelivery_starts_nothing(client, flow):
    register(client, ON_PAID)
    event = {"type": "order.paid", "id": "dq-1", "data": {"order_id": 9, "total": 300}}
    task = flow.runtime.tasks[messages.SEND_EVENT]
    task.send(**event)
    task.send(**event)  # as a redelivery would
    shown = wait_for(
        lambda: (r := client.simulate_get("/events/dq-1")).status_code == 200 and r.json, timeout_s=30, what="the event"
    )

    def mine() -> list[str]:
        found = [w["id"] for w in workflows_of(client, "OnPaid")]
        return [i for i in found if client.simulate_get(f"/workflows/{i}").json["input_data"] == {"order": 9}]

    wait_for(mine, timeout_s=30, what="its workflow")
    passes_after(flow, 4)
    assert mine() == shown["workflows"]
