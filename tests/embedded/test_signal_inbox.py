"""The signal inbox on the embedded flow (SQLite), issue 28 items 2 and 10: a kept
signal is written once (a commit that does not change the inbox writes none of it),
the payloads kept are bounded (413 naming the limit), and a signal's Idempotency-Key
sent again with another payload answers 409 and delivers nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import falcon.testing
import pytest

from api.app import create_app
from flow.core.kinds import wait
from flow.process.embedded import EmbeddedFlow
from flow.settings import Settings
from flow.testing.definitions import embedded_env, write_definitions
from tests.conftest import wait_for

#: Small, so that a few signals fill it (FLOW_MAX_INBOX_BYTES).
INBOX_LIMIT = 300_000
BLOB = 50_000

DEFINITIONS = {
    "GateThenWork": {
        "name": "GateThenWork",
        "activities": [{"id": "gate", "wait_for": "go"}, {"name": "NoopActivity"}, {"name": "NoopActivity"}],
    },
    "TwoGates": {
        "name": "TwoGates",
        "activities": [{"id": "gate", "wait_for": "go"}, {"id": "then", "wait_for": "two"}],
    },
}


@pytest.fixture(scope="module")
def flow(tmp_path_factory) -> Iterator[EmbeddedFlow]:
    base: Path = tmp_path_factory.mktemp("signal_inbox")
    definitions = write_definitions(base / "workflows", DEFINITIONS)
    env = embedded_env(base, definitions, FLOW_MAX_INBOX_BYTES=str(INBOX_LIMIT), FLOW_ACTIVITY_PACKAGES="activities")
    with EmbeddedFlow(Settings.from_env(env, embedded=True)) as running:
        yield running


@pytest.fixture(scope="module")
def client(flow) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(runtime=flow.runtime))


def waiting(flow: EmbeddedFlow, name: str = "GateThenWork") -> str:
    workflow_id = flow.start(name)
    wait_for(lambda: flow.runtime.store.get(workflow_id).state.activities[0].status == "Waiting")
    return workflow_id


def history(flow: EmbeddedFlow, workflow_id: str, kind: str) -> list[dict]:
    return [e for e in flow.runtime.store.events(workflow_id, after_id=0) if e["type"] == kind]


def send(client, workflow_id: str, name: str, payload, key: str | None = None):
    headers = {"Idempotency-Key": key} if key else {}
    return client.simulate_post(f"/workflows/{workflow_id}/signals/{name}", json={"payload": payload}, headers=headers)


def test_commits_that_do_not_change_the_inbox_write_none_of_it(flow, client, monkeypatch):
    workflow_id = waiting(flow)
    for i in range(5):
        assert send(client, workflow_id, "noise", {"blob": chr(ord("a") + i) * BLOB}).status_code == 202
    wait_for(lambda: len(history(flow, workflow_id, "keep-signal")) == 5)
    # Every statement from here on: the signal "go", the two activities, the end.
    written: list[int] = []
    database = flow.runtime.store.database
    execute_sql = database.execute_sql

    def counting(sql, params=None, *args, **kwargs):
        written.append(len(sql) + sum(len(str(p)) for p in params or ()))
        return execute_sql(sql, params, *args, **kwargs)

    monkeypatch.setattr(database, "execute_sql", counting)
    assert send(client, workflow_id, "go", {"ok": True}).status_code == 202
    assert flow.wait(workflow_id, timeout_s=30).state.status == "Finished"
    monkeypatch.undo()
    # 250 KB are kept; a commit that rewrote them would write that much each time.
    assert sum(written) < BLOB, f"{sum(written)} bytes in {len(written)} statements"
    state = flow.engine.store.load(workflow_id).state
    assert [s.name for s in state.inbox] == ["noise"] * 5 + ["go"]
    assert state.inbox[0].payload == {"blob": "a" * BLOB} and state.inbox[-1].consumed_by == 0


def test_a_signal_past_the_inbox_limit_answers_413_naming_it_and_a_waited_one_is_taken(flow, client):
    workflow_id = waiting(flow)
    for i in range(5):
        assert send(client, workflow_id, "noise", "x" * BLOB, key=f"n{i}").status_code == 202
    wait_for(lambda: len(history(flow, workflow_id, "keep-signal")) == 5)  # 250,010 bytes kept
    refused = send(client, workflow_id, "noise", "y" * BLOB)
    assert refused.status_code == 413, refused.text
    assert "FLOW_MAX_INBOX_BYTES" in refused.json["description"] and str(INBOX_LIMIT) in refused.json["description"]
    # A repeat of a kept signal is no new one: it still answers 202.
    assert send(client, workflow_id, "noise", "x" * BLOB, key="n0").status_code == 202
    # The signal a step waits for is taken, whatever the inbox keeps.
    assert send(client, workflow_id, "go", "z" * BLOB).status_code == 202
    wait_for(lambda: flow.runtime.store.get(workflow_id).state.activities[0].status == "Succeeded")
    assert len(history(flow, workflow_id, "signal-received")) == 7  # the repeat is recorded, as a repeat
    assert len(history(flow, workflow_id, "keep-signal")) == 5


def test_a_signal_past_the_inbox_count_answers_413_naming_it_instead_of_202_and_a_drop(flow, client, monkeypatch):
    # The engine keeps at most MAX_SIGNALS signals and drops the next with a reason in
    # the history; the API answered that one 202, as if it would be delivered.
    monkeypatch.setattr(wait, "MAX_SIGNALS", 3)
    workflow_id = waiting(flow)
    for i in range(3):
        assert send(client, workflow_id, "noise", i, key=f"n{i}").status_code == 202
    wait_for(lambda: len(history(flow, workflow_id, "keep-signal")) == 3)
    refused = send(client, workflow_id, "noise", 3)
    assert refused.status_code == 413, refused.text
    assert "holds 3 signals" in refused.json["description"], refused.json["description"]
    # A repeat of a kept one is no new signal, and the one a step waits for is taken.
    assert send(client, workflow_id, "noise", 0, key="n0").status_code == 202
    assert send(client, workflow_id, "go", "ok").status_code == 202
    wait_for(lambda: flow.runtime.store.get(workflow_id).state.activities[0].status == "Succeeded")
    assert not [e for e in history(flow, workflow_id, "do-nothing") if "dropped" in str(e["data"])]


def test_a_signal_key_sent_again_with_another_payload_answers_409_and_delivers_once(flow, client):
    workflow_id = waiting(flow)
    first = send(client, workflow_id, "later", {"n": 1}, key="k")
    assert first.status_code == 202
    wait_for(lambda: history(flow, workflow_id, "keep-signal"))
    again = send(client, workflow_id, "later", {"n": 1}, key="k")
    assert again.status_code == 202 and again.json["signal_id"] == first.json["signal_id"]
    other = send(client, workflow_id, "later", {"n": 2}, key="k")
    assert other.status_code == 409, other.text
    assert "another payload" in other.json["description"]
    # The repeat is recorded once as a repeat; the other payload never reached the engine.
    wait_for(lambda: len(history(flow, workflow_id, "signal-received")) == 2)
    assert len(history(flow, workflow_id, "keep-signal")) == 1
    [kept] = flow.engine.store.load(workflow_id).state.inbox
    assert kept.payload == {"n": 1}


def test_a_callback_for_a_wait_to_come_is_kept_and_bounded_like_any_kept_signal(flow, client):
    workflow_id = waiting(flow, "TwoGates")
    then = next(a for a in client.simulate_get(f"/workflows/{workflow_id}").json["activities"] if a["id"] == "then")
    for i in range(5):
        assert send(client, workflow_id, "noise", "x" * BLOB, key=f"n{i}").status_code == 202
    wait_for(lambda: len(history(flow, workflow_id, "keep-signal")) == 5)
    refused = client.simulate_post(f"/signals/{then['callback_token']}", json={"payload": "y" * BLOB})
    assert refused.status_code == 413, refused.text
    assert "FLOW_MAX_INBOX_BYTES" in refused.json["description"]
    small = client.simulate_post(f"/signals/{then['callback_token']}", json={"payload": "ok"})
    assert small.status_code == 202, small.text
