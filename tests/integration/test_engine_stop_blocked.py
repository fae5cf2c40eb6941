"""An engine stops within seconds while RabbitMQ blocks its publishes or its link is silent
(docs/design.md, "When the network lies"): what it published and RabbitMQ never confirmed
stays owed in the outbox, committed, for the partition's next owner. Before, a stop waited
for confirms that cannot come (5 s a partition) and for a closing handshake RabbitMQ never
answers on a blocked connection (the I/O thread outlived the stop's 10 s join).

RabbitMQ is not put in alarm here (that blocks every test's publishers: the exclusive
tests/faults/test_broker_alarm.py does it): the engine's link goes through a FaultProxy
black hole (RabbitMQ reads nothing, as when blocked), and the ``connection.blocked`` that
RabbitMQ sends at the same time is handed to the transport as pika would."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from flow.clock import utcnow
from flow.engine.rabbit import RabbitTransport
from flow.testing import AMQP_URL, new_queue_prefix
from flow.testing.proxy import FaultProxy
from flow.wire.outgoing import Outgoing
from tests.conftest import wait_for

pytestmark = pytest.mark.usefixtures("services")


@pytest.fixture
def linked() -> Iterator[tuple[RabbitTransport, FaultProxy, str]]:
    with new_queue_prefix() as prefix, FaultProxy.in_front_of(AMQP_URL) as proxy:
        queue = f"{prefix}.engine.0"
        transport = RabbitTransport(proxy.url_for(AMQP_URL), declare=(queue,), close_patience_s=1.0)
        transport.start(lambda delivery: None, lambda: None)
        try:
            assert transport.wait_ready(30)
            yield transport, proxy, queue
        finally:
            proxy.heal()
            transport.stop()


def publish_unconfirmed(transport: RabbitTransport, proxy: FaultProxy, queue: str) -> list[tuple[list[str], list[str]]]:
    """One message published into a link that carries nothing: it is never confirmed."""
    settled: list[tuple[list[str], list[str]]] = []
    proxy.black_hole()
    transport.publish(
        [Outgoing(queue, "flow.record_result", {}, 0, utcnow())], lambda ok, bad: settled.append((ok, bad))
    )
    wait_for(lambda: len(transport._confirms) == 1, what="the publish sent, waiting for its confirm")
    return settled


def test_a_blocked_engine_neither_waits_for_confirms_nor_for_the_closing_handshake(linked):
    transport, proxy, queue = linked
    settled = publish_unconfirmed(transport, proxy, queue)
    blocked = SimpleNamespace(method=SimpleNamespace(reason="low on memory"))
    assert transport._call(lambda: transport._on_blocked(None, blocked))
    wait_for(lambda: not transport.connected, what="the transport to know it is blocked")

    began = time.monotonic()
    assert transport.flush(30) is False  # what waits for a confirm stays owed
    assert time.monotonic() - began < 15, "flush waited for confirms a blocked connection cannot get"
    transport.stop()
    assert not transport.running, "the I/O thread outlived the stop, closing a blocked connection"
    # Dropped, not closed: the publish is settled as failed, so its outbox row stays owed.
    assert settled == [([], [settled[0][1][0]])] and len(settled[0][1]) == 1


def test_an_engine_whose_broker_link_is_silent_stops_after_the_close_patience(linked):
    transport, proxy, queue = linked
    settled = publish_unconfirmed(transport, proxy, queue)
    transport.stop()
    assert not transport.running, "the I/O thread outlived the stop, closing over a silent link"
    assert len(settled) == 1 and settled[0][0] == [] and len(settled[0][1]) == 1
