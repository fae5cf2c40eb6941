"""The seed's plain JSON start message on RabbitMQ, published with pika, against a real engine."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pika
import pytest
import requests

from tests.conftest import ROOT, wait_for
from tests.integration.conftest import wait_ended
from tests.services import AMQP_URL, VENV_BIN

pytestmark = pytest.mark.services


def workflows(url: str) -> list[dict]:
    return requests.get(f"{url}/workflows", params={"limit": 500}, timeout=5).json()["items"]


def publish(body: bytes, *, message_id: str | None = None) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_publish(
        "start_workflow",
        "workflow_starter",
        body,
        pika.BasicProperties(delivery_mode=2, message_id=message_id),
        mandatory=True,
    )
    connection.close()


def dead_letters(queue: str) -> list[tuple[bytes, str]]:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    found = []
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            break
        found.append((body, (properties.headers or {}).get("x-flow-error", "")))
    connection.close()
    return found


def test_the_seed_pika_snippet_starts_a_workflow(cluster):
    before = {w["id"] for w in workflows(cluster["url"])}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "start_with_pika.py"), "DummyWorkflow", '{"via": "pika"}'],
        env={"PATH": str(VENV_BIN)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    [created] = wait_for(
        lambda: [w for w in workflows(cluster["url"]) if w["id"] not in before], timeout_s=30, what="a new workflow"
    )
    body = wait_ended(cluster["url"], created["id"])
    assert body["status"] == "Finished"
    assert body["input_data"] == {"via": "pika"}


BAD_BODIES = [
    (b"not json", "not JSON"),
    (b"[1, 2]", "JSON object"),
    (json.dumps({"name": "NoSuchWorkflow", "input_data": {}}).encode(), "NoSuchWorkflow"),
    (json.dumps({"name": "DummyWorkflow", "input_data": [1]}).encode(), "$.input_data"),
    (json.dumps({"name": "DummyWorkflow", "status": "Finished"}).encode(), "$.status"),
    (json.dumps({"input_data": {}}).encode(), "$.name"),
    (json.dumps({"name": "DummyWorkflow", "input_data": {"blob": "x" * 300_000}}).encode(), "FLOW_MAX_PAYLOAD_BYTES"),
]


def test_bad_start_messages_are_dead_lettered_with_their_reason_and_block_nothing(cluster):
    before = {w["id"] for w in workflows(cluster["url"])}
    for body, _ in BAD_BODIES:
        publish(body)
    publish(json.dumps({"name": "DummyWorkflow", "input_data": {"after": "the bad ones"}}).encode())

    [good] = wait_for(lambda: [w for w in workflows(cluster["url"]) if w["id"] not in before], timeout_s=30)
    assert wait_ended(cluster["url"], good["id"])["input_data"] == {"after": "the bad ones"}
    dead_queue = f"{cluster['prefix']}.workflow_starter.dead"
    letters = wait_for(lambda: dead_letters(dead_queue), timeout_s=10)
    while len(letters) < len(BAD_BODIES):
        letters += wait_for(lambda: dead_letters(dead_queue), timeout_s=10)
    for (body, expected), (dead_body, reason) in zip(BAD_BODIES, letters, strict=True):
        assert dead_body == body
        assert expected in reason
    assert len(workflows(cluster["url"])) == len(before) + 1


def test_a_redelivered_start_with_a_message_id_starts_one_workflow(cluster):
    before = {w["id"] for w in workflows(cluster["url"])}
    message_id = str(uuid.uuid4())
    body = json.dumps({"name": "DummyWorkflow", "input_data": {"once": True}}).encode()
    publish(body, message_id=message_id)
    publish(body, message_id=message_id)
    publish(json.dumps({"name": "DummyWorkflow", "input_data": {"marker": 1}}).encode())

    def inputs_of_new_workflows() -> list[dict]:
        new = [w for w in workflows(cluster["url"]) if w["id"] not in before]
        return [requests.get(f"{cluster['url']}/workflows/{w['id']}", timeout=5).json()["input_data"] for w in new]

    # One consumer handles messages in order: once the marker's workflow exists, both
    # copies of the first message have been handled.
    inputs = wait_for(lambda: (i := inputs_of_new_workflows()) and {"marker": 1} in i and i, timeout_s=30)
    assert sorted(map(json.dumps, inputs)) == sorted(map(json.dumps, [{"once": True}, {"marker": 1}]))
