"""Priorities on pool queues, the cancel that gives a Scheduled attempt's
slot back, the lenient attempt identity and the lease changes: one test per defect found."""

from __future__ import annotations

import dramatiq
import pika.exceptions

from flow.clock import utcnow
from flow.core.pools import broker_priority
from flow.engine.transport import fifo_queue_refused
from flow.wire.messages import RUN_ACTIVITY
from flow.wire.outgoing import Outgoing
from flow.worker.running import RunningAttempts

#: RabbitMQ 3.x's refusals (channel.close 406) of a pool queue declared with
#: ``x-max-priority: 5`` where the queue exists otherwise, as seen on this machine's broker.
_WITHOUT = (
    "PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue 'p.flow.activities' in vhost '/': "
    "received the value '5' of type 'signedint' but current is none"
)
_OTHER_LEVELS = (
    "PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue 'p.flow.activities' in vhost '/': "
    "received '5' but current is '10'"
)


def test_a_queue_without_priorities_is_taken_as_it_is():
    assert fifo_queue_refused(pika.exceptions.ChannelClosedByBroker(406, _WITHOUT)) == "p.flow.activities"


def test_a_queue_with_other_priority_levels_is_not_taken_for_one_without():
    # Taken for a pre-priority queue, it was declared again without x-max-priority, which
    # RabbitMQ refuses as well ("received none but current is the value '10'"): the engine
    # reconnected for ever after a warning that said the queue had no priorities.
    assert fifo_queue_refused(pika.exceptions.ChannelClosedByBroker(406, _OTHER_LEVELS)) is None


def test_an_attempt_sent_again_by_a_worker_keeps_its_priority():
    # A worker's Dramatiq re-publishes an attempt it retries (Retries: to the delay queue,
    # then back to the pool's queue, dramatiq/worker.py handle_delayed_messages) with the
    # priority its message's options name ("broker_priority", dramatiq/brokers/rabbitmq.py
    # enqueue), not the AMQP property the engine set: with none, it came back at priority
    # 0, behind every attempt of every workflow, even a priority-1 workflow's.
    request = {"workflow_id": "w1", "position": 0, "attempt": 1, "activity": "NoopActivity"}
    sent = Outgoing("p.flow.activities", RUN_ACTIVITY, request, 0, utcnow(), priority=1)
    retried = dramatiq.Message.decode(sent.message().encode()).copy(queue_name="p.flow.activities")
    assert retried.options.get("broker_priority") == broker_priority(1) == 5
    unprioritised = Outgoing("p.flow.engine", "flow.forward", {}, 0, utcnow())
    assert "broker_priority" not in unprioritised.message().options


def test_a_worker_does_not_start_an_attempt_of_a_batch_cancel_of_more_than_10000_queued_attempts():
    running = RunningAttempts()
    keys = [(f"w{i}", 0, 1) for i in range(10_001)]
    # The attempts were sent (ms since the epoch) before the batch cancel's notices.
    sent_ms = {key: 1_000.0 + i for i, key in enumerate(keys)}
    for i, key in enumerate(keys):  # the notices of one batch cancel, in the order the attempts were queued
        running.cancel(key, sent_ms=50_000.0 + i)
    # The worker then reaches the queued attempts, the oldest first (a queue is FIFO).
    assert running.start(keys[0], sent_ms=sent_ms[keys[0]]).is_set()
    assert all(running.start(key, sent_ms=sent_ms[key]).is_set() for key in keys)


def test_past_its_memory_a_worker_holds_back_only_attempts_sent_before_the_notices_it_forgot():
    running = RunningAttempts(remember=2)
    for i, key in enumerate([("a", 0, 1), ("b", 0, 1), ("c", 0, 1)]):
        running.cancel(key, sent_ms=100.0 + i)
    assert not running.remembers(("a", 0, 1)) and running.remembers(("c", 0, 1))
    # Sent before the forgotten notice (of "a"): it may be the one it named.
    assert running.unsure(90.0) and running.start(("x", 0, 1), sent_ms=90.0).is_set()
    # Sent after it: no forgotten notice can name it (a cancel comes after its attempt's send).
    assert not running.start(("y", 0, 1), sent_ms=101.0).is_set()
    assert running.start(("c", 0, 1), sent_ms=101.0).is_set()  # remembered, whenever sent
