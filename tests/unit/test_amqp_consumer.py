"""The AMQP start consumer's decisions, with a recording channel: dead-letter at once
what retrying cannot fix, deliver again later (counted, bounded, without sleeping)
what it may. ``tests/integration/test_amqp_start.py`` runs it on RabbitMQ."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pika
import pytest

from flow.errors import DefinitionError, QuotaExceeded, StoreUnavailable
from flow.process.amqp_start import DELIVERIES_HEADER, ERROR_HEADER, StartMessageConsumer
from tests.hostile import DEEP, DIGITS_5000


class RecordingChannel:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, pika.BasicProperties]] = []
        self.acked: list[int] = []
        self.timers: list[tuple[float, Any]] = []
        self.connection = SimpleNamespace(call_later=lambda delay, callback: self.timers.append((delay, callback)))

    def basic_publish(self, exchange: str, routing_key: str, body: bytes, properties: pika.BasicProperties) -> None:
        assert exchange == ""
        self.published.append((routing_key, body, properties))

    def basic_ack(self, delivery_tag: int) -> None:
        self.acked.append(delivery_tag)


class Service:
    """The start service, recording the starts it is asked for."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.starts: list[dict[str, Any]] = []

    def start(self, name: str, input_data: Any, **kwargs: Any) -> Any:
        if self.error is not None:
            raise self.error
        self.starts.append({"name": name, "input_data": input_data, **kwargs})
        return SimpleNamespace(name=name, id="wf-1"), True


def consumer(service: Service, **options: Any) -> StartMessageConsumer:
    c = StartMessageConsumer(service, url="amqp://unused", exchange="x", routing_key="k", queue="q", **options)

    def no_sleeping(*args: Any) -> None:
        raise AssertionError("the consumer slept in pika's I/O thread")

    c._consumer.stopping.wait = no_sleeping  # type: ignore[method-assign]
    return c


def deliver(c: StartMessageConsumer, body: bytes, *, deliveries: int | None = None, redelivered: bool = False):
    channel = RecordingChannel()
    headers = {} if deliveries is None else {DELIVERIES_HEADER: deliveries}
    properties = pika.BasicProperties(headers=headers, message_id="m-1", content_type="application/json")
    c._on_message(channel, SimpleNamespace(delivery_tag=7, redelivered=redelivered), properties, body)
    return channel


GOOD = json.dumps({"name": "DummyWorkflow", "input_data": {"x": 1}}).encode()
POISON = [
    (b'{"name": "DummyWorkflow", "input_data": ' + DEEP + b"}", "nests arrays and objects"),
    (b'{"name": "DummyWorkflow", "input_data": {"n": ' + DIGITS_5000 + b"}}", "$.input_data.n"),
    (b'{"name": "Dummy\\u0000Workflow"}', "$.name: contains NUL"),
    (b'{"name": "Dummy\\ud800Workflow"}', "$.name: contains a lone surrogate"),
    (b"\xff", "UTF-8"),
]


@pytest.mark.parametrize(("body", "reason"), POISON, ids=["deep", "5,000 digits", "NUL", "surrogate", "bytes"])
def test_a_poison_message_is_dead_lettered_at_once_and_never_reaches_the_engine(body, reason):
    engine = Service()
    channel = deliver(consumer(engine), body)
    [(queue, dead_body, properties)] = channel.published
    assert (queue, dead_body) == ("q.dead", body)
    assert reason in properties.headers[ERROR_HEADER]
    assert properties.message_id == "m-1" and properties.delivery_mode == 2
    assert channel.acked == [7] and channel.timers == [] and engine.starts == []


@pytest.mark.parametrize(
    "error",
    [
        DefinitionError("DummyWorkflow v1", [("$.activities[0].name", "unknown activity 'Removed'")]),
        ValueError("A string literal cannot contain NUL (0x00) characters."),
        RecursionError("maximum recursion depth exceeded"),
        OverflowError("date value out of range"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_an_engine_error_that_retrying_cannot_fix_is_dead_lettered_at_once(error):
    channel = deliver(consumer(Service(error)), GOOD)
    [(queue, _, properties)] = channel.published
    assert queue == "q.dead"
    assert type(error).__name__ in properties.headers[ERROR_HEADER] or str(error) in properties.headers[ERROR_HEADER]
    assert channel.acked == [7]


def test_an_outage_delivers_the_message_again_later_counted_and_then_dead_letters_it():
    c = consumer(Service(StoreUnavailable("database unavailable: connection refused")), max_deliveries=4)
    pauses = []
    deliveries = None
    for expected in (1, 2, 3):
        channel = deliver(c, GOOD, deliveries=deliveries)
        # Nothing is settled now: a timer of pika's loop will do it, the consumer goes on.
        assert channel.published == [] and channel.acked == []
        [(pause, requeue)] = channel.timers
        pauses.append(pause)
        requeue()
        [(queue, body, properties)] = channel.published
        assert (queue, body) == ("q", GOOD)
        assert properties.headers[DELIVERIES_HEADER] == expected
        assert channel.acked == [7]
        deliveries = expected
    assert pauses == [0.5, 1.0, 2.0]

    channel = deliver(c, GOOD, deliveries=deliveries)
    [(queue, _, properties)] = channel.published
    assert queue == "q.dead"
    assert "database unavailable" in properties.headers[ERROR_HEADER]
    assert "gave up after 4 deliveries" in properties.headers[ERROR_HEADER]
    assert channel.acked == [7] and channel.timers == []


def test_pauses_grow_to_their_cap():
    c = consumer(Service(StoreUnavailable("down")), max_deliveries=100, retry_pause_s=1, max_retry_pause_s=5)
    [(pause, _)] = deliver(c, GOOD, deliveries=10).timers
    assert pause == 5


def test_an_interrupted_delivery_is_counted_before_the_message_is_tried_again():
    engine = Service()
    c = consumer(engine, max_deliveries=3)
    channel = deliver(c, GOOD, redelivered=True)
    [(queue, _, properties)] = channel.published
    assert queue == "q" and properties.headers[DELIVERIES_HEADER] == 1
    assert channel.acked == [7] and engine.starts == []

    channel = deliver(c, GOOD, deliveries=2, redelivered=True)  # the third delivery dies again
    [(queue, _, properties)] = channel.published
    assert queue == "q.dead" and "interrupted" in properties.headers[ERROR_HEADER]


def test_a_good_message_starts_a_workflow_and_is_acked():
    engine = Service()
    channel = deliver(consumer(engine), GOOD, deliveries=3)
    assert channel.published == [] and channel.acked == [7]
    [start] = engine.starts
    assert (start["name"], start["input_data"], start["idempotency_key"]) == ("DummyWorkflow", {"x": 1}, None)
    assert start["workflow_id"]  # derived from the message id


@pytest.mark.timeout(10)  # 2 ** (2 ** 62) would never finish
def test_a_forged_huge_delivery_count_is_dead_lettered_without_computing_a_pause():
    channel = deliver(consumer(Service(StoreUnavailable("down"))), GOOD, deliveries=2**62)
    [(queue, _, _)] = channel.published
    assert queue == "q.dead" and channel.acked == [7]


def test_a_garbled_delivery_count_counts_as_none():
    c = consumer(Service(StoreUnavailable("down")))
    [(pause, _)] = deliver(c, GOOD, deliveries=-5).timers
    assert pause == 0.5


def test_a_reason_that_cannot_be_encoded_is_escaped():
    channel = deliver(consumer(Service(DefinitionError("W\ud800", [("$", "bad")]))), GOOD)
    [(_, _, properties)] = channel.published
    assert "\\ud800" in properties.headers[ERROR_HEADER]
    properties.headers[ERROR_HEADER].encode("utf-8")


def test_a_start_past_its_namespaces_quota_is_delivered_again_later_not_dead_lettered():
    refused = QuotaExceeded("namespace 'acme' has 5 workflows in progress, its quota is 5", retry_after_s=1)
    channel = deliver(consumer(Service(refused)), GOOD)
    assert channel.published == [] and channel.acked == []  # settled by the timer, later
    [(pause, requeue)] = channel.timers
    requeue()
    [(queue, body, properties)] = channel.published
    assert (queue, body, properties.headers[DELIVERIES_HEADER]) == ("q", GOOD, 1)
