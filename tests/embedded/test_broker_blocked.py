"""``POST /workflows`` while this process knows RabbitMQ blocks its publishes: 503 with
``Retry-After`` before anything is stored (the real alarm: tests/faults/test_broker_alarm.py)."""

from __future__ import annotations

from flow.process.broker import BlockedPublishes


def test_a_start_while_the_broker_blocks_is_503_with_retry_after_and_stores_nothing(client, flow):
    blocked = BlockedPublishes(3.0, probe=lambda: False)
    flow.runtime.broker.blocked = blocked  # the in-process broker is never blocked by itself
    before = client.simulate_get("/workflows").json["items"]
    try:
        blocked.saw_block()
        refused = client.simulate_post("/workflows", json={"name": "DummyWorkflow", "input_data": {}})
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "3"
        assert refused.json["title"] == "Broker blocked"
        assert client.simulate_get("/workflows").json["items"] == before
        blocked.published()
        assert client.simulate_post("/workflows", json={"name": "DummyWorkflow", "input_data": {}}).status_code == 201
    finally:
        blocked.stop()
        del flow.runtime.broker.blocked


def test_a_repeated_keyed_start_is_answered_its_workflow_while_starts_are_refused(client, flow):
    # Hostile review: a client that lost the 201 of its keyed start sends it again while
    # RabbitMQ blocks, or while the backlog is full: the repeat stores and sends nothing,
    # so refusing it (503 "nothing was stored") only hides the workflow it already has.
    body = {"name": "DummyWorkflow", "input_data": {}}
    headers = {"Idempotency-Key": "hostile-repeat"}
    first = client.simulate_post("/workflows", json=body, headers=headers)
    assert first.status_code == 201
    blocked = BlockedPublishes(3.0, probe=lambda: False)
    flow.runtime.broker.blocked = blocked
    try:
        blocked.saw_block()
        again = client.simulate_post("/workflows", json=body, headers=headers)
        assert again.status_code == 200, again.json
        assert again.json["id"] == first.json["id"]
        new = client.simulate_post("/workflows", json=body, headers={"Idempotency-Key": "hostile-new"})
        assert new.status_code == 503  # a start that would create one is still refused
    finally:
        blocked.stop()
        del flow.runtime.broker.blocked
