"""Event triggers on PostgreSQL and RabbitMQ: events published as plain JSON to the fanout
exchange ``<prefix>.events`` reach a real engine; 20 updates of one order (one of them
published twice) start exactly one debounced workflow with the last event's data, and a
body that is no event is dead-lettered with the reason; 24 events of one key posted at
once to two API processes (each id twice) make one window, one workflow."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pika
import pytest
import requests

from flow.settings import Settings
from flow.testing import AMQP_URL, queue_consumers
from tests.conftest import wait_for
from tests.integration.conftest import start_cluster, wait_ended
from tests.integration.test_amqp_start import dead_letters

pytestmark = pytest.mark.services

ORDER_SYNC = {
    "name": "OrderSyncDistributed",
    "triggers": [{"event": "order.updated", "key": "data.order_id", "debounce_s": 1}],
    "activities": [{"name": "NoopActivity"}],
}


@pytest.fixture(scope="module")
def cluster(pg_url, queue_prefix, http_server, tmp_path_factory):
    yield from start_cluster(tmp_path_factory.mktemp("cluster"), pg_url, queue_prefix, http_server)


def publish(exchange: str, bodies: list[bytes]) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    channel.confirm_delivery()
    for body in bodies:
        channel.basic_publish(exchange, "", body, pika.BasicProperties(delivery_mode=2), mandatory=True)
    connection.close()


def test_events_on_the_exchange_start_one_debounced_workflow_with_the_last_data(cluster):
    url = cluster["url"]
    exchange = Settings.from_env(cluster["env"]).event_exchange
    wait_for(lambda: queue_consumers(exchange) > 0, timeout_s=60, what=f"a consumer of {exchange}")
    assert requests.put(f"{url}/definitions/OrderSyncDistributed", json=ORDER_SYNC, timeout=5).status_code == 201

    events = [{"type": "order.updated", "id": f"amqp-{n}", "data": {"order_id": 3, "seq": n}} for n in range(20)]
    bodies = [json.dumps(e).encode() for e in events]
    publish(exchange, [*bodies[:10], bodies[5], *bodies[10:], b'{"type": "order.updated"}'])

    def last_received() -> dict | None:
        answer = requests.get(f"{url}/events/amqp-19", timeout=5)
        return answer.json() if answer.status_code == 200 else None

    workflow_id = wait_for(last_received, timeout_s=30, what="the last event")["workflows"][0]
    assert requests.get(f"{url}/events/amqp-0", timeout=5).json()["workflows"] == [workflow_id]
    # The window closes a second after the last event: the workflow exists from then on.
    wait_for(
        lambda: requests.get(f"{url}/workflows/{workflow_id}", timeout=5).status_code == 200,
        timeout_s=30,
        what="the window's workflow",
    )
    finished = wait_ended(url, workflow_id, timeout_s=30)
    assert finished["status"] == "Finished" and finished["input_data"] == {"order_id": 3, "seq": 19}
    listed = requests.get(f"{url}/workflows", params={"name": "OrderSyncDistributed"}, timeout=5).json()["items"]
    assert [w["id"] for w in listed] == [workflow_id]

    [(body, reason)] = wait_for(lambda: dead_letters(f"{exchange}.dead"), timeout_s=30, what="the dead letter")
    assert body == b'{"type": "order.updated"}' and "$.id" in reason


def test_events_of_one_key_posted_at_once_make_one_window(cluster):
    url = cluster["url"]
    # A window of 3 s after the last event: posts slowed down by a busy machine stay in one.
    burst = {**ORDER_SYNC, "name": "OrderBurst", "triggers": [{"event": "order.burst", "debounce_s": 3}]}
    assert requests.put(f"{url}/definitions/OrderBurst", json=burst, timeout=5).status_code == 201
    events = [{"type": "order.burst", "id": f"burst-{n % 12}", "data": {"order_id": 4}} for n in range(24)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda e: requests.post(f"{url}/events", json=e, timeout=10), events))
    assert [a.status_code for a in answers] == [202] * 24
    assert sum(a.json()["duplicate"] for a in answers) == 12  # each id stored once
    [workflow_id] = {a.json()["workflows"][0] for a in answers}  # one window
    wait_for(
        lambda: requests.get(f"{url}/workflows/{workflow_id}", timeout=5).status_code == 200,
        timeout_s=30,
        what="the window's workflow",
    )
    assert wait_ended(url, workflow_id, timeout_s=30)["input_data"] == {"order_id": 4}
