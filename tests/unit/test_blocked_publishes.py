"""What a process knows of RabbitMQ blocking its publishes (a memory or disk alarm):
:class:`flow.process.broker.BlockedPublishes`, with a probe the test answers. The
broker-wide alarm itself is set by tests/faults/test_broker_alarm.py."""

from __future__ import annotations

import logging

import pytest

from flow.errors import BrokerBlocked, is_retryable
from flow.process.broker import BlockedPublishes
from tests.conftest import wait_for


def test_nothing_is_refused_until_a_publish_timed_out_blocked():
    blocked = BlockedPublishes(3.0, probe=lambda: pytest.fail("probed while not blocked"))
    blocked.check()
    assert not blocked.blocked


def test_after_a_blocked_timeout_publishes_are_refused_until_a_probe_gets_through():
    answers = [False, False, True]
    blocked = BlockedPublishes(3.0, probe=lambda: answers.pop(0))
    try:
        blocked.saw_block()
        with pytest.raises(BrokerBlocked) as refused:
            blocked.check()
        assert refused.value.retry_after_s == 3.0 and is_retryable(refused.value)
        wait_for(lambda: not blocked.blocked, what="the third probe to clear it")
        assert answers == []
        blocked.check()
    finally:
        blocked.stop()


def test_a_publish_that_succeeds_ends_the_refusals():
    blocked = BlockedPublishes(3.0, probe=lambda: False)
    try:
        blocked.saw_block()
        blocked.published()
        blocked.check()
    finally:
        blocked.stop()


def test_a_probe_that_cannot_connect_is_said_once_not_at_every_pass(caplog):
    # Hostile review: RabbitMQ restarted to clear its alarm (or down) while this process
    # is blocked; the probe's connection is refused at once, 10 times a second.
    probes: list[int] = []

    def refused() -> bool:
        probes.append(1)
        raise ConnectionRefusedError("connection refused")

    blocked = BlockedPublishes(3.0, probe=refused)
    try:
        with caplog.at_level(logging.WARNING):
            blocked.saw_block()
            wait_for(lambda: len(probes) >= 10, what="ten probes")
            blocked.stop()
        said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        # One line that publishes are refused, one that the probe cannot connect: not one a pass.
        assert len(said) == 2, said
        assert "ConnectionRefusedError" in said[1]
        assert blocked.blocked  # still refused until a probe gets through
    finally:
        blocked.stop()


# -- what a block does to Dramatiq's retries, and what is logged ---------------------------------------


@pytest.fixture
def broker(monkeypatch):
    """A broker that connects to nothing: what RabbitMQ takes is recorded in ``taken``."""
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    from flow.process.broker import QuietlyClosingRabbitmqBroker

    taken: list[tuple[str, int | None]] = []

    def take(self, message, *, delay=None):
        taken.append((message.message_id, delay))
        return message

    monkeypatch.setattr(RabbitmqBroker, "enqueue", take)
    broker = QuietlyClosingRabbitmqBroker(url="amqp://guest:guest@127.0.0.1:1/", blocked_timeout_s=3.0)
    broker.taken = taken
    yield broker
    broker.blocked.stop()


def test_a_retry_refused_while_blocked_waits_until_rabbitmq_takes_it(broker, caplog):
    # Before: Retries' publish of the retry raised, Dramatiq logged CRITICAL "Unexpected
    # failure in after_process_message" and acknowledged the message: its retry was lost.
    import threading

    import dramatiq

    takes = threading.Event()
    broker.blocked.probe = takes.is_set
    flaky = dramatiq.actor(broker=broker, actor_name="flaky", queue_name="flowtest", max_retries=3)(lambda: None)
    message = dramatiq.Message(
        queue_name="flowtest", actor_name=flaky.actor_name, args=(), kwargs={}, options={}, message_id="m-1"
    )
    broker.blocked.saw_block()
    with caplog.at_level(logging.DEBUG):
        retrying = threading.Thread(
            target=broker.emit_after, args=("process_message", message), kwargs={"exception": RuntimeError("db down")}
        )
        retrying.start()
        wait_for(lambda: any("the retry of flaky (message m-1) waits" in r.getMessage() for r in caplog.records))
        assert retrying.is_alive() and broker.taken == []
        takes.set()  # the alarm clears: the next probe gets through
        retrying.join(30)
    assert not retrying.is_alive()
    assert [(i, d is not None and d > 0) for i, d in broker.taken] == [("m-1", True)]
    waited = next(r for r in caplog.records if "the retry of flaky" in r.getMessage())
    assert waited.levelname == "WARNING" and "will be published once RabbitMQ takes publishes" in waited.getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_delayed_message_refused_by_dramatiqs_consumer_is_a_warning_that_says_what_happens(broker, caplog):
    consumer_log = logging.getLogger("dramatiq.worker.ConsumerThread")
    with caplog.at_level(logging.DEBUG):
        for _ in range(2):
            try:
                raise BrokerBlocked(3.0)
            except BrokerBlocked:
                consumer_log.critical("Consumer encountered an unexpected error.", exc_info=True)
        logging.getLogger("pika.connection").warning("Received %s from broker", "<Connection.Blocked(['reason=x'])>")
    said = [(r.levelname, r.getMessage(), r.exc_info) for r in caplog.records]
    assert [level for level, _, _ in said] == ["WARNING", "DEBUG"]  # and pika's notice: said by the process
    assert said[0][1].startswith("a delayed message (a retry) came due while RabbitMQ blocks publishes")
    assert "will be published again when due once RabbitMQ takes publishes" in said[0][1] and said[0][2] is None
