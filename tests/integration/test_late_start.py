"""A start queued past ``FLOW_OUTBOX_GRACE_S`` behind a backlog in its partition queue is not
taken for a lost one (``flow/engine/unstarted.py``): the engine asks RabbitMQ how many messages
the queue holds (``RabbitTransport.ready_in``) before starting a workflow out of band. Before,
age alone decided: the workflow was started, and its queued message, when it arrived, was a
second start decision (docs/design.md, "Shedding a flood of starts")."""

from __future__ import annotations

from collections.abc import Iterator

import pika
import pytest

from flow.clock import utcnow
from flow.engine.rabbit import RabbitTransport
from flow.testing import AMQP_URL, new_queue_prefix
from flow.wire.messages import START_WORKFLOW
from flow.wire.outgoing import Outgoing
from tests.conftest import wait_for
from tests.unit.test_unstarted import FakeStore

pytestmark = pytest.mark.usefixtures("services")


@pytest.fixture
def transport() -> Iterator[tuple[RabbitTransport, str]]:
    with new_queue_prefix() as prefix:
        queue = f"{prefix}.engine.0"
        transport = RabbitTransport(AMQP_URL, declare=(queue,))
        transport.start(lambda delivery: None, lambda: None)  # consumes nothing: the queue keeps its backlog
        try:
            assert transport.wait_ready(30)
            yield transport, queue
        finally:
            transport.stop()


def test_a_start_still_in_its_queue_is_not_started_out_of_band_until_the_queue_drains(transport):
    from flow.engine.unstarted import UnstartedStarter

    transport, queue = transport
    confirmed: list[list[str]] = []
    queued_start = Outgoing(queue, START_WORKFLOW, {"workflow_id": "w-1"}, 0, utcnow())
    transport.publish([queued_start], lambda ok, failed: confirmed.append(ok))
    wait_for(lambda: confirmed == [[queued_start.id]], what="the start to be queued")
    assert transport.ready_in(queue) == 1

    started: list[str] = []
    unstarted = UnstartedStarter(
        FakeStore(["w-1"]),  # type: ignore[arg-type]
        lambda workflow_id, partition, item: started.append(workflow_id),
        partitions=1,
        grace_s=30,
        ready=lambda partition: transport.ready_in(queue),
    )
    unstarted({0})
    assert started == [], "a start still queued was taken for a lost one"

    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        connection.channel().queue_purge(queue)  # as if the engine had taken the backlog
    finally:
        connection.close()
    assert transport.ready_in(queue) == 0
    unstarted({0})
    assert started == ["w-1"]
