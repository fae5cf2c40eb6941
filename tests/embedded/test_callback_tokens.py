"""Callback tokens end to end on the embedded flow (SQLite): an activity hands its wait's
token to a third party, which ends the wait with ``POST /signals/{token}`` (once), and
every door refuses what it must without delivering anything."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import dramatiq
import falcon.testing
import pytest

from api.app import create_app
from flow.core.callback_tokens import CallbackTokens
from flow.errors import InvalidInput, UnknownCallbackToken
from flow.process.embedded import EmbeddedFlow
from tests.conftest import configured_logging, wait_for
from tests.embedded.conftest import flow_of

PAYLOAD_LIMIT = 1000
DEFINITIONS = {
    "Callback": {
        "name": "Callback",
        "activities": [
            {"id": "request", "name": "EchoActivity"},
            {"id": "approval", "wait_for": "approved", "timeout_s": 600},
            {"id": "ship", "name": "EchoActivity"},
        ],
    },
    "TwoWaits": {
        "name": "TwoWaits",
        "activities": [{"id": "first", "wait_for": "go"}, {"id": "second", "wait_for": "go"}],
    },
    "WaitOnly": {"name": "WaitOnly", "activities": [{"id": "approval", "wait_for": "approved"}]},
}


@pytest.fixture(scope="module")
def flow(tmp_path_factory) -> Iterator[EmbeddedFlow]:
    with flow_of(
        tmp_path_factory.mktemp("callbacks"), DEFINITIONS, FLOW_MAX_PAYLOAD_BYTES=str(PAYLOAD_LIMIT)
    ) as running:
        yield running


@pytest.fixture(scope="module")
def client(flow) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(runtime=flow.runtime))


def view(client, workflow_id: str) -> dict[str, Any]:
    return client.simulate_get(f"/workflows/{workflow_id}").json


def step(client, workflow_id: str, step_id: str) -> dict[str, Any]:
    return next(a for a in view(client, workflow_id)["activities"] if a["id"] == step_id)


def waiting(client, workflow_id: str, step_id: str) -> dict[str, Any]:
    return wait_for(
        lambda: (s := step(client, workflow_id, step_id))["status"] == "Waiting" and s,
        timeout_s=30,
        what=f"{step_id} to wait",
    )


def post(client, token: str, data: Any = None, **kwargs: Any) -> falcon.testing.Result:
    """POST ``data`` as JSON (or ``body=`` raw) to the token's address."""
    if data is not None:
        kwargs["json"] = data
    return client.simulate_post(f"/signals/{token}", **kwargs)


def test_the_activity_before_a_wait_hands_its_token_to_a_third_party_who_ends_it(flow, client):
    workflow_id = flow.start("Callback", {"order": 7})
    approval = waiting(client, workflow_id, "approval")
    handed = step(client, workflow_id, "request")["output"]["outputs"]["approval"]
    assert handed == {"callback_token": approval["callback_token"]}  # what the activity saw is what the API shows
    sent = post(client, approval["callback_token"], {"payload": {"by": "vendor"}})
    assert sent.status_code == 202, sent.text
    assert (sent.json["workflow_id"], sent.json["name"]) == (workflow_id, "approved")
    state = flow.wait(workflow_id, timeout_s=30).state
    assert state.status == "Finished" and state.activities[1].output == {"by": "vendor"}
    assert state.activities[2].output["outputs"]["approval"] == {"by": "vendor"}
    again = post(client, approval["callback_token"], {"payload": {"by": "someone else"}})
    assert again.status_code == 410 and again.json["title"] == "Callback token spent"
    assert step(client, workflow_id, "approval")["callback_token"] is None


def test_concurrent_posts_of_one_token_deliver_once(flow, client):
    workflow_id = flow.start("WaitOnly")
    token = waiting(client, workflow_id, "approval")["callback_token"]
    answers: list[falcon.testing.Result] = []
    barrier = threading.Barrier(8)

    def send(n: int) -> None:
        barrier.wait()
        answers.append(post(client, token, {"payload": n}))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert {a.status_code for a in answers} <= {202, 410} and 202 in {a.status_code for a in answers}
    assert len({a.json["signal_id"] for a in answers if a.status_code == 202}) == 1
    state = flow.wait(workflow_id, timeout_s=30).state
    assert state.status == "Finished" and state.activities[0].output in range(8)
    ended = [e for e in flow.runtime.store.events(workflow_id, after_id=0) if e["type"] == "end-wait"]
    assert len(ended) == 1


def test_a_token_posted_before_its_wait_is_kept_for_that_wait(flow, client):
    workflow_id = flow.start("TwoWaits")
    waiting(client, workflow_id, "first")
    second = step(client, workflow_id, "second")
    assert second["status"] == "Pending" and second["callback_token"]
    assert post(client, second["callback_token"], {"payload": "for second"}).status_code == 202
    wait_for(
        lambda: any(e["type"] == "keep-signal" for e in flow.runtime.store.events(workflow_id, after_id=0)),
        timeout_s=30,
        what="the early callback to be kept",
    )
    assert step(client, workflow_id, "first")["status"] == "Waiting"  # not the first wait's
    assert (
        client.simulate_post(f"/workflows/{workflow_id}/signals/go", json={"payload": "for first"}).status_code == 202
    )
    state = flow.wait(workflow_id, timeout_s=30).state
    assert [a.output for a in state.activities] == ["for first", "for second"]


def test_a_retried_workflow_gets_fresh_tokens_and_the_old_ones_are_gone(flow, client):
    workflow_id = flow.start("WaitOnly")
    old = waiting(client, workflow_id, "approval")["callback_token"]
    assert client.simulate_post(f"/workflows/{workflow_id}/cancel").status_code == 202
    assert flow.wait(workflow_id, timeout_s=30).state.status == "Cancelled"
    gone = post(client, old, {"payload": 1})
    assert gone.status_code == 410 and "Cancelled" in gone.json["description"]
    assert client.simulate_post(f"/workflows/{workflow_id}/retry").status_code == 202
    new = wait_for(
        lambda: (
            (s := step(client, workflow_id, "approval"))["status"] == "Waiting" and s["callback_token"] != old and s
        ),
        timeout_s=30,
        what="the retry's wait",
    )["callback_token"]
    assert post(client, old, {"payload": "old"}).status_code == 410
    assert post(client, new, {"payload": "new"}).status_code == 202
    assert flow.wait(workflow_id, timeout_s=30).state.activities[0].output == "new"


def _forgeries(token: str) -> list[str]:
    return [
        token[:-1] + ("A" if token[-1] != "A" else "B"),
        CallbackTokens(b"another deployment's secret!!!!!").token(*token_target(token)),
        "cb1.x.y",
        "not-a-token",
        "x" * 300,
        "cb1.%C3%A9." + "A" * 43,
        token + "A",
    ]


def token_target(token: str) -> tuple[str, int, int]:
    import base64

    clear = token.split(".")[1]
    workflow_id, position, run = base64.urlsafe_b64decode(clear + "=" * (-len(clear) % 4)).decode().rsplit(":", 2)
    return workflow_id, int(position), int(run)


def test_a_forged_or_malformed_token_answers_404_and_the_same_for_all(flow, client):
    workflow_id = flow.start("WaitOnly")
    token = waiting(client, workflow_id, "approval")["callback_token"]
    answers = [post(client, forged, {"payload": 1}) for forged in _forgeries(token)]
    assert {a.status_code for a in answers} == {404}
    assert len({a.text for a in answers}) == 1  # nothing tells a forgery from garbage
    # A bad body behind a bad token: still the token's 404.
    assert post(client, _forgeries(token)[0], body="{nope", headers=_json()).status_code == 404
    assert step(client, workflow_id, "approval")["status"] == "Waiting"
    assert post(client, token, {"payload": "real"}).status_code == 202


def _json() -> dict[str, str]:
    return {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("{nope", 400),
        ('{"payload": NaN}', 400),
        ('{"payload": "\\ud800"}', 400),
        ('{"payload": 1e999}', 400),
        ('{"payload": ' + "[" * 70 + "]" * 70 + "}", 400),
        ('{"payload": 1, "name": "other"}', 422),
        ('["payload"]', 422),
        (json.dumps({"payload": "x" * (2 * PAYLOAD_LIMIT)}), 422),
    ],
    ids=["not-json", "nan", "lone-surrogate", "infinity", "too-deep", "unknown-field", "not-an-object", "too-big"],
)
def test_a_bad_body_with_a_good_token_is_refused_and_delivers_nothing(flow, client, body, status):
    workflow_id = flow.start("WaitOnly")
    token = waiting(client, workflow_id, "approval")["callback_token"]
    answer = post(client, token, body=body, headers=_json())
    assert answer.status_code == status, answer.text
    assert post(client, token, body="plain", headers={"Content-Type": "text/plain"}).status_code == 415
    assert step(client, workflow_id, "approval")["status"] == "Waiting"
    assert post(client, token).status_code == 202  # no body: a null payload, still once
    assert flow.wait(workflow_id, timeout_s=30).state.activities[0].output is None


def test_a_workflow_deleted_after_its_token_was_given_is_gone(flow, client):
    workflow_id = flow.start("WaitOnly")
    token = waiting(client, workflow_id, "approval")["callback_token"]
    client.simulate_post(f"/workflows/{workflow_id}/cancel")
    flow.wait(workflow_id, timeout_s=30)
    assert client.simulate_delete(f"/workflows/{workflow_id}").status_code == 204
    assert post(client, token, {"payload": 1}).status_code == 410


def test_the_token_route_takes_only_post(flow, client):
    workflow_id = flow.start("WaitOnly")
    token = waiting(client, workflow_id, "approval")["callback_token"]
    assert client.simulate_get(f"/signals/{token}").status_code == 405
    assert client.simulate_post("/signals/../workflows").status_code == 404
    assert post(client, token, {"payload": "ok"}).status_code == 202


def _token_message(**kwargs: Any) -> dramatiq.Message:
    return dramatiq.Message(
        queue_name="flow.engine", actor_name="flow.signal_workflow", args=(), kwargs=kwargs, options={}
    )


def test_a_dramatiq_message_with_a_token_ends_the_wait_once(flow, client):
    workflow_id = flow.start("WaitOnly")
    token = waiting(client, workflow_id, "approval")["callback_token"]
    flow.runtime.service.forward(_token_message(token=token, payload={"via": "dramatiq"}))
    assert flow.wait(workflow_id, timeout_s=30).state.activities[0].output == {"via": "dramatiq"}
    flow.runtime.service.forward(_token_message(token=token, payload="again"))  # spent: logged and dropped
    with pytest.raises(UnknownCallbackToken):
        flow.runtime.service.forward(_token_message(token=token[:-1] + "x", payload=1))
    with pytest.raises(InvalidInput):
        flow.runtime.service.forward(_token_message(token=token, payload=1, workflow_id=workflow_id))
    with pytest.raises(InvalidInput):
        flow.runtime.service.forward(_token_message(token=token, payload={"n": float("nan")}))


def test_a_dead_lettered_callback_message_is_logged_without_its_token(flow, client):
    workflow_id = flow.start("WaitOnly")
    token = waiting(client, workflow_id, "approval")["callback_token"]
    dead_before = len(flow.runtime.broker.dead_letters)
    with configured_logging(flow.settings) as log:
        # A field a callback message may not have: refused, and dead-lettered at once.
        flow.runtime.broker.enqueue(
            dramatiq.Message(
                queue_name=flow.settings.engine_queue,
                actor_name="flow.signal_workflow",
                args=(),
                kwargs={"token": token, "payload": 1, "workflow_id": workflow_id},
                options={},
            )
        )
        wait_for(lambda: len(flow.runtime.broker.dead_letters) > dead_before, timeout_s=30, what="the dead letter")
        wait_for(lambda: "giving up on a message" in log.getvalue(), timeout_s=10, what="its log line")
    lines = log.getvalue()
    assert "flow.signal_workflow" in lines and "cb1." in lines  # Dramatiq's line names the message
    assert token not in lines and token.rsplit(".", 1)[1] not in lines
    client.simulate_post(f"/workflows/{workflow_id}/cancel")
