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
