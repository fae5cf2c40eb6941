"""The Dramatiq broker for a process, chosen by ``FLOW_BROKER_URL``.

RabbitMQ publishes wait for the broker's confirmation (docs/design.md, invariant 5; Dramatiq's
``confirm_delivery`` is off by default, and without it a publish into a dead
socket can vanish). ``stub://`` is the in-process broker of the embedded
commands: Dramatiq's ``StubBroker``, routing the partition queues straight to the
embedded engine (:class:`flow.engine.transport.InProcessBroker`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

import dramatiq
import pika.exceptions
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from flow.core.pools import pool_of
from flow.engine.transport import FIFO_WARNING, fifo_queue_refused, queue_arguments
from flow.process.inprocess import InProcessBroker
from flow.settings import Settings

logger = logging.getLogger(__name__)

#: The pika loggers that report a dead socket while a connection is closed.
_PIKA_CLOSE_LOGGERS = (
    "pika.adapters.utils.io_services_utils",
    "pika.adapters.base_connection",
    "pika.adapters.blocking_connection",
)


class QuietlyClosingRabbitmqBroker(RabbitmqBroker):
    """Dramatiq's RabbitMQ broker, which declares the worker pools' queues with priorities
    (:meth:`_declare_queue`) and whose :meth:`close` logs nothing about connections
    RabbitMQ already dropped.

    Each thread that publishes (a worker reporting a result) keeps a blocking
    connection that sends heartbeats only while it is used; one idle for a few
    heartbeat intervals has been closed by RabbitMQ by the time the worker stops. Closing
    it then makes pika log ``ERROR`` lines and tracebacks ("Connection reset by peer",
    "called on closed connection") at every ordinary SIGTERM; Dramatiq's own filter
    only hides "Broken pipe". Nothing is lost: nothing was left to send on them.
    """

    def __init__(self, *, activity_queue: str | None = None, **options: Any) -> None:
        super().__init__(**options)
        #: The default pool's queue: it and the pools' queues beside it take priorities
        #: (None: no queue does).
        self.activity_queue = activity_queue
        #: Pool queues declared by an earlier release without priorities (used as they are).
        self.fifo_queues: set[str] = set()

    def close(self) -> None:
        with _pika_silenced_in_this_thread():
            super().close()

    def _declare_queue(self, queue_name: str) -> Any:
        """Declare a worker pool's queue with ``x-max-priority`` (docs/design.md, "Worker
        pools"), as the engine does; one an earlier release declared without it is used
        as it is, first in, first out (RabbitMQ refuses other arguments: 406)."""
        pool = self.activity_queue is not None and pool_of(self.activity_queue, queue_name) is not None
        if not pool or queue_name in self.fifo_queues:
            return super()._declare_queue(queue_name)
        arguments = queue_arguments(queue_name, priorities=True)
        try:
            return self.channel.queue_declare(queue=queue_name, durable=True, arguments=arguments)
        except pika.exceptions.ChannelClosedByBroker as e:
            if fifo_queue_refused(e) != queue_name:
                raise
            del self.channel  # closed by RabbitMQ: the next use opens another
            logger.warning(FIFO_WARNING, queue_name)
            self.fifo_queues.add(queue_name)
            return super()._declare_queue(queue_name)


class _ThisThreadOnly(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.thread != self.thread:
            return True
        self.dropped += 1
        return False


@contextlib.contextmanager
def _pika_silenced_in_this_thread() -> Iterator[None]:
    silence = _ThisThreadOnly()
    loggers = [logging.getLogger(name) for name in _PIKA_CLOSE_LOGGERS]
    for each in loggers:
        each.addFilter(silence)
    try:
        yield
    finally:
        for each in loggers:
            each.removeFilter(silence)
        if silence.dropped:
            logger.debug("closing the broker: %d pika log records about dropped connections left out", silence.dropped)


def build_broker(settings: Settings) -> dramatiq.Broker:
    """A new broker for ``settings``; the caller decides whether it becomes global."""
    if settings.uses_in_process_broker:
        broker: dramatiq.Broker = InProcessBroker()
    else:
        broker = QuietlyClosingRabbitmqBroker(
            url=settings.broker_url, confirm_delivery=True, activity_queue=settings.activity_queue
        )
    for queue in (settings.engine_queue, settings.activity_queue):
        broker.declare_queue(queue)
    return broker
