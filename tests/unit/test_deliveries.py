"""Delivery counting: a worker's death counts, a graceful stop's returned messages do not."""

from __future__ import annotations

import logging
from queue import PriorityQueue
from types import SimpleNamespace

import dramatiq
import pytest
from dramatiq.brokers.rabbitmq import _RabbitmqMessage
from dramatiq.middleware import SkipMessage
from dramatiq.worker import _WorkQueueItem

from flow.wire.attempts import AttemptIdentity, AttemptRequest
from flow.worker.deliveries import DeliveryCounter, DeliveryLimit

ACTOR = "flow.run_activity"
QUEUE = "flow.activities"


REQUEST = AttemptRequest(
    workflow_id="wf",
    position=0,
    attempt=1,
    activity="KillerActivity",
    config={},
    input_data={},
    outputs={},
    reply_to="flow.engine.7",
)


@pytest.fixture
def reports() -> list[tuple[AttemptIdentity, str]]:
    return []


@pytest.fixture
def limit(tmp_path, reports) -> DeliveryLimit:
    return DeliveryLimit(
        actor_name=ACTOR,
        max_deliveries=2,
        report=lambda request, error: reports.append((request, error)),
        counter=DeliveryCounter(tmp_path),
    )


def message(actor_name: str = ACTOR, queue_name: str = QUEUE) -> dramatiq.Message:
    return REQUEST.to_message(queue_name).copy(actor_name=actor_name)


def delivered(msg: dramatiq.Message, *, redelivered: bool) -> _RabbitmqMessage:
    return _RabbitmqMessage(redelivered, 1, msg)


def stopping_consumer(*held: object) -> SimpleNamespace:
    """What a Dramatiq ConsumerThread holds when it stops: its queue and the in-memory work."""
    work_queue: PriorityQueue = PriorityQueue()
    for proxy in held:
        work_queue.put(_WorkQueueItem(0, proxy))
    return SimpleNamespace(queue_name=QUEUE, work_queue=work_queue)


def test_redeliveries_count_until_the_limit_then_the_attempt_is_reported(limit, reports, caplog):
    msg = message()
    caplog.set_level(logging.WARNING)
    limit.before_process_message(None, delivered(msg, redelivered=True))  # delivery 2 of 2
    assert "delivered again (delivery 2 of at most 2)" in caplog.text
    with pytest.raises(SkipMessage):
        limit.before_process_message(None, delivered(msg, redelivered=True))
    assert len(reports) == 1 and "delivered 2 times" in reports[0][1]
    assert reports[0][0] == AttemptIdentity.read(REQUEST.to_kwargs())  # the attempt, with the queue to report to
    assert reports[0][0].reply_to == "flow.engine.7"


def test_an_unreadable_attempt_is_reported_at_the_limit_by_the_attempt_it_names(limit, reports):
    msg = message().copy(kwargs={"workflow_id": "wf", "position": 0, "attempt": 1, "from_the_future": 1})
    limit.before_process_message(None, delivered(msg, redelivered=True))
    with pytest.raises(SkipMessage):
        limit.before_process_message(None, delivered(msg, redelivered=True))
    assert reports == [(AttemptIdentity(workflow_id="wf", position=0, attempt=1), reports[0][1])]


def test_a_message_naming_no_attempt_is_skipped_at_the_limit_with_nothing_to_report(limit, reports, caplog):
    msg = message().copy(kwargs={"workflow_id": "wf", "position": -1, "attempt": 1})
    limit.before_process_message(None, delivered(msg, redelivered=True))
    with pytest.raises(SkipMessage):
        limit.before_process_message(None, delivered(msg, redelivered=True))
    assert reports == []
    assert "names no attempt ($.position: must be an integer" in caplog.text


def test_a_message_a_stopping_worker_never_started_is_not_counted(limit, reports, caplog):
    msg = message()
    limit.before_consumer_thread_shutdown(None, stopping_consumer(delivered(msg, redelivered=False)))
    caplog.set_level(logging.INFO)
    # RabbitMQ flags it redelivered; it never ran, so it is not a worker's death.
    limit.before_process_message(None, delivered(msg, redelivered=True))
    assert "delivered again" not in caplog.text
    assert "stopped before starting it" in caplog.text
    # Later deliveries count again: the next one is number 2 of 2, then the limit.
    limit.before_process_message(None, delivered(msg, redelivered=True))
    assert "delivered again (delivery 2 of at most 2)" in caplog.text
    with pytest.raises(SkipMessage):
        limit.before_process_message(None, delivered(msg, redelivered=True))
    assert len(reports) == 1


def test_only_held_activity_messages_of_a_redelivering_broker_are_written_down(limit, tmp_path):
    other_actor = message(actor_name="flow.record_result")
    other_queue = message(queue_name="flow.activities.DQ")
    in_process = dramatiq.broker.MessageProxy(message())  # StubBroker: nothing is redelivered
    limit.before_consumer_thread_shutdown(
        None,
        stopping_consumer(
            delivered(other_actor, redelivered=False), delivered(other_queue, redelivered=False), in_process
        ),
    )
    assert list(tmp_path.iterdir()) == []
