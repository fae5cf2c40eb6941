"""The workers' cancel-notice listener on a real RabbitMQ. The test failed on the code
it was written against (264af75); its docstring says what was wrong and what happens
instead."""

from __future__ import annotations

from datetime import datetime

import pika
import pytest

from flow.testing.services import AMQP_URL, new_queue_prefix
from flow.wire.attempts import CancelNotice
from flow.wire.outgoing import Outgoing
from flow.worker.cancellations import CancellationListener
from flow.worker.running import RunningAttempts
from tests.conftest import wait_for


@pytest.fixture
def exchange(services):
    with new_queue_prefix() as prefix:
        yield f"{prefix}.cancellations"


def test_one_unreadable_notice_does_not_deafen_a_worker_to_every_later_cancel(exchange):
    """Defect: ``CancellationListener._run`` catches only AMQP and OS errors, and
    ``handle`` does not catch ``dramatiq.errors.DecodeError``, which
    ``dramatiq.Message.decode`` raises for any body that is not a Dramatiq message. One
    such message published to ``<prefix>.cancellations`` (by anything that may publish
    there) ends the listener thread of every worker process bound to it, for good and
    without a word beyond a thread traceback: later cancel notices are never heard, so
    cancelled activities run on to their end.

    Expected: the unreadable message is ignored (logged), the listener keeps listening,
    and the next notice still sets the attempt's cancel flag."""
    running = RunningAttempts()
    listener = CancellationListener(
        url=AMQP_URL, exchange=exchange, activity_queue="unused", running=running, reconnect_pause_s=0.1
    )
    listener.start()
    try:
        wait_for(listener.listening.is_set, timeout_s=30, what="the listener bound to the exchange")
        flag = running.start(("wf-1", 0, 1))
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        try:
            channel = connection.channel()
            channel.basic_publish(exchange, "", b"this is not a Dramatiq message")
            notice = CancelNotice(workflow_id="wf-1", position=0, attempt=1)
            body = Outgoing.of(notice, exchange, partition=0, send_after=datetime(2026, 1, 1)).message().encode()
            channel.basic_publish(exchange, "", body)
        finally:
            connection.close()
        wait_for(flag.is_set, timeout_s=30, what="the attempt's cancel flag set by the notice after the bad one")
    finally:
        listener.stop()
