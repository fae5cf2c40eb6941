"""Per-namespace quotas (issue 27) on the embedded flow: starts per second and running
workflows answer 429 with Retry-After past the quota; other namespaces are not
affected (the flood's latency: python -m bench.namespace_flood). Every door that starts a
workflow by name fits them: an event trigger's start and a Dramatiq start message wait,
refused, until the namespace is below its quota; a schedule's trigger answers 429."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import falcon.testing
import pytest

from api.app import create_app
from flow.core.namespaces import entry_line
from flow.process.embedded import EmbeddedFlow
from flow.service.senders import MESSAGE_NAMESPACE
from flow.settings import Settings
from flow.testing.definitions import embedded_env, write_definitions
from tests.conftest import wait_for

QUOTAS = {
    "slow": {"starts_per_s": 2},
    "small": {"max_running": 2},
    "door": {"max_running": 1},
}
ADMINS = ("slow", "small", "calm", "door")


def bearer(namespace: str) -> dict[str, str]:
    return {"Authorization": f"Bearer token-of-{namespace}-admin"}


@pytest.fixture(scope="module")
def flow(tmp_path_factory) -> Iterator[EmbeddedFlow]:
    base: Path = tmp_path_factory.mktemp("quotas")
    tokens = base / "tokens.toml"
    lines = []
    for namespace, quota in QUOTAS.items():
        lines.append(f"[namespaces.{namespace}]")
        lines += [f"{key} = {value}" for key, value in quota.items()]
    for namespace in ADMINS:
        entry = entry_line(f"token-of-{namespace}-admin", namespace, "admin")
        lines.append("[[tokens]]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in entry.items()]
    tokens.write_text("\n".join(lines) + "\n")
    env = embedded_env(base, write_definitions(base / "workflows", {}), FLOW_TOKENS_FILE=str(tokens))
    with EmbeddedFlow(Settings.from_env(env, embedded=True)) as running:
        yield running


@pytest.fixture(scope="module")
def client(flow) -> falcon.testing.TestClient:
    client = falcon.testing.TestClient(create_app(runtime=flow.runtime))
    for namespace in ADMINS:
        body = {"name": f"Wait{namespace}", "activities": [{"id": "w", "wait_for": "go"}]}
        body["triggers"] = [{"event": f"{namespace}.go"}]
        put = client.simulate_put(f"/definitions/Wait{namespace}", json=body, headers=bearer(namespace))
        assert put.status_code == 201, put.text
    return client


def start(client, namespace: str):
    return client.simulate_post("/workflows", json={"name": f"Wait{namespace}"}, headers=bearer(namespace))


def test_starts_past_the_rate_answer_429_with_retry_after(client):
    answers = [start(client, "slow") for _ in range(6)]
    statuses = [a.status_code for a in answers]
    assert statuses[:2] == [201, 201]  # a burst of one second's worth
    assert 429 in statuses[2:]
    refused = next(a for a in answers if a.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1
    assert "quota" in refused.json["description"]
    assert start(client, "calm").status_code == 201  # another namespace is not held back


def test_starts_past_the_running_quota_answer_429_until_one_ends(client):
    first = [start(client, "small") for _ in range(2)]
    assert [a.status_code for a in first] == [201, 201]
    over = start(client, "small")
    assert over.status_code == 429 and over.headers["retry-after"] == "1"
    assert "2 workflows in progress" in over.json["description"]
    cancelled = client.simulate_post(f"/workflows/{first[0].json['id']}/cancel", headers=bearer("small"))
    assert cancelled.status_code == 202
    # Admitted once the engine has ended the cancelled one (each refused try changes nothing).
    wait_for(lambda: start(client, "small").status_code == 201, what="a start admitted after the cancel")


def running_ids(client, namespace: str) -> set[str]:
    page = client.simulate_get("/workflows?status=In%20Progress&limit=100", headers=bearer(namespace)).json
    return {w["id"] for w in page["items"]}


def test_every_door_fits_the_quota_an_event_and_a_start_message_wait_for_room(client, flow, caplog):
    caplog.set_level(logging.DEBUG)
    first = start(client, "door")
    assert first.status_code == 201, first.text
    assert start(client, "door").status_code == 429
    schedule = {"workflow": "Waitdoor", "cron": "0 0 1 1 *", "paused": True}
    assert client.simulate_put("/schedules/door-s", json=schedule, headers=bearer("door")).status_code == 201
    triggered = client.simulate_post("/schedules/door-s/trigger", headers=bearer("door"))
    assert triggered.status_code == 429, triggered.text

    event = {"type": "door.go", "id": "evt-door-1", "data": {}}
    assert client.simulate_post("/events", json=event, headers=bearer("door")).status_code == 202
    message = dramatiq.Message(
        queue_name=flow.settings.engine_queue,
        actor_name="flow.start_workflow",
        args=(),
        kwargs={"name": "Waitdoor", "input_data": {}},
        options={},
    )
    flow.runtime.broker.enqueue(message)
    by_message = str(uuid.uuid5(MESSAGE_NAMESPACE, message.message_id))
    # Both doors were refused for the quota (and will try again), and started nothing.
    wait_for(lambda: "of Waitdoor waits for its namespace's quota" in caplog.text, timeout_s=30, what="event refused")
    wait_for(lambda: f"Retrying message {message.message_id!r}" in caplog.text, timeout_s=30, what="message retried")
    assert "namespace 'door' has 1 workflows in progress, its quota is 1" in caplog.text
    assert running_ids(client, "door") == {first.json["id"]}

    # Room again: each waiting start is made (each cancelled once seen, to make room).
    assert client.simulate_post(f"/workflows/{first.json['id']}/cancel", headers=bearer("door")).status_code == 202
    made: set[str] = set()

    def both_made() -> bool:
        for workflow_id in running_ids(client, "door") - {first.json["id"]} - made:
            made.add(workflow_id)
            client.simulate_post(f"/workflows/{workflow_id}/cancel", headers=bearer("door"))
        return len(made) == 2

    wait_for(both_made, timeout_s=90, what="the event's and the message's workflows started")
    assert by_message in made
    matched = client.simulate_get("/events/evt-door-1", headers=bearer("door")).json["matched"]
    assert [m["state"] for m in matched] == ["started"]
