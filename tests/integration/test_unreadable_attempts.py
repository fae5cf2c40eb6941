"""An attempt message a worker cannot read (here: a field from a newer engine) fails its
attempt at once, on real RabbitMQ and PostgreSQL with the API, engine and a worker as
processes. Before, the worker retried the message 20 times (15 to 22 s apart), then
dead-lettered it telling the engine nothing, and the workflow waited for the attempt's
timeout, or for ever without one."""

from __future__ import annotations

import json
import time

import dramatiq
import pika
import pytest
import requests

from flow.testing.services import AMQP_URL
from flow.wire.attempts import AttemptRequest
from flow.wire.messages import RUN_ACTIVITY
from tests.conftest import wait_for
from tests.integration.conftest import start_cluster, wait_ended

pytestmark = pytest.mark.services

DEFINITIONS = {
    # Its one attempt spins for two minutes, with no timeout: only a report ends it sooner.
    "Spinning": {
        "name": "Spinning",
        "config": {"retry": {"max_attempts": 1}},
        "activities": [{"name": "SpinActivity", "config": {"spin_s": 120}}],
    },
}


@pytest.fixture(scope="module")
def cluster(pg_url, queue_prefix, http_server, tmp_path_factory):
    yield from start_cluster(
        tmp_path_factory.mktemp("unreadable"), pg_url, queue_prefix, http_server, bodies=DEFINITIONS
    )


def publish(queue: str, kwargs: dict) -> None:
    """Publish a ``flow.run_activity`` message with these keyword arguments, as a newer engine would."""
    message = dramatiq.Message(queue_name=queue, actor_name=RUN_ACTIVITY, args=(), kwargs=kwargs, options={})
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        connection.channel().basic_publish("", queue, message.encode())
    finally:
        connection.close()


def test_an_attempt_with_a_field_from_a_newer_engine_fails_at_once_with_what_to_do(cluster):
    url = cluster["url"]
    response = requests.post(f"{url}/workflows", json={"name": "Spinning", "input_data": {}}, timeout=30)
    assert response.status_code == 201, response.text
    workflow_id = response.json()["id"]

    def scheduled() -> bool:
        [step] = requests.get(f"{url}/workflows/{workflow_id}", timeout=10).json()["activities"]
        return step["attempt"] == 1 and step["status"] in ("Scheduled", "Started")

    wait_for(scheduled, timeout_s=60, what="the first attempt scheduled")
    newer = AttemptRequest(
        workflow_id=workflow_id, position=0, attempt=1, activity="SpinActivity", config={}, input_data={}, outputs={}
    ).to_kwargs()
    # No reply_to, as the first release's attempts: the report goes to the shared engine queue, which forwards it.
    published = time.monotonic()
    publish(f"{cluster['prefix']}.activities", {**newer, "from_the_future": {"x": 1}})

    body = wait_ended(url, workflow_id, timeout_s=60)
    took_s = time.monotonic() - published
    assert body["status"] == "Failed", body
    expected = (
        "this worker cannot read the attempt: $.from_the_future: unknown field; "
        "a newer engine probably sent it: upgrade the workers to the engines' release"
    )
    assert body["activities"][0]["error"] == expected
    events = requests.get(f"{url}/workflows/{workflow_id}/events", params={"limit": 500}, timeout=10).json()["items"]
    assert any(expected in json.dumps(e["data"]) for e in events), events
    # Failed, so by the report: the spinning attempt itself would have succeeded after 120 s.
    print(f"the unreadable attempt failed its workflow {took_s:.2f} s after it was published")
