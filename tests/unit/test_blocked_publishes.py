"""What a process knows of RabbitMQ blocking its publishes (a memory or disk alarm):
:class:`flow.process.broker.BlockedPublishes`, with a probe the test answers. The
broker-wide alarm itself is set by tests/faults/test_broker_alarm.py."""

from __future__ import annotations

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
