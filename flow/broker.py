"""The Dramatiq broker for a process, chosen by ``FLOW_BROKER_URL``.

RabbitMQ publishes wait for the broker's confirmation (docs/design.md, invariant 5; Dramatiq's
``confirm_delivery`` is off by default, and without it a publish into a dead
socket can vanish). ``stub://`` is the in-process broker of the embedded
commands: Dramatiq's ``StubBroker``, routing the partition queues straight to the
embedded engine (:class:`flow.engine.transport.InProcessBroker`).
"""

from __future__ import annotations

import logging

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from flow.engine.inprocess import InProcessBroker
from flow.settings import Settings

logger = logging.getLogger(__name__)


def build_broker(settings: Settings) -> dramatiq.Broker:
    """A new broker for ``settings``; the caller decides whether it becomes global."""
    if settings.uses_in_process_broker:
        broker: dramatiq.Broker = InProcessBroker()
    else:
        broker = RabbitmqBroker(url=settings.broker_url, confirm_delivery=True)
    for queue in (settings.engine_queue, settings.activity_queue):
        broker.declare_queue(queue)
    return broker
