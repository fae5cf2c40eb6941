"""The seed's plain JSON start message on RabbitMQ, published with pika, against a real engine."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace

import pika
import pika.exceptions
import pytest
import requests

from flow.errors import StoreUnavailable
from flow.persistence.models import WorkflowRecord
from flow.process.amqp_start import _AMQP_NAMESPACE, DELIVERIES_HEADER, StartMessageConsumer
from flow.process.runtime import Runtime
from flow.settings import Settings
from flow.testing import AMQP_URL, VENV_BIN, new_database, new_queue_prefix, queue_depth
from flow.testing.definitions import sample_definitions, write_definitions
from tests.conftest import ROOT, wait_for
from tests.integration.conftest import start_cluster, wait_ended

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def cluster(pg_url, queue_prefix, http_server, tmp_path_factory):
    """The API, an engine and 2 workers whose start queue is bound under the default
    routing key ``workflow_starter``, which ``examples/start_with_pika.py`` and
    :func:`publish` use (the other test files' clusters each have a key of their own)."""
    yield from start_cluster(
        tmp_path_factory.mktemp("cluster"), pg_url, queue_prefix, http_server, FLOW_START_ROUTING_KEY="workflow_starter"
    )


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
    (b"not json", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (json.dumps({"name": "NoSuchWorkflow", "input_data": {}}).encode(), "NoSuchWorkflow"),
    (json.dumps({"name": "DummyWorkflow", "input_data": [1]}).encode(), "$.input_data"),
    (json.dumps({"name": "DummyWorkflow", "status": "Finished"}).encode(), "$.status"),
    (json.dumps({"input_data": {}}).encode(), "$.name"),
    (json.dumps({"name": "DummyWorkflow", "priority": 0}).encode(), "$.priority"),
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


def test_a_start_message_gives_the_workflow_its_priority(cluster):
    message_id = str(uuid.uuid4())
    publish(json.dumps({"name": "DummyWorkflow", "priority": 1}).encode(), message_id=message_id)
    publish(
        json.dumps({"name": "DummyWorkflow", "input_data": {"no": "priority"}}).encode(), message_id=message_id + "b"
    )

    def shown(mid: str) -> dict | None:
        workflow_id = str(uuid.uuid5(_AMQP_NAMESPACE, mid))
        response = requests.get(f"{cluster['url']}/workflows/{workflow_id}", timeout=5)
        return response.json() if response.status_code == 200 else None

    assert wait_for(lambda: shown(message_id), timeout_s=30, what="the workflow of priority 1")["priority"] == 1
    assert wait_for(lambda: shown(message_id + "b"), timeout_s=30, what="the workflow without one")["priority"] == 3
    listed = requests.get(f"{cluster['url']}/workflows", params={"priority": 1}, timeout=5).json()["items"]
    assert str(uuid.uuid5(_AMQP_NAMESPACE, message_id)) in [w["id"] for w in listed]
    assert all(w["priority"] == 1 for w in listed)


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


# -- poison messages against the consumer on RabbitMQ, with an engine in this process ----


@pytest.fixture
def own_start_queue(services, tmp_path, http_server) -> Iterator[dict]:
    """An engine in this process on its own PostgreSQL database, consuming its own start
    queue (its own routing key, so other test runs on this RabbitMQ never see these
    messages); ``start(consumer_options, engine=None)`` starts a consumer on it."""
    with new_database() as pg_url, new_queue_prefix() as prefix:
        env = {
            "FLOW_DATABASE_URL": pg_url,
            "FLOW_BROKER_URL": AMQP_URL,
            "FLOW_QUEUE_PREFIX": prefix,
            "FLOW_START_ROUTING_KEY": f"starter_{prefix}",
            "FLOW_DEFINITIONS_DIR": str(write_definitions(tmp_path / "workflows", sample_definitions(http_server))),
            "FLOW_ACTIVITY_PACKAGES": "flow.testing.activities",
        }
        runtime = Runtime.build(Settings.from_env(env), engine=False)
        runtime.store.migrate(partitions=4)
        settings = runtime.settings
        consumers: list[StartMessageConsumer] = []

        def start(service: object = None, **options: object) -> StartMessageConsumer:
            consumer = StartMessageConsumer(
                service or runtime.service,
                url=AMQP_URL,
                exchange=settings.start_exchange,
                routing_key=settings.start_routing_key,
                queue=settings.start_queue,
                **options,
            )
            consumer.start()
            consumers.append(consumer)
            wait_for(lambda: queue_exists(settings.start_queue), what="the start queue")
            return consumer

        try:
            yield {
                "runtime": runtime,
                "routing_key": settings.start_routing_key,
                "queue": settings.start_queue,
                "start": start,
            }
        finally:
            for consumer in consumers:
                consumer.stop()
            runtime.service.close()
            runtime.broker.close()


def queue_exists(queue: str) -> bool:
    try:
        queue_depth(queue)
    except pika.exceptions.ChannelClosedByBroker:
        return False
    return True


def publish_to(routing_key: str, *bodies: bytes, headers: dict | None = None) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    channel.confirm_delivery()
    for body in bodies:
        channel.basic_publish(
            "start_workflow",
            routing_key,
            body,
            pika.BasicProperties(delivery_mode=2, headers=headers),
            mandatory=True,
        )
    connection.close()


def stored_inputs(runtime: Runtime) -> list[dict]:
    with runtime.store.unit_of_work():
        return [w.input_data for w in WorkflowRecord.select()]


POISON = [
    (b'{"name": "DummyWorkflow", "input_data": {"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}", "nests arrays"),
    (b'{"name": "DummyWorkflow", "input_data": {"n": ' + b"7" * 5000 + b"}}", "$.input_data.n"),
    (b'{"name": "Dummy\\u0000Workflow", "input_data": {}}', "$.name: contains NUL"),
    (b'{"name": "Dummy\\ud800Workflow", "input_data": {}}', "$.name: contains a lone surrogate"),
]


def test_a_good_start_behind_four_poison_messages_is_not_held_by_a_retry_pause(own_start_queue):
    runtime, routing_key = own_start_queue["runtime"], own_start_queue["routing_key"]
    # Poison is dead-lettered at once, never paused and retried: with a pause of 30 s, a
    # good start behind four poison messages would wait minutes if any were retried. (The
    # test once asked for "within a second", which a busy machine could not always give.)
    own_start_queue["start"](retry_pause_s=30.0, max_retry_pause_s=30.0)
    publish_to(routing_key, *(body for body, _ in POISON))
    publish_to(routing_key, json.dumps({"name": "DummyWorkflow", "input_data": {"good": True}}).encode())
    published = time.monotonic()

    wait_for(lambda: stored_inputs(runtime), timeout_s=25.0, every_s=0.01, what="the good start behind the poison")
    assert time.monotonic() - published < 30.0  # no retry pause came before it
    assert stored_inputs(runtime) == [{"good": True}]  # nothing poison was stored

    dead_queue = own_start_queue["queue"] + ".dead"
    letters = wait_for(lambda: dead_letters(dead_queue), timeout_s=5)
    for (body, reason), (dead_body, dead_reason) in zip(POISON, letters, strict=True):
        assert dead_body == body
        assert reason in dead_reason


class UnavailableService:
    """A start service whose database is down for one workflow name."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def start(self, name: str, input_data: object, **kwargs: object) -> object:
        if name == "DownWorkflow":
            raise StoreUnavailable("database unavailable: connection refused")
        self.started.append(name)
        return SimpleNamespace(name=name, id="wf"), True


def test_an_outage_is_retried_a_bounded_number_of_times_without_holding_up_the_queue(own_start_queue):
    engine = UnavailableService()
    own_start_queue["start"](engine, max_deliveries=3, retry_pause_s=0.05)
    publish_to(own_start_queue["routing_key"], b'{"name": "DownWorkflow"}', b'{"name": "DummyWorkflow"}')

    [(body, reason)] = wait_for(lambda: dead_letters(own_start_queue["queue"] + ".dead"), timeout_s=10)
    assert body == b'{"name": "DownWorkflow"}'
    assert "database unavailable" in reason and "gave up after 3 deliveries" in reason
    assert engine.started == ["DummyWorkflow"]  # handled while the other waited
    assert queue_depth(own_start_queue["queue"]) == 0


def test_a_message_whose_handling_keeps_dying_is_dead_lettered(own_start_queue):
    # Deliveries 1 and 2 already died (the header says so); this one dies too: a
    # consumer takes it and its connection drops before it settles.
    queue = own_start_queue["queue"]
    own_start_queue["start"]().stop()  # declare the queue, then leave it without a consumer
    publish_to(own_start_queue["routing_key"], b'{"name": "DummyWorkflow"}', headers={DELIVERIES_HEADER: 2})
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    method, _, _ = wait_for(lambda: (got := connection.channel().basic_get(queue)) and got[0] and got)
    assert not method.redelivered
    connection.close()  # dies without an ack: RabbitMQ delivers it again, flagged

    own_start_queue["start"](max_deliveries=3)
    [(_, reason)] = wait_for(lambda: dead_letters(queue + ".dead"), timeout_s=10)
    assert "interrupted" in reason and "gave up after 3 deliveries" in reason
    assert stored_inputs(own_start_queue["runtime"]) == []


def test_a_start_of_a_definition_whose_activity_class_is_gone_is_dead_lettered_at_once(own_start_queue):
    runtime = own_start_queue["runtime"]
    body = {"name": "Orphaned", "activities": [{"name": "EchoActivity"}]}
    runtime.service.register(body)
    del runtime.activity_classes["EchoActivity"]  # removed from the code since it was registered
    own_start_queue["start"]()
    publish_to(own_start_queue["routing_key"], b'{"name": "Orphaned"}', b'{"name": "DummyWorkflow"}')

    wait_for(lambda: stored_inputs(runtime), timeout_s=5, what="the start behind it")
    [(dead_body, reason)] = wait_for(lambda: dead_letters(own_start_queue["queue"] + ".dead"), timeout_s=5)
    assert dead_body == b'{"name": "Orphaned"}'
    assert "unknown activity 'EchoActivity'" in reason
    with runtime.store.unit_of_work():
        assert [w.definition_name for w in WorkflowRecord.select()] == ["DummyWorkflow"]
